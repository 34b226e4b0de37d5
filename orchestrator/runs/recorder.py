"""Record a run as it happens: the run, each task attempt, its logs, a heartbeat.

``RunRecorder`` is a listener like the console renderer; ``LogCapture`` routes what tasks log
(``context.logger``, Python ``logging``) and print into the run's log, secrets masked.
"""
from __future__ import annotations

import functools
import io
import os
import sys
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO

from ..events import CANCELLED, FAILED, Listener, RunResult, TaskResult
from ..executor import current_context
from ..lazy_logging import when_imported
from ..masking import MaskedLines, MaskSecrets
from ..routine.substitution import mask
from .io import FLUSH_SECONDS, WRITE_AT_ONCE_SECONDS, TaskWriter
from .store import (HEARTBEAT_SECONDS, RUNNING, LogRecord, RoutineBusy, RunRecord, RunStore,
                    TaskRecord)

if TYPE_CHECKING:
    import logging

__all__ = ["LogCapture", "MaskSecrets", "RunRecorder", "new_record", "parent_run_id"]
PARENT_ENV = "ORCHESTRATOR_PARENT_RUN_ID"
WATCH_SECONDS = 1.0


def parent_run_id() -> str | None:
    """The run this one is started from: the task running in this thread, or the parent process's
    run."""
    context = current_context()
    return context.run_id if context is not None else os.environ.get(PARENT_ENV) or None


