"""orchestrator: a config-driven orchestrator for data-lake jobs.

The public API is re-exported here and imported lazily, so ``orchestrate --version``
stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Executor": "executor",
    "task": "executor",
    "TaskMetrics": "executor",
    "Context": "executor",
    "Cancelled": "executor",
    "NotRetryable": "executor",
    "Location": "executor",
    "CodeLocation": "executor",
    "Place": "executor",
    "Uncompilable": "executor",
    "hookimpl": "hookspecs",
    "load_routine": "routine.load",
    "Routine": "routine.load",
    "Registry": "registry",
    "Orchestrator": "api",
    "track": "runs.track",
    "Tracked": "runs.track",
    "RoutineError": "errors",
    "UserError": "errors",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
