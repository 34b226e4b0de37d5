"""Record a run as it happens: the run, each task attempt, its logs, a heartbeat.

``RunRecorder`` is a listener like the console renderer; ``LogCapture`` routes what tasks log
(``context.logger``, Python ``logging``) and print into the run's log, secrets masked.
"""
from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
import uuid
from typing import Any, Callable, TextIO

from ..events import SKIPPED, Listener, RunResult, TaskResult
from ..executor import current_context
from .store import HEARTBEAT_SECONDS, LogRecord, RunRecord, RunStore, TaskRecord
from ..routine.substitution import mask

PARENT_ENV = "ORCHESTRATOR_PARENT_RUN_ID"


def parent_run_id() -> str | None:
    """The run this one is started from: the task running in this thread, or the parent process's run."""
    context = current_context()
    return context.run_id if context is not None else os.environ.get(PARENT_ENV) or None


class RunRecorder(Listener):
    """Writes the run and every task attempt to the store; beats a heartbeat; relays remote cancel requests."""

    def __init__(self, store: RunStore, record: RunRecord, on_cancel_request: Callable[[], None] | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.store = store
        self.record = record
        self.on_cancel_request = on_cancel_request
        self.heartbeat_seconds = heartbeat_seconds
        self._attempt_ids: dict[tuple[int, int], str] = {}
        self._attempt_started: dict[tuple[int, int], float] = {}  # a retry's own start, not the task's
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def begin(self, allow_concurrent: bool = False) -> None:
        """Claim the routine (refused with ``RoutineBusy`` if a live run holds it) and start the heartbeat."""
        self.store.start_run(self.record, allow_concurrent)
        self._beater = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._beater.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.store.update_run(self.record.run_id, heartbeat=time.time())
                current = self.store.get_run(self.record.run_id)
            except Exception:  # a store hiccup must not kill the run
                continue
            if current is not None and current.cancel_requested and self.on_cancel_request:
                self.on_cancel_request()

    def _record(self, result: TaskResult, status: str, attempt: int | None = None) -> None:
        key = (result.step_index, result.index)
        task_id = self._attempt_ids.get(key) or str(uuid.uuid4())
        self._attempt_ids[key] = task_id
        self.store.record_task(TaskRecord(
            id=task_id, run_id=self.record.run_id, step=result.step, executor=result.executor, task=result.task,
            step_index=result.step_index, task_index=result.index, attempt=result.attempts if attempt is None else attempt,
            status=status, started=self._attempt_started.get(key) or result.started or time.time(), ended=result.ended,
            error_type=result.error_type, error=result.error or result.reason,
            metrics=result.metrics.to_dict() if result.metrics else None, traceback=result.traceback,
            watermark=result.watermark, next_watermark=result.next_watermark))

    def task_started(self, result: TaskResult) -> None:
        self._attempt_ids.pop((result.step_index, result.index), None)
        self._attempt_started[(result.step_index, result.index)] = time.time()
        self._record(result, "running")

    def task_retrying(self, result: TaskResult, delay: float) -> None:
        result.ended = time.time()
        self._record(result, "failed")
        result.ended = None

    def task_finished(self, result: TaskResult) -> None:
        self._record(result, result.status, 0 if result.status == SKIPPED and not result.attempts else None)

    def run_finished(self, result: RunResult) -> None:
        self._stop.set()
        self.store.update_run(self.record.run_id, status=result.status, ended=result.ended, heartbeat=time.time())


class MaskSecrets(logging.Filter):
    """Masks secret values in a record's message before any handler formats it."""

    def __init__(self, secrets: frozenset[str]) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = mask(record.getMessage(), self.secrets), None
        return True


class LogCapture(logging.Handler):
    """Sends log records and printed lines of the running tasks to the run's log."""

    def __init__(self, store: RunStore, run_id: str, secrets: frozenset[str] = frozenset()) -> None:
        super().__init__(logging.INFO)
        self.store, self.run_id, self.secrets = store, run_id, set(secrets)
        self._saved: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            step, task = _where(record.name)
            self.write(record.levelname, self.format(record), step, task, record.created)
        except Exception:
            self.handleError(record)

    def write(self, level: str, message: str, step: str | None = None, task: str | None = None,
              ts: float | None = None) -> None:
        self.store.append_logs([LogRecord(self.run_id, ts or time.time(), level, step, task, mask(message, self.secrets))])

    def __enter__(self) -> LogCapture:
        root = logging.getLogger()
        self._saved = [root.level, sys.stdout, sys.stderr]
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        root.addHandler(self)
        sys.stdout = _Tee(sys.stdout, self, "PRINT")
        sys.stderr = _Tee(sys.stderr, self, "STDERR")
        return self

    def __exit__(self, *exc: Any) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._saved[0])
        for tee in (sys.stdout, sys.stderr):
            if isinstance(tee, _Tee):
                tee.flush_partial()
        sys.stdout, sys.stderr = self._saved[1], self._saved[2]


def _where(logger_name: str) -> tuple[str | None, str | None]:
    context = current_context()
    if context is not None:
        return context.step, context.task
    parts = logger_name.split(".")
    if len(parts) >= 4 and parts[:2] == ["orchestrator", "task"]:
        return parts[2], parts[3]
    return None, None


class _Tee(io.TextIOBase):
    """Writes through to the real stream and keeps whole lines for the run's log."""

    def __init__(self, stream: TextIO, capture: LogCapture, level: str) -> None:
        self.stream, self.capture, self.level = stream, capture, level
        self._partial = threading.local()

    def write(self, text: str) -> int:
        self.stream.write(mask(text, self.capture.secrets))
        buffered = getattr(self._partial, "text", "") + text
        *lines, self._partial.text = buffered.split("\n")
        context = current_context()
        for line in lines:
            if line.strip():
                self.capture.write(self.level, line, context.step if context else None, context.task if context else None)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def flush_partial(self) -> None:
        rest = getattr(self._partial, "text", "")
        if rest.strip():
            self.capture.write(self.level, rest)
        self._partial.text = ""

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.stream.fileno()


def new_record(routine: Any, resumed_from: str | None = None) -> RunRecord:
    return RunRecord(run_id=routine.run_id, routine=routine.name, routine_file=str(routine.file.resolve()),
                     routine_hash=routine.hash, params=routine.masked(routine.params),
                     parent_run_id=parent_run_id(), resumed_from=resumed_from)

