"""Executing one task: its attempts, retries with backoff, timeout, watermarks and restore.

Everything a task leaves behind (error, traceback, metrics, result) is masked here, before any
listener sees it. The scheduler (``run.py``) decides which task runs; this module runs it.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

from ..events import CANCELLED, FAILED, SKIPPED, SUCCEEDED, Listener, TaskResult
from ..executor import Cancelled, Context, Executor, TaskMetrics
from ..masking import masked_traceback
from ..returns import kept_result
from ..routine.load import Routine, TaskCall
from .cancellation import Cancellation, quietly

MAX_RETRY_DELAY = 86400.0
CANCEL_GRACE = float(os.environ.get("ORCHESTRATOR_CANCEL_GRACE", "10"))
# Frames of these files lead every task's traceback: left out, the user's own code comes first.
ENGINE_FILES = frozenset(os.path.join(os.path.dirname(__file__), name)
                         for name in ("run.py", "task_runner.py"))


class TaskTimeout(Exception):
    pass


class WatermarkStore(Protocol):
    def get_watermark(self, routine: str, step: str, task: str) -> Any: ...

    def set_watermark(self, routine: str, step: str, task: str, value: Any,
                      run_id: str) -> None: ...


class TaskRunner:
    """Runs the tasks of one run, one call at a time per step thread; tells the listeners."""

    def __init__(self, routine: Routine, emit: Callable[..., None], cancellation: Cancellation,
                 watermarks: WatermarkStore | None = None, home: Any = None,
                 resumed_from: str | None = None) -> None:
        self.routine = routine
        self.emit = emit
        self.cancellation = cancellation
        self.watermarks = watermarks
        self.home = home
        self.resumed_from = resumed_from
        self.outputs_source: Any = None  # the Run whose results ${steps...} references read
        # What each attempt's start and end call, until ``listen`` binds the listeners' methods.
        self.on_started: list[Callable[[TaskResult], None]] = [
            functools.partial(emit, "task_started")]
        self.on_finished: list[Callable[[TaskResult], None]] = [
            functools.partial(emit, "task_finished")]

    def listen(self, listeners: Sequence[Any]) -> None:
        """Call these listeners' ``task_started`` and ``task_finished`` directly, in order: two
        calls per task and listener, instead of ``emit`` looking each method up by name. A
        listener that keeps ``Listener``'s empty method for an event is not called for it."""
        self.on_started = _bound(listeners, "task_started")
        self.on_finished = _bound(listeners, "task_finished")

    def run_or_restore(self, step: str, instance: Executor, call: TaskCall, result: TaskResult,
                       origin: str | None) -> bool:
        """Run the task, or, when it succeeded in run ``origin`` (a resume), let its executor
        rebuild its state instead; True when the step may go on."""
        if origin is not None:
            try:
                if self.restore(step, instance, call, result, origin):
                    return True
            except Exception as exc:  # the executor cannot rebuild the task's state: it fails
                result.started = result.ended = time.time()
                self.fail(result, exc)
                return False
        return self.run(step, instance, call, result)

    def run(self, step: str, instance: Executor, call: TaskCall, result: TaskResult) -> bool:
        """Call the task until it succeeds or its retries are spent; True when it succeeded."""
        method = getattr(instance, call.task)
        result.started = time.time()
        cancellation, routine, watermarks = self.cancellation, self.routine, self.watermarks
        # Every task goes through this loop: what is done once per task (the attribute reads
        # above, the listeners' bound methods) stays out of it, and the common attempt (no
        # timeout, args as given) calls the task right here rather than through ``invoke``.
        on_started, on_finished = self.on_started, self.on_finished
        own_event = call.timeout is not None  # else the attempt watches the run's cancel event
        plain = not (own_event or call.wants_context or call.references)
        for attempt in range(1, call.retries + 2):
            result.attempts = attempt
            result.error = result.error_type = result.traceback = result.result = None
            for notify in on_started:
                notify(result)
            # Only an attempt with a timeout can be stopped alone, so only it needs an event of
            # its own (made and registered per attempt); the others share the run's.
            event = cancellation.attempt_started(True) if own_event else cancellation.cancelled
            try:
                watermark = None
                if watermarks is not None:
                    watermark = watermarks.get_watermark(routine.name, step, call.task)
                ctx = Context(run_id=routine.run_id, run_date=routine.run_date,
                              routine_name=routine.name, step=step, task=call.task,
                              attempt=attempt, cancel_event=event, trusted=routine.trusted,
                              home=self.home, watermark=watermark,
                              resumed_from=self.resumed_from)
                result.watermark = watermark
                if plain:
                    with ctx.active():
                        value = method(**call.args)
                else:
                    value = self.invoke(instance, method, call, ctx, event)
                if value is None:  # most tasks: nothing to convert, mask or keep
                    result.metrics = result.result = None
                else:
                    self.keep_return(result, value)
                if ctx.next_watermark is not None:
                    self.save_watermark(step, call, ctx)
                result.next_watermark = ctx.next_watermark
                result.status, result.ended = SUCCEEDED, time.time()
                for notify in on_finished:
                    notify(result)
                return True
            except BaseException as exc:  # SystemExit or KeyboardInterrupt fail the task too
                if self.ended(call, result, attempt, exc):
                    return False
            finally:
                if own_event:
                    cancellation.attempt_ended(event)
        return False

    def ended(self, call: TaskCall, result: TaskResult, attempt: int,
              exc: BaseException) -> bool:
        """After a failed attempt: end the task (cancelled or failed), or wait to retry it."""
        cancelled = self.cancellation.cancelled
        # A task stopped by the run's cancel ends cancelled whatever it raised (often a side
        # effect of being stopped); a timeout is the task's own failure, and may be retried.
        if cancelled.is_set() or (isinstance(exc, Cancelled) and not isinstance(exc, TaskTimeout)):
            result.status, result.ended = CANCELLED, time.time()
            result.error = self.routine.masked(str(exc) or "cancelled")
            result.error_type = type(exc).__name__
            self.emit("task_finished", result)
            return True
        # No retry once the run is stopping (another step failed: nothing new starts) or for an
        # error its executor marked as one a retry cannot fix (bad SQL, access denied).
        if (attempt > call.retries or self.cancellation.stopping.is_set()
                or getattr(exc, "retryable", True) is False):
            result.ended = time.time()
            self.fail(result, exc)
            return True
        # Exponential backoff; the exponent is capped so that a task with thousands of retries
        # cannot overflow the float, and the delay at a day.
        delay = min(call.retry_delay * 2 ** min(attempt - 1, 32), MAX_RETRY_DELAY)
        self.describe_failure(result, exc)
        self.emit("task_retrying", result, delay)
        # Waiting on the cancel event, not sleeping: a cancel during a long backoff ends the task
        # at once instead of after the delay.
        if cancelled.wait(delay):
            result.status, result.ended = CANCELLED, time.time()
            self.emit("task_finished", result)
            return True
        return False

    def restore(self, step: str, instance: Executor, call: TaskCall, result: TaskResult,
                origin: str) -> bool:
        """Skip a task that succeeded in run ``origin``; its executor rebuilds what later tasks
        need. False when it cannot and the task must run again; raises what the executor raised.
        """
        ctx = self.context(step, call, 1, threading.Event())
        with ctx.active():
            restored = instance.restore(ctx, origin)
        if restored is False:
            ctx.logger.warning("%s.%s succeeded in run %s but its state cannot be rebuilt: "
                               "running it again", step, call.task, origin)
            return False
        self.skip([result], done_reason(origin))
        return True

    def context(self, step: str, call: TaskCall, attempt: int,
                event: threading.Event) -> Context:
        routine = self.routine
        watermark = None
        if self.watermarks is not None:
            watermark = self.watermarks.get_watermark(routine.name, step, call.task)
        return Context(run_id=routine.run_id, run_date=routine.run_date, routine_name=routine.name,
                       step=step, task=call.task, attempt=attempt, cancel_event=event,
                       trusted=routine.trusted, home=self.home,
                       watermark=watermark, resumed_from=self.resumed_from)

    def prepare_args(self, call: TaskCall, ctx: Context) -> Mapping[str, Any]:
        """The keyword arguments the task is called with: the one place a task's args are
        completed at run time (its ``context``; anything resolved from earlier tasks)."""
        args = call.args
        if call.references:  # ${steps...}: resolved from the upstream tasks' results
            from ..routine.outputs import prepared_args

            args = prepared_args(self.outputs_source, call, ctx)
        return dict(args, context=ctx) if call.wants_context else args

    def save_watermark(self, step: str, call: TaskCall, ctx: Context) -> None:
        if self.watermarks is not None and ctx.next_watermark is not None:
            self.watermarks.set_watermark(self.routine.name, step, call.task, ctx.next_watermark,
                                          self.routine.run_id)

    def invoke(self, instance: Executor, method: Any, call: TaskCall, ctx: Context,
               event: threading.Event) -> Any:
        """Call the task; what it returned. With a timeout it runs in a thread of its own."""
        # args as given (most tasks) need nothing from ``prepare_args``: no call for them
        kwargs = (self.prepare_args(call, ctx) if call.wants_context or call.references
                  else call.args)
        if call.timeout is None:
            with ctx.active():
                return method(**kwargs)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                with ctx.active():
                    box["value"] = method(**kwargs)
            except BaseException as exc:  # re-raised in the step thread
                box["error"] = exc

        # A thread of its own so that the step thread can stop waiting at the timeout; daemon,
        # because a task that ignores its cancel cannot be killed and must not hold the exit.
        worker = threading.Thread(target=target, name=f"task-{ctx.step}.{ctx.task}", daemon=True)
        worker.start()
        worker.join(call.timeout)
        if worker.is_alive():
            event.set()
            quietly(instance.cancel)
            worker.join(CANCEL_GRACE)
            raise TaskTimeout(f"timed out after {call.timeout:g}s "
                              "(the executor was asked to cancel its work)")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def keep_return(self, result: TaskResult, value: Any) -> None:
        """Metrics become the task's metrics; any other value is kept as its result."""
        if value is None:  # most tasks: nothing to convert, mask or keep
            result.metrics = result.result = None
            return
        result.metrics = self.masked(TaskMetrics.from_value(value))
        result.result = None if result.metrics is not None \
            else kept_result(value, self.routine.secrets)

    def masked(self, metrics: TaskMetrics | None) -> TaskMetrics | None:
        """Metrics with secret values masked: they reach output, logs and the run store."""
        if metrics is None or not self.routine.secrets:
            return metrics
        changes = {f.name: self.routine.masked(getattr(metrics, f.name))
                   for f in dataclasses.fields(metrics)
                   if isinstance(getattr(metrics, f.name), (str, dict, list))}
        return dataclasses.replace(metrics, **changes)

    def fail(self, result: TaskResult, exc: BaseException) -> None:
        result.status = FAILED
        self.describe_failure(result, exc)
        self.emit("task_finished", result)

    def describe_failure(self, result: TaskResult, exc: BaseException) -> None:
        """Error, type and traceback of a failed attempt, secrets masked before anyone sees them."""
        result.error = self.routine.masked(str(exc) or repr(exc))
        result.error_type = type(exc).__name__
        result.traceback = masked_traceback(exc, self.routine.secrets, skip_files=ENGINE_FILES)

    def skip(self, results: Sequence[TaskResult], reason: str) -> None:
        for result in results:
            result.status, result.reason = SKIPPED, reason
            self.emit("task_finished", result)


def _bound(listeners: Sequence[Any], event: str) -> list[Callable[[TaskResult], None]]:
    base = getattr(Listener, event)
    methods = (getattr(listener, event) for listener in listeners)
    return [method for method in methods if getattr(method, "__func__", None) is not base]


def done_reason(origin: str) -> str:
    return f"already succeeded in run {origin}"
