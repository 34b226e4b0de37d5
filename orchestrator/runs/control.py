"""Runs over time: start a tracked run, find dead ones, wait, cancel, work out what a resume must
redo."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable

from ..engine import Plan, Resume, Run, RunOptions, plan
from ..errors import UserError
from ..events import SKIPPED, SUCCEEDED, Listener, RunResult
from ..lineage.config import settings_for
from ..outcome import ExitCode
from ..routine.load import Routine
from ..routine.substitution import MASKED
from .io import RememberedWatermarks
from .recorder import LogCapture, RunRecorder, new_record
from .store import DEAD, RUNNING, RunRecord, RunStore, hostname, is_dead, owns_pid

CANCEL_WAIT_SECONDS = 20.0


class TrackedRun:
    """A run wired to the store: claim the routine, record everything, capture logs."""

    def __init__(self, store: RunStore, the_plan: Plan, listeners: Iterable[Listener] = (),
                 options: RunOptions | None = None) -> None:
        """Raises ``UserError`` before anything is recorded if ``options`` select a step the
        plan does not have."""
        self.store = store
        self.options = options or RunOptions()
        self.routine: Routine = the_plan.routine
        self.run = Run(the_plan, [], self.options, watermarks=RememberedWatermarks(store))
        self.record = new_record(self.routine, self.options.resumed_from)
        self.recorder = RunRecorder(store, self.record, on_cancel_request=self.run.cancel,
                                    on_failure=lambda reason: self.run.cancel(),
                                    step_sizes=[len(step.spec.tasks) for step in the_plan.steps])
        self.run.listeners = [self.recorder, *listeners]  # first: it may mark the result failed
        lineage = settings_for(self.routine)
        if lineage is not None:  # the OpenLineage client is imported only then
            from ..lineage.listener import LineageListener

            self.run.listeners.append(LineageListener(lineage, the_plan, store))
        if self.routine.notify:  # last: told once the store has the final status
            from ..alerts.listener import Notifier

            self.run.listeners.append(Notifier(self.routine, store))

    def claim(self) -> None:
        """Refuses (``RoutineBusy``) before anything runs if the routine is already running
        (unless the options allow concurrent runs)."""
        self.recorder.begin(self.options.allow_concurrent)

    def execute(self) -> RunResult:
        capture = LogCapture(self.store, self.record.run_id, self.routine.secrets,
                             on_error=self.recorder.store_failed)
        with capture:
            return self.run.execute()

    @property
    def failure(self) -> str | None:
        """Why the run's record could not be kept (it was stopped and ended failed), or None."""
        return self.recorder.failure

    def cancel(self) -> None:
        self.run.cancel()

    def save_records(self, timeout: float = 1.0) -> None:
        """Before a forced exit: write the task records still waiting for their batch, if it can."""
        try:
            self.recorder.writer.flush(timeout)
        except Exception:  # the process is going anyway
            pass


def reap(store: RunStore, runs: Iterable[RunRecord]) -> list[RunRecord]:
    """Mark running records whose process died as dead; return the records, updated."""
    updated = []
    for run in runs:
        if is_dead(run):
            now = time.time()
            store.update_run(run.run_id, status=DEAD, ended=now)
            run.status, run.ended = DEAD, now
            for task in store.tasks(run.run_id):
                if task.status == RUNNING:
                    task.status, task.ended, task.error = DEAD, now, "the run's process died"
                    store.record_task(task)
        updated.append(run)
    return updated


def look_up(store: RunStore, ref: str) -> RunRecord:
    return reap(store, [store.find_run(ref)])[0]


class WaitTimedOut(UserError):
    """``wait --timeout`` gave up: not bad input, so it has its own exit code."""

    exit_code = ExitCode.WAIT_TIMEOUT


def wait_for(
    store: RunStore, ref: str, timeout: float | None = None, poll: float = 0.2
) -> RunRecord:
    deadline = None if timeout is None else time.monotonic() + timeout
    run = look_up(store, ref)
    while not run.finished:
        if deadline is not None and time.monotonic() > deadline:
            raise WaitTimedOut(f"run {run.run_id} still {run.status} after {timeout:g}s")
        time.sleep(poll)
        run = look_up(store, run.run_id)
    return run


