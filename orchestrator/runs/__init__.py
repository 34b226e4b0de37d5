"""Runs over time: the store contract and its SQLite backend, the recorder, control, ``@track``.

``store`` is what a backend implements (a plugin returns one from the ``run_store`` hook);
``recorder`` is the listener that writes a run as it happens; ``control`` starts, reaps, waits
for, cancels and resumes runs; ``track`` records plain Python functions as runs.
"""
from .store import LogRecord, RoutineBusy, RunRecord, RunStore, TaskRecord, UnknownRun, open_store

__all__ = [
    "LogRecord",
    "RoutineBusy",
    "RunRecord",
    "RunStore",
    "TaskRecord",
    "UnknownRun",
    "open_store",
]
