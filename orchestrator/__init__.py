"""orchestrator: a config-driven orchestrator for data-lake jobs.

The public API. What every plugin needs (the executor contract, errors) is imported here for
real; the rest (events, the routine loader, the registry, the run store...) loads on first use,
so that ``orchestrate --version``, ``validate`` and a plugin's import stay fast. Type checkers
see every name through the ``TYPE_CHECKING`` imports below, so nothing public is ``Any`` to them.

For a plugin: :class:`Executor`, :func:`task`, :class:`TaskMetrics`, :class:`Context`,
:data:`hookimpl`, :class:`Location`, :class:`CodeLocation`, :class:`Cancelled`,
:class:`NotRetryable`. To watch runs: :class:`Listener` (events: ``run_started``,
``task_started``, ``task_retrying``, ``task_finished``, ``run_finished``) and
:class:`RunResult`. For a run-store plugin (the ``run_store`` hook): :class:`RunStore` and the
records it keeps. To run routines from Python: :class:`Orchestrator`, :func:`load_routine`,
:func:`track`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import PluginError, RoutineError, UserError
from .executor import (Cancelled, CodeLocation, Context, Executor, Location, NotRetryable,
                       TaskMetrics, task)

if TYPE_CHECKING:
    from .api import Orchestrator as Orchestrator
    from .config import Routine as Routine
    from .config import load_routine as load_routine
    from .events import Listener as Listener
    from .events import RunResult as RunResult
    from .events import TaskResult as TaskResult
    from .hookspecs import hookimpl as hookimpl
    from .registry import Registry as Registry
    from .runs import LogRecord as LogRecord
    from .runs import RunRecord as RunRecord
    from .runs import RunStore as RunStore
    from .runs import TaskRecord as TaskRecord
    from .tracked import Tracked as Tracked
    from .tracked import track as track

__version__ = "0.1.0"

# Loaded on first use: pluggy, the loader and its schema checks, the engine, sqlite3.
_LAZY = {
    "hookimpl": "hookspecs",
    "Listener": "events",
    "RunResult": "events",
    "TaskResult": "events",
    "load_routine": "config",
    "Routine": "config",
    "Registry": "registry",
    "Orchestrator": "api",
    "track": "tracked",
    "Tracked": "tracked",
    "RunStore": "runs",
    "RunRecord": "runs",
    "TaskRecord": "runs",
    "LogRecord": "runs",
}
__all__ = [
    "Cancelled", "CodeLocation", "Context", "Executor", "Listener", "Location", "LogRecord",
    "NotRetryable", "Orchestrator", "PluginError", "Registry", "Routine", "RoutineError",
    "RunRecord", "RunResult", "RunStore", "TaskMetrics", "TaskRecord", "TaskResult", "Tracked",
    "UserError", "__version__", "hookimpl", "load_routine", "task", "track",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
