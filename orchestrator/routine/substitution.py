"""``${params.X}``, ``${env.X}``, ``${run.id}``, ``${run.date}`` in routine values.

An unknown name is a problem to report, never an empty string. ``$${`` escapes a literal ``${``.
``${steps...}`` (a task's outputs, see :mod:`.outputs`) is known only when the task runs: where a
:attr:`Substituter.defer` hook accepts it, the value stays a :class:`Deferred` template.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Protocol

from ..errors import ENV_UNSET

# `$${` is an escaped literal; `${...}` a reference; a `${` never closed is reported, not kept.
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
# Names whose values are masked. "pass" counts only as a whole _-separated word, so names such as
# "compass" or "bypass_cache" are not taken for passwords; "passw" still catches "password".
SECRET_NAME = re.compile(
    r"(?i)(passw|passphrase|(^|_)pass($|_)|pwd|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credential)"
)


class Deferred(str):
    """A value holding ``${steps...}`` references, resolved only when its task runs. The text is a
    template: the other references are already substituted (their ``${`` escaped as ``$${``)."""


# `${secret.NAME}` (Secrets Manager; `NAME#key` for a key of a JSON secret) and `${ssm.NAME}`
# (SSM Parameter Store): read from where they are kept when the routine is loaded to run.
SECRET_SCOPES = ("secret", "ssm")
SecretResolver = Callable[[str, str], Any]


def secret_references(text: str) -> list[str]:
    """The ``${secret.X}``/``${ssm.X}`` references in ``text``."""
    return [m.group(0) for m in _REF.finditer(text)
            if m.group(1) is not None and m.group(1).strip().partition(".")[0] in SECRET_SCOPES]


class Report(Protocol):
    """Where problems go: a JSON path, the message, and optionally its code and subject."""

    def __call__(self, path: str, message: str, code: str = "", subject: str = "") -> None: ...


class Substituter:
    """Resolves references in a nested document and remembers which values are secret."""

    def __init__(self, params: Mapping[str, Any] | None, env: Mapping[str, str],
                 run: Mapping[str, str], secrets: SecretResolver | None = None) -> None:
        """``params`` None: the values being resolved are the routine's params themselves.
        ``secrets`` reads a ``${secret.X}``/``${ssm.X}``; None keeps the reference as it is
        (validate, plan, generate: nothing is fetched, nothing can leak)."""
        self.scopes: dict[str, Mapping[str, Any]] = {"env": env, "run": run}
        if params is not None:
            self.scopes["params"] = params
        self.secrets: set[str] = set()
        # ``defer(ref, path, report)``: takes a ``steps.`` reference to resolve at run time
        self.defer: Callable[[str, str, Report], None] | None = None
        self.resolver = secrets
        self._fetched: dict[tuple[str, str], Any] = {}

    def walk(self, value: Any, path: str, report: Report) -> Any:
        if isinstance(value, dict):
            return {k: self.walk(v, f"{path}.{k}", report) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, f"{path}[{i}]", report) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return self.string(value, path, report)
        return value

    def string(self, text: str, path: str, report: Report) -> Any:
        if self.defer is not None and has_step_reference(text):
            return self.deferred(text, path, report)
        # A value that is one reference and nothing else takes the referenced value with its type (a
        # number, a list, null), so "${params.retries}" can feed an integer parameter; inside a
        # longer string it can only become text.
        whole = _REF.fullmatch(text)
        if whole and whole.group(1) is not None:
            return self.lookup(whole.group(1), path, report)

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "${":
                report(
                    path,
                    f"unterminated ${{ in {text!r}; close it with }} (or write $${{ for a literal)",
                )
                return match.group(0)
            # "$${" is the escape: this one pass turns it into a literal "${" that nothing parses
            # again.
            if match.group(1) is None:
                return "${"
            value = self.lookup(match.group(1), path, report)
            # "None" spliced into a path or a query would be a silent wrong value, not a visible
            # error.
            if value is None:
                report(
                    path,
                    f"${{{match.group(1)}}} is null and cannot be part of a string; "
                    "give it a value",
                )
                return match.group(0)
            return str(value)

        return _REF.sub(replace, text)

    def deferred(self, text: str, path: str, report: Report) -> Deferred:
        """``text`` as a template for run time: ``steps.`` references kept (and handed to
        :attr:`defer`), the others substituted now, escapes kept for the second pass."""
        assert self.defer is not None

        def replace(match: re.Match[str]) -> str:
            ref = match.group(1)
            if ref is None:  # `$${` stays escaped; an unterminated `${` is reported
                if match.group(0) == "${":
                    report(path, f"unterminated ${{ in {text!r}; close it with }}")
                return match.group(0)
            if ref.strip().startswith("steps."):
                self.defer(ref.strip(), path, report)  # type: ignore[misc]
                return match.group(0)
            value = self.lookup(ref, path, report)
            if value is None:
                report(path, f"${{{ref}}} is null and cannot be part of a string; give it a value")
                return match.group(0)
            # A value substituted now is part of a template parsed again at run time: its own "${"
            # must be escaped, or text from an env var or param would be read as a reference then.
            return str(value).replace("${", "$${")

        return Deferred(_REF.sub(replace, text))

    def lookup(self, ref: str, path: str, report: Report) -> Any:
        scope, _, name = ref.strip().partition(".")
        # "${a.${b}}": the regex stops at the first "}", so a nested reference cannot be read
        # correctly; refuse it rather than substitute half of it.
        if "$" in ref or "{" in ref:
            report(
                path,
                f"nested substitution ${{{ref}}} is not supported; "
                "use one ${scope.NAME} at a time",
            )
            return f"${{{ref}}}"
        if scope in SECRET_SCOPES:
            return self.secret(scope, name, ref, path, report)
        # params=None means the routine's own params are being resolved: letting them refer to each
        # other would need an order of evaluation, and could loop.
        if scope == "params" and scope not in self.scopes:
            report(path, f"${{{ref}}}: a param cannot refer to another param; give its value, "
                         "or use ${env.NAME}, ${run.id} or ${run.date}")
            return f"${{{ref}}}"
        if scope == "steps":
            report(path, f"${{{ref}}}: a task's outputs exist only once it has run; use them in "
                         "a later task's args, not in params")
            return f"${{{ref}}}"
        if scope not in self.scopes or not name:
            report(path, f"unknown substitution ${{{ref}}}; use ${{params.NAME}}, ${{env.NAME}}, "
                         "${run.id}, ${run.date}, ${secret.NAME} or ${ssm.NAME}")
            return f"${{{ref}}}"
        values = self.scopes[scope]
        if name not in values:
            code = ENV_UNSET if scope == "env" else ""
            report(path, _missing(scope, name, values), code, name if code else "")
            return f"${{{ref}}}"
        value = values[name]
        # The value is masked from now on wherever it shows, also where it was copied under an
        # innocent-looking key (a folder name, a query).
        if scope == "env" and SECRET_NAME.search(name) and isinstance(value, str) and value:
            self.secrets.add(value)
        return value

    def secret(self, scope: str, name: str, ref: str, path: str,
               report: Report) -> Any:
        if not name:
            report(path, f"${{{ref}}} names no secret; write ${{{scope}.NAME}}")
            return f"${{{ref}}}"
        if self.resolver is None:
            return f"${{{ref}}}"
        key = (scope, name)
        # Fetched once per name by this substituter: a secret referenced in ten places costs one
        # call.
        if key not in self._fetched:
            try:
                self._fetched[key] = self.resolver(scope, name)
            except Exception as exc:  # the plugin says why (not found, denied): one problem
                report(path, f"cannot read ${{{ref}}}: {exc}")
                return f"${{{ref}}}"
        value = self._fetched[key]
        if value is None:
            report(path, f"no plugin reads ${{{scope}.X}} references (install boto3 for AWS)")
            return f"${{{ref}}}"
        # Every fetched secret is masked, whatever the name of the key it was used under.
        self.secrets.add(str(value))
        return value


def has_step_reference(text: str) -> bool:
    """Whether ``text`` holds a ``${steps...}`` reference (not an escaped ``$${steps...}``)."""
    return any((m.group(1) or "").strip().startswith("steps.") for m in _REF.finditer(text))


def _missing(scope: str, name: str, values: Mapping[str, Any]) -> str:
    if scope == "env":
        return f"environment variable {name} is not set; export it or use ${{params.{name}}}"
    if scope == "params":
        known = ", ".join(sorted(values)) or "none"
        return (
            f"unknown param ${{params.{name}}}; define it under params "
            f"or pass --param {name}=VALUE (known: {known})"
        )
    return f"unknown name ${{run.{name}}}; run has id and date"


MASKED = "****"  # what a secret value is shown, logged and stored as


def mask(text: str, secrets: set[str]) -> str:
    """Replace every secret value in ``text`` with ``****``."""
    # Longest first: when one secret contains another, the longer is masked whole instead of leaving
    # its remainder around a "****".
    for secret in sorted(secrets, key=len, reverse=True):
        # A one- or two-character value occurs everywhere by chance (every "1" in every line):
        # masking it would garble all output while hiding nothing.
        if len(secret) >= 3:
            text = text.replace(secret, MASKED)
    return text


def secret_values(value: Any, key: str = "") -> set[str]:
    """The strings held under secret-looking names anywhere in a nested value (``db_password``,
    ``kwargs.api_token``): they are masked wherever they appear, not only where their name shows."""
    if isinstance(value, dict):
        return set().union(*(secret_values(v, k) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(secret_values(v, key) for v in value))
    secret = isinstance(value, str) and value and key and SECRET_NAME.search(key)
    return {value} if secret else set()


def mask_values(value: Any, secrets: set[str], key: str = "") -> Any:
    """Copy of a nested value with secrets masked, by value and by secret-looking key."""
    if isinstance(value, dict):
        return {k: mask_values(v, secrets, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_values(v, secrets, key) for v in value]
    if isinstance(value, str):
        # Masked by key as well as by value: a secret-looking field is hidden even if its value was
        # never registered as a secret.
        return MASKED if key and SECRET_NAME.search(key) and value else mask(value, secrets)
    return value
