"""The Python API: validate, plan and run routines from code, with the same rules as the CLI."""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from .config import Routine, load_routine
from .engine import Plan, Run, plan
from .events import Listener, RunResult
from .registry import Registry


class Orchestrator:
    """Holds a registry; each method loads and validates the routine afresh."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()

    def load(self, path: str | os.PathLike[str], params: Mapping[str, str] | None = None) -> Routine:
        return load_routine(path, params, self.registry)

    def plan(self, path: str | os.PathLike[str], params: Mapping[str, str] | None = None) -> Plan:
        return plan(self.load(path, params))

    def start(self, path: str | os.PathLike[str], params: Mapping[str, str] | None = None,
              listeners: Iterable[Listener] = (), max_parallel: int = 4) -> Run:
        """A validated run, not yet executed: call ``execute()``; ``cancel()`` from elsewhere stops it."""
        return Run(self.plan(path, params), listeners, max_parallel)

    def run(self, path: str | os.PathLike[str], params: Mapping[str, str] | None = None,
            listeners: Iterable[Listener] = (), max_parallel: int = 4) -> RunResult:
        return self.start(path, params, listeners, max_parallel).execute()
