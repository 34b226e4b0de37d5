"""The Python API: validate, plan and run routines from code, with the same rules as the CLI."""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Union

from .engine import Plan, Run, RunOptions, plan
from .events import Listener, RunResult
from .registry import Registry
from .routine.load import Routine, load_routine

#: A routine file's path, or the routine itself as a dict (the seed's notebook builds one inline).
RoutineSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]


class Orchestrator:
    """Holds a registry (and optionally one routine); each method loads and validates afresh.

    ``Orchestrator(routine).run_executors()`` is the seed's spelling of
    ``Orchestrator().run(routine)``. Runs are recorded in the run store (``track=False`` to skip
    it); a run started from inside a task records that task's run as its parent.
    """

    def __init__(
        self,
        routine: RoutineSource | Registry | None = None,
        registry: Registry | None = None,
        store: Any = None,
    ) -> None:
        if isinstance(routine, Registry):  # the earlier signature: Orchestrator(registry, store)
            if registry is not None and not isinstance(registry, Registry) and store is None:
                store = registry
            routine, registry = None, routine
        self.routine = routine
        self.registry = registry or Registry()
        self._store = store

    @property
    def store(self) -> Any:
        # Opened on first need: validating or planning from Python never opens a store (nor
        # imports sqlite3 or a store plugin's boto3).
        if self._store is None:
            from .runs.store import open_store

            self._store = open_store(self.registry)
        return self._store

    def _source(self, path: RoutineSource | None) -> RoutineSource:
        source = path if path is not None else self.routine
        if source is None:
            raise TypeError("no routine: pass a path or a dict, here or to Orchestrator(routine)")
        return source

    def load(self, path: RoutineSource | None = None, params: Mapping[str, Any] | None = None,
             resolve_secrets: bool = False) -> Routine:
        """``resolve_secrets``: read ``${secret.X}``/``${ssm.X}`` (``start``/``run`` do)."""
        return load_routine(self._source(path), params, self.registry,
                            resolve_secrets=resolve_secrets)

    def plan(
        self, path: RoutineSource | None = None, params: Mapping[str, Any] | None = None
    ) -> Plan:
        return plan(self.load(path, params))

    def start(self, path: RoutineSource | None = None, params: Mapping[str, Any] | None = None,
              listeners: Iterable[Listener] = (), max_parallel: int = 4, track: bool = True,
              allow_concurrent: bool = False, options: RunOptions | None = None) -> Any:
        """A validated run that has claimed its routine, not yet executed: call ``execute()``;
        ``cancel()`` from another thread stops it. ``options`` replaces the keyword arguments
        (params, max_parallel, track, allow_concurrent) when given."""
        if options is None:
            options = RunOptions(params=dict(params or {}), max_parallel=max_parallel,
                                 track=track, allow_concurrent=allow_concurrent)
        # Secrets by reference are read only here, for a run: load() and plan() keep the references
        # and read nothing.
        routine = load_routine(self._source(path), options.params, self.registry,
                               run_id=options.run_id, resolve_secrets=True)
        the_plan = plan(routine)
        if not options.track:
            return Run(the_plan, listeners, options)
        from .runs.control import TrackedRun

        tracked = TrackedRun(self.store, the_plan, listeners, options)
        # Claimed now, before start() returns: a second live run of the routine is refused here,
        # before any of its tasks can run.
        tracked.claim()
        return tracked

    def run(self, path: RoutineSource | None = None, params: Mapping[str, Any] | None = None,
            listeners: Iterable[Listener] = (), max_parallel: int = 4, track: bool = True,
            allow_concurrent: bool = False, options: RunOptions | None = None) -> RunResult:
        result: RunResult = self.start(path, params, listeners, max_parallel, track,
                                       allow_concurrent, options).execute()
        return result

    def run_executors(self, params: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
        """The seed's name: run the routine given to the constructor (same
        validation, same records)."""
        return self.run(None, params, **options)
