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
    the recorder does when a step ends or a task attempt fails. A ``running`` record is not even
    built unless a flush comes while its attempt runs, and is written once per attempt.

    ``records`` are the finished attempts waiting, in the order they ended: a step thread adds
    one with ``records.append`` alone (a list append is atomic under the GIL, and a lock per task
    cost as much as the rest of the bookkeeping), and a flush writes and removes those it found.
    ``running`` returns the records of the attempts running now (by default those given
    to :meth:`started` and not yet replaced through :meth:`add`).
    """

    def __init__(self, store: RunStore, interval: float = FLUSH_SECONDS,
                 running: Callable[[], list[TaskRecord]] | None = None) -> None:
        self.store = store
        self.interval = interval
        self.records: list[TaskRecord] = []
        self._started: dict[str, Callable[[], TaskRecord]] = {}  # id -> how to build its record
        self._running = running or self._started_records
        # Ids of the running attempts whose ``running`` record is on disk: not written again at
        # every flush while a long task runs.
        self._shown: frozenset[str] = frozenset()
        self._flushed = time.monotonic()  # when the last flush ended
        # Flushes in order: an older batch never lands after a newer one.
        self._write_lock = threading.Lock()

    def started(self, task_id: str, running: Callable[[], TaskRecord]) -> None:
        """A task attempt began; ``running()`` builds its record if a flush comes before it ends."""
        self._started[task_id] = running

    def add(self, record: TaskRecord) -> None:
        self._started.pop(record.id, None)
        self.records.append(record)

    def _started_records(self) -> list[TaskRecord]:
        return [build() for build in list(self._started.values())]

    @property
    def due(self) -> bool:
        """Records wait, and the last flush is ``interval`` ago or more."""
        return bool(self.records) and time.monotonic() - self._flushed >= self.interval

    def flush(self, timeout: float | None = None) -> bool:
        """Write what waits; if that fails, it waits again (behind anything newer) and it raises.

        With ``timeout``, give up (False) if another flush holds the writer that long: a process
        about to exit must not hang on a flush that its own interrupted thread holds.
        """
        if not self._write_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            # Running attempts are looked at before the finished ones are counted: an attempt
            # that ends in between then has its finished record after its running one in the
            # batch (the later row wins), never a running record written after its end.
            running = self._running()
            end = len(self.records)
            shown = self._shown
            batch = [record for record in running if record.id not in shown]
            batch.extend(self.records[:end])
            if batch:
                # On failure nothing is marked written: the next flush writes this batch again,
                # followed by anything newer, so a newer record of the same id still wins.
                self.store.record_tasks(batch)
            # Only the first ``end`` are removed: what step threads appended meanwhile stays
            # (``del`` of a slice is one atomic step too).
            del self.records[:end]
            self._shown = frozenset(record.id for record in running)
            self._flushed = time.monotonic()
            return True
        finally:
            self._write_lock.release()
