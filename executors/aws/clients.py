"""boto3 sessions and clients, retries, and what an AWS error means.

One boto3 ``Session`` per executor instance (that is, per step of one run), created on first use;
clients are created lazily from it with standard retry mode. A session is not safe to build clients
from concurrently, and steps run in parallel threads, so a per-instance session under a lock avoids
sharing one across threads while still reusing connections within a step. Region, profile and
endpoints come from the usual environment (boto3 resolves them itself).

boto3 is imported inside functions only: importing this module must stay cheap.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

DEFAULT_TOTAL_ATTEMPTS = 5


def retry_config(total_attempts: int | None = None, connect_timeout: float = 10,
                 read_timeout: float = 60) -> Any:
    """Standard retry mode; attempts from ``AWS_MAX_ATTEMPTS`` when set, else 5 in total."""
    from botocore.config import Config

    # botocore's default is still "legacy" mode, whose attempts differ per service (DynamoDB: 10
    # attempts, ~25 s against a throttling table); "standard" retries the same transient set
    # everywhere with capped, jittered backoff.
    retries: dict[str, Any] = {"mode": "standard"}
    if total_attempts is not None:
        retries["total_max_attempts"] = total_attempts
    elif not os.environ.get("AWS_MAX_ATTEMPTS"):
        # A value in Config beats the environment, so the default is set only when the user did not
        # set AWS_MAX_ATTEMPTS. total_max_attempts counts requests; max_attempts would count
        # retries.
        retries["total_max_attempts"] = DEFAULT_TOTAL_ATTEMPTS
    return Config(retries=retries, connect_timeout=connect_timeout, read_timeout=read_timeout,
                  user_agent_extra="orchestrator")


class AwsClients:
    """A lazily created boto3 session and its clients, safe to use from the task and cancel
    threads."""

    def __init__(self, region: str | None = None) -> None:
        self.region = region
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        with self._lock:
            return self._session_locked()

    def _session_locked(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def client(self, service: str, total_attempts: int | None = None) -> Any:
        """A cached client; ``total_attempts`` gives a separate client with its own retry budget."""
        # A call that must not be retried (Glue's StartJobRun has no idempotency token: a retry
        # after a lost reply starts a second run) gets its own client; the shared one keeps its
        # retries.
        key = service if total_attempts is None else f"{service}#{total_attempts}"
        with self._lock:
            if key not in self._clients:
                config = retry_config(total_attempts)
                self._clients[key] = self._session_locked().client(service, config=config)
            return self._clients[key]

    def close(self) -> None:
        with self._lock:
            # Swap the cache under the lock, close outside it: closing releases connection pools,
            # and no other thread's client() should wait on that.
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def error_code(exc: BaseException) -> str | None:
    # Only botocore's ClientError carries a response; under @mock_aws moto raises bare KeyError or
    # NotImplementedError instead, which have no code.
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


# Throttling answers across the services we call: botocore's standard-mode throttling codes
# plus S3's SlowDown. They reach us only after botocore's own retries ran out.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "ProvisionedThroughputExceededException", "SlowDown"})


def transient(exc: BaseException) -> bool:
    """Worth another try: throttling, a 5xx answer, or no answer at all."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        # Other 4xx answers are about the request (access denied, validation, not found); the few
        # that are transient after all (RequestTimeout) botocore has retried already.
        return status >= 500 or error_code(exc) in THROTTLING_CODES
    return False


def environment_problems(clients: AwsClients) -> list[str]:
    """What every AWS executor needs before any call: boto3, credentials and a region."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        return ["boto3 is not installed"]
    problems: list[str] = []
    try:
        # Resolves the provider chain (env, files, SSO cache, instance metadata) without calling an
        # AWS API, so doctor stays fast and needs no permission.
        if clients.session.get_credentials() is None:
            problems.append("no AWS credentials found (env, profile, SSO or instance role)")
        if not clients.session.region_name:
            problems.append("no AWS region set (AWS_REGION / AWS_DEFAULT_REGION / profile)")
    except Exception as exc:  # a broken profile file, say: doctor reports, it does not crash
        problems.append(f"AWS configuration: {type(exc).__name__}: {exc}")
    return problems


def check_service(clients: AwsClients, service: str, probe: Callable[[Any], Any],
                  ok_codes: Iterable[str] = ()) -> list[str]:
    """Doctor checks: credentials resolve, the endpoint answers, one cheap call is allowed."""
    problems = environment_problems(clients)
    if problems:
        return problems
    try:
        client = clients.client(service)
        probe(client)
    except Exception as exc:  # doctor reports, it does not crash
        # An ok code is an answer from a live endpoint that accepted our credentials (e.g. "no such
        # statement" to a probe id): the check passed even though the call failed.
        if error_code(exc) not in set(ok_codes):
            # Read from the cache: clients.client() itself may be what raised (a malformed endpoint
            # URL).
            meta = getattr(clients._clients.get(service), "meta", None)
            endpoint = getattr(meta, "endpoint_url", "?")
            problems.append(f"{service} at {endpoint}: {type(exc).__name__}: {exc}")
    return problems


def read_text(location: str, clients: AwsClients) -> str:
    """Text of a local file or an ``s3://`` object (SQL files), through the executor's own S3
    client."""
    if location.startswith("s3://"):
        from smart_open import open as smart_open

        # Without a client smart-open builds its own (adaptive retries, 7 attempts, no region or
        # profile of ours); passing the executor's keeps endpoint and retry policy consistent.
        params = {"client": clients.client("s3")}
        with smart_open(location, "r", encoding="utf-8", transport_params=params) as handle:
            return handle.read()
    return Path(location).read_text(encoding="utf-8")