def cancel_run(
    store: RunStore, ref: str, grace: float = CANCEL_WAIT_SECONDS
) -> tuple[RunRecord, bool]:
    """Ask a run to stop and return once it has; ``(record, changed)``. A finished run is left
    alone.

    The request goes through the store (a run on another host sees it at its next heartbeat) and,
    for a local process, as SIGTERM. A process that ignores it past ``grace`` is killed.
    """
    run = look_up(store, ref)
    if run.finished:
        return run, False
    store.update_run(run.run_id, cancel_requested=True)
    import signal  # not at the top: every run imports this module, few cancel another

    local = run.host == hostname() and owns_pid(run)  # so run.pid is set
    if local and run.pid:
        _signal(run.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        run = look_up(store, run.run_id)
        if run.finished:
            return run, True
        time.sleep(0.1)
    if local and owns_pid(run) and run.pid:
        _signal(run.pid, signal.SIGKILL)
    store.update_run(run.run_id, status="cancelled", ended=time.time())
    return look_up(store, run.run_id), True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def resume_plan(store: RunStore, old: RunRecord, routine: Routine,
                force: bool = False) -> tuple[Plan, Resume]:
    """The plan of ``routine``, and what resuming ``old`` skips: the tasks that already
    succeeded, each mapped to the run it succeeded in.

    Resume works task by task: a task that succeeded is never run again, even when a later task of
    its step failed (its executor rebuilds what the task left in memory, see ``Executor.restore``).
    Refused (unless ``force``) for a run that succeeded, a run a later resume already took over, and
    a routine file that changed since.
    """
    if old.status == RUNNING:
        raise UserError(f"run {old.run_id} is still running; wait for it or cancel it first")
    if not force:
        _refuse_finished(store, old)
    if routine.hash != old.routine_hash and not force:
        raise UserError(
            f"{routine.file}: the routine changed since run {old.run_id}; "
            "pass --force to resume anyway"
        )
    the_plan = plan(routine)
    return the_plan, Resume(old.run_id, succeeded_tasks(store, old, the_plan))


def resume_params(old: RunRecord, given: Iterable[str]) -> dict[str, Any]:
    """The params ``old`` ran with, to run them again. Secrets were stored masked, never in
    clear, so each one must be ``given`` again (by name); refused, naming them, if one is not."""
    hidden = sorted(k for k, v in old.params.items() if v == MASKED and k not in given)
    if hidden:
        raise UserError(f"run {old.run_id} had secret params that were not stored: pass them again "
                        "with " + " ".join(f"--param {k}=..." for k in hidden))
    return {k: v for k, v in old.params.items() if v != MASKED}


def succeeded_tasks(store: RunStore, old: RunRecord, the_plan: Plan) -> dict[tuple[int, int], str]:
    """Each task of ``the_plan`` that succeeded in ``old`` or, where ``old`` skipped it, in the run
    ``old`` resumed (and so on back through the stored ``resumed_from`` chain)."""
    wanted = {(p, i): call.task
              for p, step in enumerate(the_plan.steps) for i, call in enumerate(step.spec.tasks)}
    done: dict[tuple[int, int], str] = {}
    run: RunRecord | None = old
    pending, seen = set(wanted), set()
    while run is not None and pending and run.run_id not in seen:
        seen.add(run.run_id)
        # ordered by attempt: the last one wins
        latest = {(t.step_index, t.task_index): t for t in store.tasks(run.run_id)}
        skipped = set()
        for key in pending:
            task = latest.get(key)
            if task is None or task.task != wanted[key]:
                continue
            if task.status == SUCCEEDED:
                done[key] = run.run_id
            elif task.status == SKIPPED:
                skipped.add(key)
        pending = skipped
        run = store.get_run(run.resumed_from) if run.resumed_from else None
    return done


def _refuse_finished(store: RunStore, old: RunRecord) -> None:
    """A succeeded run has nothing left to do; a run resumed already is continued by its resume."""
    if old.status == SUCCEEDED:
        raise UserError(f"run {old.run_id} succeeded: there is nothing to resume "
                        "(pass --force to resume it anyway)")
    later = resumes_of(store, old)
    if later:
        newest = later[0]
        while (after := resumes_of(store, newest)):
            newest = after[0]
        hint = f"resume run {newest.run_id} instead, or " if newest.status != SUCCEEDED else ""
        raise UserError(f"run {old.run_id} was already resumed by run {later[0].run_id} "
                        f"({later[0].status}); {hint}pass --force to resume run {old.run_id} "
                        "anyway")


def resumes_of(store: RunStore, run: RunRecord) -> list[RunRecord]:
    """The runs that resumed ``run``, newest first (liveness checked)."""
    runs = store.list_runs(routine=run.routine, limit=100_000)
    found = [r for r in runs if r.resumed_from == run.run_id]
    return reap(store, found)