class RunRecorder(Listener):
    """Writes the run and each task attempt to the store, beats a heartbeat, relays cancel requests.

    The record is the run's claim on its routine. If it cannot be written (the store is full, locked
    past its timeout, damaged) or the store itself vanishes (the orchestrator home deleted mid-run),
    the run cannot be trusted to be the only one, nor to be resumable: ``on_failure`` is called once
    with the reason (the run is then stopped), the run ends as failed and ``failure`` says why. A
    vanished store is re-created at once, with this run's record and attempts in it, so that a
    second start is refused while this run is still stopping.

    Task records are group-committed (:class:`TaskWriter`): written at once when a step starts or
    ends, when a task fails or is cancelled, and when a task did real work (ran a few
    milliseconds or more: the commit is then cheap beside it). Only quick tasks in the middle of a
    step wait, at most the flush interval. So a step that a resume counts as done is on disk
    before the next one starts, and a run that dies shows which step was running. ``step_sizes``
    (tasks per step, in plan order) tells when a step ends; without it every finished task is
    written at once. A batch that cannot be written fails the run like any other record.
    """

    def __init__(self, store: RunStore, record: RunRecord,
                 on_cancel_request: Callable[[], None] | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 on_failure: Callable[[str], None] | None = None,
                 watch_seconds: float = WATCH_SECONDS,
                 step_sizes: Sequence[int] | None = None,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.record = record
        self.on_cancel_request = on_cancel_request
        self.on_failure = on_failure
        self.heartbeat_seconds = heartbeat_seconds
        self.watch_seconds = min(watch_seconds, heartbeat_seconds)
        self.step_sizes = list(step_sizes) if step_sizes is not None else None
        self.failure: str | None = None
        # The attempt each step is running now, by step index: a step runs its tasks one at a
        # time, so this one small dict is all the bookkeeping a task start needs. A flush builds
        # their ``running`` records from it, and so does a store re-created after it vanished.
        self._running: dict[int, TaskResult] = {}
        # What a re-created store is given again: every result that ended (they are the
        # engine's, alive anyway: a list of them costs no objects) and the records of attempts
        # that failed before a retry (the result moved on to the next attempt). The writer
        # drops what it wrote: a record per task kept to the end made the interpreter's last
        # garbage collection cost about 3 k instructions per task.
        self._results: list[TaskResult] = []
        self._retried: list[TaskRecord] = []
        self.writer = TaskWriter(store, flush_seconds, running=self._running_records)
        # The last task index of each step: its task ends the step (see ``task_finished``).
        self._last_index = None if step_sizes is None else [size - 1 for size in step_sizes]
        self._failure_lock, self._watch_lock = threading.Lock(), threading.Lock()
        # a retry's own start, not the task's (so attempts do not overlap on a timeline)
        self._attempt_started: dict[tuple[int, int], float] = {}
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def begin(self, allow_concurrent: bool = False) -> None:
        """Claim the routine (refused with ``RoutineBusy`` if a live run holds it) and start the
        heartbeat."""
        self.store.start_run(self.record, allow_concurrent)
        self._beater = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._beater.start()

    def _beat(self) -> None:
        """Flush waiting task records on the writer's interval; watch the store and beat (and look
        for a cancel request) on theirs."""
        next_watch = time.monotonic() + self.watch_seconds
        next_beat = time.monotonic() + self.heartbeat_seconds
        # One thread for all three duties: the flush interval (0.2 s) is the shortest, so the
        # wait is cut to it, and the store is looked at only on its own, slower schedule.
        while not self._stop.wait(self._next_wait(min(next_watch, next_beat))):
            if time.monotonic() >= next_watch:
                next_watch = time.monotonic() + self.watch_seconds
                self._watch()
            self.flush()
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.heartbeat_seconds
            try:
                self.store.update_run(self.record.run_id, heartbeat=time.time())
                current = self.store.get_run(self.record.run_id)
            except Exception:  # a store hiccup must not kill the run
                continue
            # The record was deleted under a live run (its routine's claim with it): without
            # putting it back, a second run of the routine would start beside this one.
            if current is None:
                self._reclaim("its record vanished from the run store")
            elif current.cancel_requested and self.on_cancel_request:
                self.on_cancel_request()

    def _next_wait(self, deadline: float) -> float:
        return max(0.0, min(self.writer.interval, deadline - time.monotonic()))

    def flush(self) -> None:
        """Write the task records waiting for their batch; a failure fails the run."""
        self._quietly(self.writer.flush)

    def _watch(self) -> None:
        """The store this run claimed its routine in must still be the one at its place."""
        # ``run_finished`` watches once more while the heartbeat thread may be doing the same:
        # the lock keeps the two from re-creating the store twice.
        with self._watch_lock:
            reason = self.store.lost()
            if reason is not None and self.failure is None:
                self._reclaim(f"the run store {reason} while the run was going "
                              "(was the orchestrator home removed?)")

    def _reclaim(self, reason: str) -> None:
        """Put this run's record (its claim) and attempts into a fresh store, then fail the run: the
        executors' state under the home (journals, remote ids) went with it, so carrying on would
        give up what a rerun after a crash relies on."""
        try:
            self.store.reopen()
            self.record.heartbeat = time.time()
            try:
                self.store.start_run(self.record)
            except RoutineBusy as busy:
                reason += f"; run {busy.run_id} has claimed the routine since"
                self.store.start_run(self.record, allow_concurrent=True)
            # Failed attempts before retries, every ended task, then the attempts running now:
            # the new store holds all the run had. The flush after it writes what still waited
            # again, which only replaces rows with the same records.
            ended = [self._task_record(result, result.status) for result in self._results]
            self.store.record_tasks([*self._retried, *ended, *self._running_records()])
            self.writer.flush()
        except Exception as exc:  # the store cannot be re-created either: the run still stops
            reason += f"; it could not be re-created ({exc})"
        self.fail(reason)

    def fail(self, reason: str) -> None:
        """The run's record cannot be trusted any more: say so once, let the owner stop the run."""
        # The heartbeat thread and step threads can fail at once (a store that filled up fails
        # every write): the first reason is kept and the owner is told once.
        with self._failure_lock:
            if self.failure is not None:
                return
            self.failure = reason
        line = LogRecord(self.record.run_id, time.time(), "ERROR", None, None,
                         f"run stopped: {reason}")
        self._quietly(lambda: self.store.append_logs([line]))
        if self.on_failure is not None:
            self.on_failure(reason)

    def store_failed(self, exc: BaseException) -> None:
        self.fail(f"the run store failed: {' '.join(str(exc).split()) or type(exc).__name__}")

    def _quietly(self, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception as exc:
            self.store_failed(exc)

    def _task_record(self, result: TaskResult, status: str) -> TaskRecord:
        """The record of ``result``'s current attempt. Its id is the run's id (unique) and the
        attempt's place in it: cheaper than a random UUID per task, and the same whenever it is
        built again (a running record, then the finished one, replace each other)."""
        step_index, index, attempt = result.step_index, result.index, result.attempts
        started = result.started
        if attempt > 1:  # a retry's own start, not the task's first
            started = self._attempt_started.get((step_index, index)) or started
        metrics = result.metrics
        run_id = self.record.run_id
        return TaskRecord(
            f"{run_id}:{step_index}.{index}.{attempt}", run_id, result.step, result.executor,
            result.task, step_index, index, attempt, status, started or time.time(),
            result.ended, result.error_type, result.error or result.reason,
            metrics.to_dict() if metrics else None, result.traceback,
            result.watermark, result.next_watermark, result.result, result.args)

    def _running_records(self) -> list[TaskRecord]:
        return [self._task_record(result, RUNNING) for result in list(self._running.values())]

    def _log_traceback(self, result: TaskResult) -> None:
        head = f"attempt {result.attempts} failed: {result.error_type}: {result.error}"
        message = f"{head}\n{result.traceback}".rstrip("\n")
        when = result.ended or time.time()
        record = LogRecord(self.record.run_id, when, "ERROR", result.step, result.task, message)
        self.store.append_logs([record])

    def task_started(self, result: TaskResult) -> None:
        """Called for every attempt of every task: kept to a dictionary write. The running
        record is built only if a flush comes before the attempt ends."""
        # A plain dict write, no lock: the heartbeat thread reads ``_running`` through a copy
        # (``list(values())``), which the GIL makes atomic against this.
        self._running[result.step_index] = result
        if result.attempts > 1:  # the first attempt starts when the task does (``result.started``)
            self._attempt_started[(result.step_index, result.index)] = time.time()
        elif result.index == 0:  # a step starts: a crash shows where it was
            self.flush()

    def task_retrying(self, result: TaskResult, delay: float) -> None:
        result.ended = time.time()
        running = self._running
        if running.get(result.step_index) is result:
            running.pop(result.step_index, None)
        record = self._task_record(result, FAILED)
        self._retried.append(record)
        self.writer.records.append(record)
        result.ended = None
        if result.traceback:  # ``orchestrate logs`` tells what went wrong, too
            self._quietly(lambda: self._log_traceback(result))
        self.flush()

    def task_finished(self, result: TaskResult) -> None:
        """Called for every task: the attempt is no longer running, and its record waits for
        the next flush (written now if it must be)."""
        status, step_index = result.status, result.step_index
        running = self._running
        # Only this attempt's own entry: a run past its cancel grace reports the tasks it
        # abandons from the scheduler's thread, while their step threads may still report.
        if running.get(step_index) is result:
            running.pop(step_index, None)
        self._results.append(result)
        self.writer.records.append(self._task_record(result, status))
        if status == FAILED and result.traceback:
            self._quietly(lambda: self._log_traceback(result))
        # Written at once: a failure or a cancel (a rerun must see it), the step's last task (a
        # resume counts the step done only from disk), a task that did real work (a commit is
        # cheap beside it, and a rerun after a crash would repeat that work). Without the
        # heartbeat thread (``begin`` not called) nothing else flushes on time.
        last, started, ended = self._last_index, result.started, result.ended
        if (status in (FAILED, CANCELLED) or last is None or step_index >= len(last)
                or result.index >= last[step_index]
                or (started is not None and ended is not None
                    and ended - started >= WRITE_AT_ONCE_SECONDS)
                or (self._beater is None and self.writer.due)):
            self.flush()

    def run_finished(self, result: RunResult) -> None:
        """Record the end. The recorder is the run's first listener: a run whose record failed is
        marked failed here, before the console and JSON output report it."""
        self._stop.set()
        self._watch()
        self.flush()
        status = FAILED if self.failure is not None else result.status
        self._quietly(lambda: self.store.update_run(self.record.run_id, status=status,
                                                    ended=result.ended, heartbeat=time.time()))
        if self.failure is not None:  # set before, or by this very write
            result.status = FAILED


class LogCapture:
    """Sends log records and printed lines of the running tasks to the run's log.

    Its ``logging`` handler goes on the root logger only once ``logging`` is imported: at once if
    it already is, else when a task (or anything it calls) first imports it
    (orchestrator.lazy_logging), so a run that logs nothing never pays for ``logging``.
    """

    def __init__(self, store: RunStore, run_id: str, secrets: frozenset[str] = frozenset(),
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        """``on_error`` hears of a log line the store refused; the task that logged it does not."""
        self.store, self.run_id, self.secrets, self.on_error = store, run_id, set(secrets), on_error
        self._saved: list[Any] = []
        self._handler: logging.Handler | None = None
        self._forget: Callable[[], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """One log record into the run's log (what the root logger's handler does)."""
        handler = self._handler or _capture_handler()(self)
        try:
            step, task = _where(record.name)
            self.write(record.levelname, handler.format(record), step, task, record.created)
        except Exception:
            handler.handleError(record)

    def write(self, level: str, message: str, step: str | None = None, task: str | None = None,
              ts: float | None = None) -> None:
        record = LogRecord(self.run_id, ts or time.time(), level, step, task,
                           mask(message, self.secrets))
        try:
            self.store.append_logs([record])
        except Exception as exc:
            if self.on_error is not None:
                self.on_error(exc)

    def __enter__(self) -> LogCapture:
        self._saved = [None, sys.stdout, sys.stderr]
        self._forget = when_imported(self._install)
        sys.stdout = _Tee(sys.stdout, self, "PRINT")
        sys.stderr = _Tee(sys.stderr, self, "STDERR")
        return self

    def _install(self, logging: ModuleType) -> None:
        self._handler = _capture_handler()(self)
        root = logging.getLogger()
        self._saved[0] = root.level
        # INFO unless the root is already more verbose: tasks' info lines are part of the run's
        # log even when nothing configured logging (the Python API, the Lambda).
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        root.addHandler(self._handler)

    def __exit__(self, *exc: Any) -> None:
        if self._forget is not None:
            self._forget()
        if self._handler is not None:
            import logging

            root = logging.getLogger()
            root.removeHandler(self._handler)
            root.setLevel(self._saved[0])
            self._handler = None
        for tee in (sys.stdout, sys.stderr):
            if isinstance(tee, _Tee):
                tee.flush_partial()
        sys.stdout, sys.stderr = self._saved[1], self._saved[2]


@functools.lru_cache(maxsize=None)
def _capture_handler() -> Callable[[LogCapture], logging.Handler]:
    """The ``logging.Handler`` class of a :class:`LogCapture`, made once ``logging`` is imported
    (a class at module level would import it with this module)."""
    import logging

    class CaptureHandler(logging.Handler):
        def __init__(self, capture: LogCapture) -> None:
            super().__init__(logging.INFO)
            self.capture = capture

        def emit(self, record: logging.LogRecord) -> None:
            self.capture.emit(record)

    return CaptureHandler


def _where(logger_name: str) -> tuple[str | None, str | None]:
    context = current_context()
    if context is not None:
        return context.step, context.task
    parts = logger_name.split(".")
    if len(parts) >= 4 and parts[:2] == ["orchestrator", "task"]:
        return parts[2], parts[3]
    return None, None


class _Tee(io.TextIOBase):
    """Writes through to the real stream and keeps whole lines for the run's log.

    The real stream gets whole lines too, masked: a secret written in pieces matches no piece.
    """

    def __init__(self, stream: TextIO, capture: LogCapture, level: str) -> None:
        self.stream, self.capture, self.level = stream, capture, level
        self._terminal = MaskedLines(capture.secrets, self._write_out)
        self._partial = threading.local()

    def _write_out(self, shown: str) -> None:
        try:
            self.stream.write(shown)
        except UnicodeEncodeError:  # an undecodable file name, printed to a strict pipe or file
            encoding = getattr(self.stream, "encoding", None) or "utf-8"
            self.stream.write(shown.encode(encoding, "backslashreplace").decode(encoding))

    def write(self, text: str) -> int:
        self._terminal.write(text)
        buffered = getattr(self._partial, "text", "") + text
        *lines, self._partial.text = buffered.split("\n")
        context = current_context()
        for line in lines:
            if line.strip():
                self.capture.write(
                    self.level,
                    line,
                    context.step if context else None,
                    context.task if context else None,
                )
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def flush_partial(self) -> None:
        self._terminal.close()
        self.stream.flush()
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
    return RunRecord(
        run_id=routine.run_id,
        routine=routine.name,
        routine_file=str(routine.file.resolve()),
        routine_hash=routine.hash,
        params=routine.masked(routine.params),
        parent_run_id=parent_run_id(),
        resumed_from=resumed_from,
    )
