"""orchestrator: a config-driven orchestrator for data-lake jobs.

The public API. What every plugin needs (the executor contract, errors) is imported here for
real; the rest (events, the routine loader, the registry, the run store...) loads on first use,
so that ``orchestrate --version``, ``validate`` and a plugin's import stay fast. Type checkers
see every name through the ``TYPE_CHECKING`` imports below, so nothing public is ``Any`` to them.

For a plugin: :class:`Executor`, :func:`task`, :class:`TaskMetrics`, :class:`Context`,
:data:`hookimpl`, :class:`Location`, :class:`CodeLocation`, :class:`Place`, :class:`Cancelled`,
:class:`NotRetryable`. To watch runs: :class:`Listener` (events: ``run_started``,
``task_started``, ``task_retrying``, ``task_finished``, ``run_finished``) and
:class:`RunResult`. For a run-store plugin (the ``run_store`` hook): :class:`RunStore` and the
records it keeps. To run routines from Python: :class:`Orchestrator`, :func:`load_routine`,
:class:`RunOptions`, :func:`track`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import PluginError, RoutineError, UserError
from .executor import (Cancelled, CodeLocation, Context, Dataset, Executor, Lineage, Location,
                       NotRetryable, Place, TaskMetrics, Uncompilable, task)

if TYPE_CHECKING:
    from .api import Orchestrator as Orchestrator
    from .engine.options import RunOptions as RunOptions
    from .routine.load import Routine as Routine
    from .routine.load import load_routine as load_routine
    from .events import Listener as Listener
    from .events import RunResult as RunResult
    from .events import TaskResult as TaskResult
    from .hookspecs import hookimpl as hookimpl
    from .registry import Registry as Registry
    from .runs.store import LogRecord as LogRecord
    from .runs.store import RunRecord as RunRecord
    from .runs.store import RunStore as RunStore
    from .runs.store import TaskRecord as TaskRecord
    from .runs.track import Tracked as Tracked
    from .runs.track import track as track

__version__ = "0.1.0"

# Loaded on first use: pluggy, the loader and its schema checks, the engine, sqlite3.
_LAZY = {
    "hookimpl": "hookspecs",
    "Listener": "events",
    "RunResult": "events",
    "TaskResult": "events",
    "load_routine": "routine.load",
    "Routine": "routine.load",
    "Registry": "registry",
    "Orchestrator": "api",
    "RunOptions": "engine.options",
    "track": "runs.track",
    "Tracked": "runs.track",
    "RunStore": "runs.store",
    "RunRecord": "runs.store",
    "TaskRecord": "runs.store",
    "LogRecord": "runs.store",
}
__all__ = [
    "Cancelled", "CodeLocation", "Context", "Dataset", "Executor", "Lineage", "Listener",
    "Location", "LogRecord",
    "NotRetryable", "Orchestrator", "Place", "PluginError", "Registry", "Routine", "RoutineError",
    "RunOptions", "RunRecord", "RunResult", "RunStore", "TaskMetrics", "TaskRecord", "TaskResult",
    "Tracked", "Uncompilable", "UserError", "__version__", "hookimpl", "load_routine", "task",
    "track",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    # Cached in the module's namespace: __getattr__ (PEP 562) runs only for names not found there,
    # so each lazy name is imported once.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
