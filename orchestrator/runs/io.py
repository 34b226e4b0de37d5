"""How a run talks to its store cheaply: task records group-committed, watermarks read once.

Tracking must not cost more than the tasks it tracks: a commit per task event costs several
times a quick task, and the engine asks for the watermark before every attempt.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .store import RunStore, TaskRecord

FLUSH_SECONDS = 0.2  # the longest a quick finished task's record waits before it is written
WRITE_AT_ONCE_SECONDS = 0.005  # a task that ran this long is written as soon as it ends
_UNKNOWN = object()


class RememberedWatermarks:
    """The store's watermarks, each read once per run: the engine asks before every task attempt.

    Writes go through to the store at once (and are remembered). The run holds its routine, so no
    other run changes them meanwhile (unless started with ``--allow-concurrent``, which races
    either way).
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._known: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def get_watermark(self, routine: str, step: str, task: str) -> Any:
        key = (routine, step, task)
        known = self._known.get(key, _UNKNOWN)  # no lock to read: a dict read is atomic
        if known is not _UNKNOWN:
            return known
        with self._lock:
            if key not in self._known:
                self._known[key] = self.store.get_watermark(routine, step, task)
            return self._known[key]

    def set_watermark(self, routine: str, step: str, task: str, value: Any, run_id: str) -> None:
        with self._lock:
            self.store.set_watermark(routine, step, task, value, run_id)
            self._known[(routine, step, task)] = value


class TaskWriter:
    """Task records written in batches, one transaction each (group commit).

    Committing every event costs more than a short task, so records wait here: at most
    ``interval`` seconds (a timer flushes them), and not at all when :meth:`flush` is called, which
    the recorder does when a step ends or a task attempt fails. A record replaced before its flush
    (``running``, then ``succeeded``) is written once, and a ``running`` record is not even built
    unless a flush comes while the task runs.
    """

    def __init__(self, store: RunStore, interval: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self._pending: dict[str, TaskRecord] = {}
        self._running: dict[str, Callable[[], TaskRecord]] = {}  # id -> how to build its record
        self._since: float | None = None  # when the oldest waiting record arrived (monotonic)
        self._lock = threading.Lock()
        # Flushes in order: an older batch never lands after a newer one.
        self._write_lock = threading.Lock()

    def started(self, task_id: str, running: Callable[[], TaskRecord]) -> None:
        """A task attempt began; ``running()`` builds its record if a flush comes before it ends."""
        with self._lock:
            self._running[task_id] = running
            if self._since is None:
                self._since = time.monotonic()

    def add(self, record: TaskRecord) -> None:
        with self._lock:
            self._running.pop(record.id, None)
            self._pending[record.id] = record
            if self._since is None:
                self._since = time.monotonic()

    @property
    def due(self) -> bool:
        since = self._since
        return since is not None and time.monotonic() - since >= self.interval

    def flush(self, timeout: float | None = None) -> bool:
        """Write what waits; if that fails, it waits again (behind anything newer) and it raises.

        With ``timeout``, give up (False) if another flush holds the writer that long: a process
        about to exit must not hang on a flush that its own interrupted thread holds.
        """
        if not self._write_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            with self._lock:
                batch = [running() for running in self._running.values()]
                batch.extend(self._pending.values())
                self._running, self._pending, self._since = {}, {}, None
            if batch:
                self._write(batch)
            return True
        finally:
            self._write_lock.release()

    def _write(self, batch: list[TaskRecord]) -> None:
        try:
            self.store.record_tasks(batch)
        except BaseException:
            with self._lock:
                for record in batch:
                    self._pending.setdefault(record.id, record)
                self._since = self._since or time.monotonic()
            raise
