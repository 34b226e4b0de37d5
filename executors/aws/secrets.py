"""``${secret.NAME}`` and ``${ssm.NAME}`` in routines: read from AWS Secrets Manager and SSM
Parameter Store when a routine is loaded to run (the ``resolve_secret`` hook), never before.

``${secret.NAME#key}`` takes one key of a JSON secret (``{"username": ..., "password": ...}``).
NAME may be a secret's name or ARN, or a parameter's name (``/team/db/password``) or ARN.
boto3 loads here only, when a routine holds such a reference.
"""
from __future__ import annotations

import json
from typing import Any

from orchestrator.hookspecs import hookimpl


class SecretNotFound(LookupError):
    """The reference names no secret, or no key of it: say which, never a value."""


def secret_value(name: str) -> str:
    import boto3

    # Secret names allow only letters, digits and /_+=.@- (ARNs add ':'), so a '#' always starts
    # the key.
    secret_id, _, key = name.partition("#")
    # A default client, not AwsClients: secrets are read while the routine loads, before any
    # executor (and its session and region) exists.
    response = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    text = response.get("SecretString")
    # A secret stored as SecretBinary has no SecretString.
    if text is None:
        raise SecretNotFound(f"{secret_id} holds binary data, not text")
    if not key:
        return str(text)
    try:
        found = json.loads(text)[key]
    except (ValueError, KeyError, TypeError):
        # from None: nothing of the secret's parsing may travel with the error (a JSONDecodeError
        # keeps the whole text in .doc).
        raise SecretNotFound(f"{secret_id} is not a JSON object with the key {key!r}") from None
    # A number or a nested object is substituted as the JSON text it was written as.
    return found if isinstance(found, str) else json.dumps(found)


def parameter_value(name: str) -> str:
    import boto3

    # Without WithDecryption a SecureString comes back as ciphertext; plain parameters ignore it.
    response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    return str(response["Parameter"]["Value"])


@hookimpl
def resolve_secret(kind: str, name: str) -> Any:
    from botocore.exceptions import ClientError

    read = {"secret": secret_value, "ssm": parameter_value}.get(kind)
    # Another plugin may resolve other kinds: the hook is firstresult, and None passes it on.
    if read is None:
        return None
    try:
        return read(name)
    except ClientError as exc:  # not found, access denied: its code and message, no value
        error = exc.response.get("Error", {})
        raise SecretNotFound(f"{error.get('Code', 'error')}: {error.get('Message', '')}") from None
