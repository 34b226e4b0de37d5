"""What a routine that arrives in a Lambda event (untrusted) may name: env vars, code, local paths.

See :mod:`orchestrator.aws_lambda` for the rules; they are enforced as a location policy while the
routine is validated, so nothing outside them is even read.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Mapping

from ..routine.load import Routine, StepSpec
from ..errors import Problem, UserError

ALLOWLIST_ENV = "ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST"
ENV_ALLOWLIST_ENV = "ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST"
PATH_ALLOWLIST_ENV = "ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"
DEFAULT_PATH_ALLOWLIST = "/tmp/"
STAGING_EXECUTOR = ("staging", "StagingExecutor")


class InvalidEvent(UserError):
    """The event, its routine or the configuration is wrong; nothing ran. The message is one line."""


def allowlist(env: Mapping[str, str] = os.environ) -> list[str]:
    """Where untrusted routines may name code: ``$ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST``."""
    return _prefixes(ALLOWLIST_ENV, env.get(ALLOWLIST_ENV, ""))


def path_allowlist(env: Mapping[str, str] = os.environ) -> list[str]:
    """Where untrusted routines may name local data: ``$ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST``, ``/tmp/`` if unset."""
    return _prefixes(PATH_ALLOWLIST_ENV, env.get(PATH_ALLOWLIST_ENV, DEFAULT_PATH_ALLOWLIST))


def _prefixes(name: str, text: str) -> list[str]:
    prefixes = [p.strip() for p in text.split(",") if p.strip()]
    relative = [p for p in prefixes if not os.path.isabs(p)]
    if relative:
        raise InvalidEvent(f"{name}: prefixes must be absolute paths, got {', '.join(relative)}")
    return [os.path.realpath(p) for p in prefixes]


def env_allowlist(env: Mapping[str, str] = os.environ) -> list[str]:
    """The environment variables untrusted routines may read: ``$ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST``."""
    return sorted({n.strip() for n in env.get(ENV_ALLOWLIST_ENV, "").split(",") if n.strip()})


def visible_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What ``${env.X}`` sees in an untrusted routine: only the allowlisted variables that are set."""
    return {name: env[name] for name in env_allowlist(env) if name in env}


_UNSET_ENV = re.compile(r"^environment variable (\S+) is not set\b")


def problem_text(problem: Problem, trusted: bool, readable: list[str]) -> str:
    message = problem.message
    unset = None if trusted else _UNSET_ENV.match(message)
    if unset and unset.group(1) not in readable:
        message = (f"environment variable {unset.group(1)} is not in {ENV_ALLOWLIST_ENV}, "
                   f"so routines from events cannot read it (allowed: {', '.join(readable) or 'none'})")
    return f"{problem.path}: {message}" if problem.path else message


def allowed(path: str, prefixes: list[str]) -> bool:
    if "://" in path:
        return False
    real = os.path.realpath(path)
    return any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes)


def _default_archive(step: StepSpec) -> str | None:
    """The archive folder staging derives from a local ``parent_directory`` when none is given."""
    if step.executor.name not in STAGING_EXECUTOR and step.executor.class_name not in STAGING_EXECUTOR:
        return None
    parent = str(step.params.get("parent_directory") or "")
    if step.params.get("archive_directory") or step.params.get("archive_or_delete", "archive") != "archive":
        return None
    if not parent or parent.startswith("s3://") or ("://" in parent and not parent.startswith("file://")):
        return None
    path = os.path.normpath(os.path.abspath(parent.removeprefix("file://")))
    return None if path == "/" else path.rstrip("/") + "_archive"


def _nested(a: str, b: str) -> bool:
    """Real paths ``a`` and ``b`` are the same folder or one lies inside the other."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def path_refusal(value: str, prefixes: list[str], home: str) -> str | None:
    """Why an untrusted routine may not use the location ``value``, or None (``s3://`` is always fine)."""
    if value.startswith("s3://"):
        return None
    local = value.removeprefix("file://")
    if not allowed(local, prefixes):
        return f"{value!r} is outside {PATH_ALLOWLIST_ENV} and {ALLOWLIST_ENV}"
    if _nested(os.path.realpath(local), home):
        return f"{value!r} overlaps the orchestrator home {home} (run records and state)"
    return None


def untrusted_policy(code_prefixes: list[str], data_prefixes: list[str], home: str) -> Callable[[str, str], str | None]:
    """The location policy for routines from events, applied while they are validated, so that no
    executor check reads a file the routine may not name (validation must not probe the disk)."""
    places = data_prefixes + [p for p in code_prefixes if p not in data_prefixes]
    code_note = "code allowlist: " + (", ".join(code_prefixes) or "empty, so no code may be named")
    path_note = "path allowlist: " + (", ".join(places) or "empty, so no local path may be named")

    def refuse(kind: str, value: str) -> str | None:
        if kind == "code":
            file = value.rpartition(":")[0] if ":" in value.rsplit("/", 1)[-1] else value
            return None if allowed(file, code_prefixes) else f"{value!r} is outside {ALLOWLIST_ENV} ({code_note})"
        why = path_refusal(value, places, home)
        return f"{why} ({path_note})" if why and PATH_ALLOWLIST_ENV in why else why

    return refuse


def default_archive_refusals(routine: Routine, code_prefixes: list[str], data_prefixes: list[str], home: str) -> list[str]:
    """Staging derives ``<parent_directory>_archive`` when no archive is named: the policy applied during
    validation never saw it, so it is checked here, before anything runs."""
    refuse = untrusted_policy(code_prefixes, data_prefixes, home)
    refused = []
    for step in routine.steps:
        default = _default_archive(step)
        if default and (why := refuse("location", default)) is not None:
            refused.append(f"{step.path}.params.archive_directory (default): {why}")
    return refused
