"""The Python API: validate, plan and run routines from code, with the same rules as the CLI."""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from .routine.load import Routine, load_routine
from .engine import Plan, Run, plan
from .events import Listener, RunResult
from .registry import Registry


class Orchestrator:
    """Holds a registry; each method loads and validates the routine afresh.

    Runs are recorded in the run store (``track=False`` to skip it); a run started from inside a
    task records that task's run as its parent.
    """

    def __init__(self, registry: Registry | None = None, store: Any = None) -> None:
        self.registry = registry or Registry()
        self._store = store

    @property
    def store(self) -> Any:
        if self._store is None:
            from .runs.store import open_store

            self._store = open_store(self.registry)
        return self._store

    def load(self, path: str | os.PathLike[str], params: Mapping[str, Any] | None = None) -> Routine:
        return load_routine(path, params, self.registry)

    def plan(self, path: str | os.PathLike[str], params: Mapping[str, Any] | None = None) -> Plan:
        return plan(self.load(path, params))

    def start(self, path: str | os.PathLike[str], params: Mapping[str, Any] | None = None,
              listeners: Iterable[Listener] = (), max_parallel: int = 4, track: bool = True,
              allow_concurrent: bool = False) -> Any:
        """A validated run that has claimed its routine, not yet executed: call ``execute()``;
        ``cancel()`` from another thread stops it."""
        the_plan = self.plan(path, params)
        if not track:
            return Run(the_plan, listeners, max_parallel)
        from .runs.control import TrackedRun

        tracked = TrackedRun(self.store, the_plan, listeners, max_parallel)
        tracked.claim(allow_concurrent)
        return tracked

    def run(self, path: str | os.PathLike[str], params: Mapping[str, Any] | None = None,
            listeners: Iterable[Listener] = (), max_parallel: int = 4, track: bool = True,
            allow_concurrent: bool = False) -> RunResult:
        return self.start(path, params, listeners, max_parallel, track, allow_concurrent).execute()
