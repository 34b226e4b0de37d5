"""One execution of a plan: which step starts when, what a failure or a cancel stops, the outcome.

Executors run in declared order, or as a DAG when any entry uses ``depends_on``; independent
steps run concurrently (a thread each) up to ``max_parallel``. Tasks of one step run in order on
one executor instance (``task_runner.py`` runs each). On a failure, running steps finish their
current task and nothing new starts. Cancellation (Ctrl-C, timeouts) calls the executors'
``cancel()``.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterable

from ..events import CANCELLED, FAILED, SKIPPED, SUCCEEDED, Listener, RunInfo, RunResult, TaskResult
from ..scheduling import ReadyQueue
from .cancellation import Cancellation, quietly
from .options import RunOptions
from .plan import Plan, Step
from .task_runner import CANCEL_GRACE, TaskRunner, WatermarkStore, done_reason

EARLIER_TASK_FAILED = "not started: an earlier task of this step did not succeed"


class Run:
    """One execution of a plan. ``cancel()`` may be called from any thread (or a signal handler)."""

    def __init__(self, plan: Plan, listeners: Iterable[Listener] = (),
                 options: RunOptions | None = None, *, watermarks: WatermarkStore | None = None,
                 home: Any = None) -> None:
        """``options`` says how to run (parallelism, the steps left out, what a resume skips);
        ``watermarks`` keeps ``next_watermark`` between runs. Raises ``UserError`` before
        anything runs if ``--only``/``--from`` name a step the plan does not have."""
        options = options or RunOptions()
        self.plan = plan
        self.routine = plan.routine
        self.options = options
        self.listeners = list(listeners)
        self.max_parallel = max(1, options.max_parallel)
        # tasks that already succeeded in the run being resumed: skipped, never run twice
        self.done = dict(options.done)
        self.excluded = options.excluded(plan)  # steps left out on purpose, with the reason shown
        self.results = {name: [TaskResult(name, executor, c.task, i, n)
                               for i, c in enumerate(s.spec.tasks)]
                        for n, s in enumerate(plan.steps)
                        # read once per step, not per task (``Step.name`` is a property)
                        for name, executor in [(s.name, s.spec.executor.name)]}
        self.cancellation = Cancellation()
        self.stopping, self.cancelled = self.cancellation.stopping, self.cancellation.cancelled
        self.watermarks = watermarks  # the run store: step outputs after a resume are read there
        # tasks restored from this very run (a state machine's later Lambda step) resume nothing
        resumed_from = options.resumed_from if options.resumed_from != self.routine.run_id else None
        self.tasks = TaskRunner(self.routine, self.emit, self.cancellation, watermarks, home,
                                resumed_from)
        self.tasks.outputs_source = self
        self._done: queue.Queue[tuple[str, bool]] = queue.Queue()

    def emit(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            getattr(listener, event)(*args)

    def cancel(self) -> None:
        """Ask every running task to stop and every executor to cancel its remote work."""
        self.cancellation.cancel()

    def execute(self) -> RunResult:
        started = time.time()
        self.tasks.listen(self.listeners)  # as they are now: TrackedRun sets them after __init__
        total = sum(len(r) for r in self.results.values())
        # Listeners are called in the order given: ``TrackedRun`` puts the recorder first, so
        # that at the end it can mark the result failed before the others report it.
        self.emit("run_started", RunInfo(self.routine.run_id, self.routine.name, total))
        if not self.routine.active:
            self.skip_all("routine is inactive (active: false)")
            return self.finish(started, SKIPPED)
        self.schedule()
        return self.finish(started, self.outcome())

    def schedule(self) -> None:
        """Start steps as their dependencies finish until none is left or the run stops."""
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
            # A timeout, not a blocking get: the main thread must come back to notice the cancel
            # grace running out, and a blocking get would also keep Ctrl-C from reaching it.
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
            # A failed step stops the run, but only new starts: steps already running finish
            # their current task (their records stay consistent), then skip the rest.
            if not ok:
                self.stopping.set()

    def start_ready(self, steps: dict[str, Step], ready: ReadyQueue[str],
                    running: dict[str, threading.Thread]) -> None:
        """Start ready steps up to ``max_parallel``; steps with nothing to do end at once."""
        while ready and len(running) < self.max_parallel:
            step = steps[ready.pop()]
            if self.step_done(step):  # resumed: each task names the run it succeeded in
                for result in self.results[step.name]:
                    origin = self.done[(result.step_index, result.index)]
                    self.tasks.skip([result], done_reason(origin))
                ready.finish(step.name)
                continue
            reason = self.excluded.get(step.name)
            if reason is None and not step.spec.active:
                reason = "step is inactive (active: false)"
            if reason is not None:
                self.skip_step(step, reason)
                ready.finish(step.name)  # left out on purpose: the steps after it may still run
                continue
            # Daemon: a step that ignores cancellation past the grace is abandoned, and must not
            # keep the process alive after the run has ended.
            thread = threading.Thread(target=self.run_step, args=(step,),
                                      name=f"step-{step.name}", daemon=True)
            running[step.name] = thread
            thread.start()

    def skip_unstarted(self, steps: dict[str, Step], ready: ReadyQueue[str]) -> None:
        failed = "not started: an earlier step failed"
        reason = "run cancelled" if self.cancelled.is_set() else failed
        for name in ready.take_rest():
            self.skip_step(steps[name], reason)

    def abandon(self, running: dict[str, threading.Thread]) -> None:
        """Tasks that ignored cancellation past the grace period are recorded as cancelled and
        left behind."""
        for name in running:
            for result in self.results[name]:
                if result.status == SKIPPED and result.started is not None:
                    result.status, result.ended = CANCELLED, time.time()
                    result.error_type = "Abandoned"
                    result.error = f"did not stop within the {CANCEL_GRACE:g}s grace period"
                    self.emit("task_finished", result)

    def run_step(self, step: Step) -> None:
        """A step's thread: its tasks in order; tells the scheduler how it ended."""
        ok = False
        try:
            ok = self._run_step(step)
        except BaseException as exc:  # an engine or listener failure still ends the step failed
            for result in self.results[step.name]:
                if result.started is not None and result.ended is None:
                    result.ended = time.time()
                    self.tasks.fail(result, exc)
        finally:
            self._done.put((step.name, ok))

    def _run_step(self, step: Step) -> bool:
        results = self.results[step.name]
        try:
            instance = step.spec.executor.cls(**step.spec.params)
        except Exception as exc:  # a constructor that raises fails the step's first task
            results[0].started = results[0].ended = time.time()
            self.tasks.fail(results[0], exc)
            self.tasks.skip(results[1:], "not started: the executor could not be created")
            return False
        self.cancellation.executor_started(step.name, instance)
        try:
            return self.run_tasks(step, instance, results)
        finally:
            self.cancellation.executor_ended(step.name)
            quietly(instance.close)

    def run_tasks(self, step: Step, instance: Any, results: list[TaskResult]) -> bool:
        """The step's tasks in order; False as soon as one did not succeed (the rest skipped)."""
        name, done, stopped, tasks = step.name, self.done, self.stopping.is_set, self.tasks
        for call, result in zip(step.spec.tasks, results):
            # Checked before each task, not once per step: a cancel or another step's failure
            # stops a long step between two of its tasks.
            if stopped():
                tasks.skip(results[result.index:], self.stop_reason())
                return False
            origin = done.get((result.step_index, result.index)) if done else None
            if not (tasks.run(name, instance, call, result) if origin is None
                    else tasks.run_or_restore(name, instance, call, result, origin)):
                tasks.skip(results[result.index + 1:], EARLIER_TASK_FAILED)
                return False
        return True

    def stop_reason(self) -> str:
        return "run cancelled" if self.cancelled.is_set() else "not started: a task failed"

    def step_done(self, step: Step) -> bool:
        return all((r.step_index, r.index) in self.done for r in self.results[step.name])

    def skip_step(self, step: Step, reason: str) -> None:
        self.tasks.skip(self.results[step.name], reason)

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
        result = RunResult(self.routine.run_id, self.routine.name, status, started, time.time(),
                           tasks)
        self.emit("run_finished", result)
        return result


def run(plan: Plan, listeners: Iterable[Listener] = (),
        options: RunOptions | None = None) -> RunResult:
    return Run(plan, listeners, options).execute()
