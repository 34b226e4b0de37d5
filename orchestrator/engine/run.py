"""Plan a validated routine into ordered steps, then run them.

Executors run in declared order, or as a DAG when any entry uses ``depends_on``;
independent steps run concurrently up to ``max_parallel``. Tasks of one step run in
order on one instance. On a failure, running steps finish their current task and
nothing new starts. Cancellation (Ctrl-C, timeouts) calls the executors' ``cancel()``.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
import traceback
from typing import Any, Iterable, Mapping, Protocol, Sequence

from ..routine.load import Routine, StepSpec, TaskCall
from ..events import CANCELLED, FAILED, SKIPPED, SUCCEEDED, Listener, RunInfo, RunResult, TaskResult
from ..executor import Cancelled, Context, Executor, TaskMetrics
from ..masking import masked_traceback
from ..returns import kept_result
from ..scheduling import ReadyQueue, waves

MAX_RETRY_DELAY = 86400.0
EARLIER_TASK_FAILED = "not started: an earlier task of this step did not succeed"
CANCEL_GRACE = float(os.environ.get("ORCHESTRATOR_CANCEL_GRACE", "10"))


class TaskTimeout(Exception):
    pass


class WatermarkStore(Protocol):
    def get_watermark(self, routine: str, step: str, task: str) -> Any: ...

    def set_watermark(self, routine: str, step: str, task: str, value: Any, run_id: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class Step:
    spec: StepSpec
    after: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class Plan:
    routine: Routine
    steps: tuple[Step, ...]

    def describe(self) -> list[dict[str, Any]]:
        """The ordered steps with resolved, secret-masked params: what ``orchestrate plan`` shows."""
        return [
            {
                "step": s.name,
                "executor": s.spec.executor.name,
                "class": s.spec.executor.class_name,
                "active": s.spec.active and self.routine.active,
                "after": list(s.after),
                "params": self.routine.masked(s.spec.params),
                "tasks": [{"task": c.task, "args": self.routine.masked(c.args), "retries": c.retries,
                           "retry_delay": c.retry_delay, "timeout": c.timeout} for c in s.spec.tasks],
            }
            for s in self.steps
        ]


def plan(routine: Routine) -> Plan:
    """Order the steps: declared order as a chain, or topological order of ``depends_on``."""
    specs = routine.steps
    if not routine.explicit_dependencies:
        chain = [Step(spec, (specs[i - 1].name,) if i else ()) for i, spec in enumerate(specs)]
        return Plan(routine, tuple(chain))
    by_name = {spec.name: spec for spec in specs}
    order = waves(list(by_name), {spec.name: spec.depends_on for spec in specs})
    return Plan(routine, tuple(Step(by_name[name], by_name[name].depends_on) for name in order))


class Run:
    """One execution of a plan. ``cancel()`` may be called from any thread (or a signal handler)."""

    def __init__(self, plan: Plan, listeners: Iterable[Listener] = (), max_parallel: int = 4, home: Any = None,
                 watermarks: WatermarkStore | None = None,
                 done: Mapping[tuple[int, int], str] | None = None,
                 resumed_from: str | None = None, excluded: Mapping[str, str] | None = None) -> None:
        """``watermarks`` keeps ``next_watermark`` between runs; ``done`` maps the tasks that
        already succeeded (``(step position, task index)``, in the run being resumed or one it
        resumed) to the id of the run they succeeded in: they are skipped, never run twice.
        ``excluded`` maps steps left out (``--only``, ``--from``) to the reason shown."""
        self.plan = plan
        self.routine = plan.routine
        self.listeners = list(listeners)
        self.max_parallel = max(1, max_parallel)
        self.home = home
        self.watermarks = watermarks
        self.done = dict(done or {})
        self.resumed_from = resumed_from
        self.excluded = dict(excluded or {})
        self.results = {s.name: [TaskResult(s.name, s.spec.executor.name, c.task, i, n) for i, c in enumerate(s.spec.tasks)]
                        for n, s in enumerate(plan.steps)}
        self.stopping = threading.Event()
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._instances: dict[str, Executor] = {}
        self._task_events: set[threading.Event] = set()
        self._done: queue.Queue[tuple[str, bool]] = queue.Queue()

    def emit(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            getattr(listener, event)(*args)

    def cancel(self) -> None:
        """Ask every running task to stop and every executor to cancel its remote work."""
        self.cancelled.set()
        self.stopping.set()
        with self._lock:
            events, instances = list(self._task_events), list(self._instances.values())
        for instance in instances:
            _quietly(instance.cancel)
        for event in events:
            event.set()

    def execute(self) -> RunResult:
        started = time.time()
        total = sum(len(r) for r in self.results.values())
        self.emit("run_started", RunInfo(self.routine.run_id, self.routine.name, total))
        if not self.routine.active:
            self.skip_all("routine is inactive (active: false)")
            return self.finish(started, SKIPPED)
        self.schedule()
        return self.finish(started, self.outcome())

    def schedule(self) -> None:
        steps = {step.name: step for step in self.plan.steps}
        ready = ReadyQueue(list(steps), {step.name: step.after for step in self.plan.steps})
        running: dict[str, threading.Thread] = {}
        deadline: float | None = None
        while True:
            if not self.stopping.is_set():
                self.start_ready(steps, ready, running)
            else:
                self.skip_unstarted(steps, ready)
            if not running:
                break
            if self.cancelled.is_set() and deadline is None:
                deadline = time.monotonic() + CANCEL_GRACE
            try:
                name, ok = self._done.get(timeout=0.25)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    self.abandon(running)
                    return
                continue
            except KeyboardInterrupt:
                self.cancel()
                continue
            running.pop(name).join()
            ready.finish(name)
            if not ok:
                self.stopping.set()

    def start_ready(self, steps: dict[str, Step], ready: ReadyQueue[str],
                    running: dict[str, threading.Thread]) -> None:
        """Start ready steps up to ``max_parallel``; steps with nothing to do end at once."""
        while ready and len(running) < self.max_parallel:
            step = steps[ready.pop()]
            if self.step_done(step):
                for result in self.results[step.name]:
                    origin = self.done[(result.step_index, result.index)]
                    self.skip_results([result], _done_reason(origin))
                ready.finish(step.name)
                continue
            if step.name in self.excluded:
                self.skip_step(step, self.excluded[step.name])
                ready.finish(step.name)  # left out on purpose: the steps after it may still run
                continue
            if not step.spec.active:
                self.skip_step(step, "step is inactive (active: false)")
                ready.finish(step.name)
                continue
            thread = threading.Thread(target=self.run_step, args=(step,), name=f"step-{step.name}", daemon=True)
            running[step.name] = thread
            thread.start()

    def skip_unstarted(self, steps: dict[str, Step], ready: ReadyQueue[str]) -> None:
        failed = "not started: an earlier step failed"
        reason = "run cancelled" if self.cancelled.is_set() else failed
        for name in ready.take_rest():
            self.skip_step(steps[name], reason)

    def abandon(self, running: dict[str, threading.Thread]) -> None:
        """Tasks that ignored cancellation past the grace period are recorded as cancelled and left behind."""
        for name in running:
            for result in self.results[name]:
                if result.status == SKIPPED and result.started is not None:
                    result.status, result.ended = CANCELLED, time.time()
                    result.error_type = "Abandoned"
                    result.error = f"did not stop within the {CANCEL_GRACE:g}s grace period"
                    self.emit("task_finished", result)

    def run_step(self, step: Step) -> None:
        ok = False
        try:
            ok = self._run_step(step)
        except BaseException as exc:  # an engine or listener failure must still end the step as failed
            for result in self.results[step.name]:
                if result.started is not None and result.ended is None:
                    result.ended = time.time()
                    self.fail(result, exc)
        finally:
            self._done.put((step.name, ok))

    def _run_step(self, step: Step) -> bool:
        results = self.results[step.name]
        try:
            instance = step.spec.executor.cls(**step.spec.params)
        except Exception as exc:  # a constructor that raises fails the step's first task
            results[0].started = results[0].ended = time.time()
            self.fail(results[0], exc)
            self.skip_results(results[1:], "not started: the executor could not be created")
            return False
        with self._lock:
            self._instances[step.name] = instance
        try:
            for call, result in zip(step.spec.tasks, results):
                if self.stopping.is_set():
                    self.skip_results(results[result.index:], "run cancelled" if self.cancelled.is_set() else "not started: a task failed")
                    return False
                origin = self.done.get((result.step_index, result.index))
                try:
                    if origin is not None and self.restore(step, instance, call, result, origin):
                        continue
                except Exception as exc:  # the executor cannot rebuild the task's state: it fails
                    result.started = result.ended = time.time()
                    self.fail(result, exc)
                    self.skip_results(results[result.index + 1:], EARLIER_TASK_FAILED)
                    return False
                if not self.run_task(step, instance, call, result):
                    self.skip_results(results[result.index + 1:], EARLIER_TASK_FAILED)
                    return False
            return True
        finally:
            with self._lock:
                self._instances.pop(step.name, None)
            _quietly(instance.close)

    def step_done(self, step: Step) -> bool:
        return all((r.step_index, r.index) in self.done for r in self.results[step.name])

    def restore(self, step: Step, instance: Executor, call: TaskCall, result: TaskResult,
                origin: str) -> bool:
        """Skip a task that succeeded in run ``origin``; its executor rebuilds what later tasks
        need. False when it cannot and the task must run again; raises what the executor raised.
        """
        ctx = self.context(step, call, 1, threading.Event())
        with ctx.active():
            restored = instance.restore(ctx, origin)
        if restored is False:
            ctx.logger.warning("%s.%s succeeded in run %s but its state cannot be rebuilt: "
                               "running it again", step.name, call.task, origin)
            return False
        self.skip_results([result], _done_reason(origin))
        return True

    def run_task(self, step: Step, instance: Executor, call: TaskCall, result: TaskResult) -> bool:
        method = getattr(instance, call.task)
        result.started = time.time()
        for attempt in range(1, call.retries + 2):
            result.attempts = attempt
            result.error = result.error_type = result.traceback = result.result = None
            self.emit("task_started", result)
            event = threading.Event()
            if self.cancelled.is_set():
                event.set()
            with self._lock:
                self._task_events.add(event)
            try:
                ctx = self.context(step, call, attempt, event)
                result.watermark = ctx.watermark
                self.keep_return(result, self.invoke(instance, method, call, ctx, event))
                self.save_watermark(step, call, ctx)
                result.next_watermark = ctx.next_watermark
                result.status, result.ended = SUCCEEDED, time.time()
                self.emit("task_finished", result)
                return True
            except BaseException as exc:  # SystemExit or KeyboardInterrupt raised by a task fails the task too
                if self.cancelled.is_set() or (isinstance(exc, Cancelled) and not isinstance(exc, TaskTimeout)):
                    result.status, result.ended = CANCELLED, time.time()
                    result.error = self.routine.masked(str(exc) or "cancelled")
                    result.error_type = type(exc).__name__
                    self.emit("task_finished", result)
                    return False
                if attempt > call.retries or self.stopping.is_set() or getattr(exc, "retryable", True) is False:
                    result.ended = time.time()
                    self.fail(result, exc)
                    return False
                delay = min(call.retry_delay * 2 ** min(attempt - 1, 32), MAX_RETRY_DELAY)
                self.describe_failure(result, exc)
                self.emit("task_retrying", result, delay)
                if self.cancelled.wait(delay):
                    result.status, result.ended = CANCELLED, time.time()
                    self.emit("task_finished", result)
                    return False
            finally:
                with self._lock:
                    self._task_events.discard(event)
        return False

    def context(self, step: Step, call: TaskCall, attempt: int, event: threading.Event) -> Context:
        watermark = self.watermarks.get_watermark(self.routine.name, step.name, call.task) if self.watermarks else None
        return Context(run_id=self.routine.run_id, run_date=self.routine.run_date, routine_name=self.routine.name,
                       step=step.name, task=call.task, attempt=attempt, cancel_event=event,
                       trusted=self.routine.trusted, home=self.home,
                       watermark=watermark, resumed_from=self.resumed_from)

    def save_watermark(self, step: Step, call: TaskCall, ctx: Context) -> None:
        if self.watermarks is not None and ctx.next_watermark is not None:
            self.watermarks.set_watermark(self.routine.name, step.name, call.task, ctx.next_watermark, self.routine.run_id)

    def invoke(self, instance: Executor, method: Any, call: TaskCall, ctx: Context,
               event: threading.Event) -> Any:
        """Call the task; what it returned."""
        kwargs = dict(call.args, context=ctx) if call.wants_context else call.args
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

        worker = threading.Thread(target=target, name=f"task-{ctx.step}.{ctx.task}", daemon=True)
        worker.start()
        worker.join(call.timeout)
        if worker.is_alive():
            event.set()
            _quietly(instance.cancel)
            worker.join(CANCEL_GRACE)
            raise TaskTimeout(f"timed out after {call.timeout:g}s (the executor was asked to cancel its work)")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def keep_return(self, result: TaskResult, value: Any) -> None:
        """Metrics become the task's metrics; any other value is kept as its result."""
        result.metrics = self.masked(TaskMetrics.from_value(value))
        result.result = None if result.metrics is not None \
            else kept_result(value, self.routine.secrets)

    def masked(self, metrics: TaskMetrics | None) -> TaskMetrics | None:
        """Metrics with secret values masked: they reach output, logs and the run store."""
        if metrics is None or not self.routine.secrets:
            return metrics
        changes = {f.name: self.routine.masked(getattr(metrics, f.name)) for f in dataclasses.fields(metrics)
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
        result.traceback = masked_traceback(exc, self.routine.secrets, skip_file=__file__)

    def skip_step(self, step: Step, reason: str) -> None:
        self.skip_results(self.results[step.name], reason)

    def skip_results(self, results: Sequence[TaskResult], reason: str) -> None:
        for result in results:
            result.status, result.reason = SKIPPED, reason
            self.emit("task_finished", result)

    def skip_all(self, reason: str) -> None:
        for step in self.plan.steps:
            self.skip_step(step, reason)

    def outcome(self) -> str:
        statuses = {r.status for results in self.results.values() for r in results}
        if self.cancelled.is_set() or CANCELLED in statuses:
            return CANCELLED
        if FAILED in statuses:
            return FAILED
        if statuses <= {SKIPPED}:
            return SKIPPED
        return SUCCEEDED

    def finish(self, started: float, status: str) -> RunResult:
        tasks = [r for step in self.plan.steps for r in self.results[step.name]]
        result = RunResult(self.routine.run_id, self.routine.name, status, started, time.time(), tasks)
        self.emit("run_finished", result)
        return result


def _done_reason(origin: str) -> str:
    return f"already succeeded in run {origin}"


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:
        pass


def run(plan: Plan, listeners: Iterable[Listener] = (), max_parallel: int = 4) -> RunResult:
    return Run(plan, listeners, max_parallel).execute()
