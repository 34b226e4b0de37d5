"""Runs over time: start a tracked run, find dead ones, wait, cancel, work out what a resume must redo."""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Iterable

from .config import Routine
from .engine import Plan, Run, plan
from .errors import UserError
from .events import SUCCEEDED, Listener, RunResult
from .runs import DEAD, RUNNING, RunRecord, RunStore, hostname, is_dead, owns_pid
from .run_io import RememberedWatermarks
from .tracking import LogCapture, RunRecorder, new_record

EXIT_CODES = {"succeeded": 0, "skipped": 0, "cancelled": 130}
CANCEL_WAIT_SECONDS = 20.0


def exit_code(status: str) -> int:
    return EXIT_CODES.get(status, 1)


class TrackedRun:
    """A run wired to the store: claim the routine, record everything, capture logs."""

    def __init__(self, store: RunStore, the_plan: Plan, listeners: Iterable[Listener] = (), max_parallel: int = 4,
                 done: dict[int, str] | None = None, resumed_from: str | None = None) -> None:
        self.store = store
        self.routine: Routine = the_plan.routine
        self.record = new_record(self.routine, resumed_from)
        self.run = Run(the_plan, [], max_parallel, watermarks=RememberedWatermarks(store), done=done,
                       resumed_from=resumed_from)
        self.recorder = RunRecorder(store, self.record, on_cancel_request=self.run.cancel,
                                    step_sizes=[len(step.spec.tasks) for step in the_plan.steps])
        self.run.listeners = [self.recorder, *listeners]

    def claim(self, allow_concurrent: bool = False) -> None:
        """Refuses (``RoutineBusy``) before anything runs if the routine is already running."""
        self.recorder.begin(allow_concurrent)

    def execute(self) -> RunResult:
        with LogCapture(self.store, self.record.run_id, self.routine.secrets):
            return self.run.execute()

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


def wait_for(store: RunStore, ref: str, timeout: float | None = None, poll: float = 0.2) -> RunRecord:
    deadline = None if timeout is None else time.monotonic() + timeout
    run = look_up(store, ref)
    while not run.finished:
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"run {run.run_id} still {run.status} after {timeout:g}s")
        time.sleep(poll)
        run = look_up(store, run.run_id)
    return run


def cancel_run(store: RunStore, ref: str, grace: float = CANCEL_WAIT_SECONDS) -> tuple[RunRecord, bool]:
    """Ask a run to stop and return once it has; ``(record, changed)``. A finished run is left alone.

    The request goes through the store (a run on another host sees it at its next heartbeat) and,
    for a local process, as SIGTERM. A process that ignores it past ``grace`` is killed.
    """
    run = look_up(store, ref)
    if run.finished:
        return run, False
    store.update_run(run.run_id, cancel_requested=True)
    local = run.host == hostname() and owns_pid(run)
    if local:
        _signal(run.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        run = look_up(store, run.run_id)
        if run.finished:
            return run, True
        time.sleep(0.1)
    if local and owns_pid(run):
        _signal(run.pid, signal.SIGKILL)
    store.update_run(run.run_id, status="cancelled", ended=time.time())
    return look_up(store, run.run_id), True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def resume_plan(store: RunStore, old: RunRecord, routine: Routine, force: bool = False) -> tuple[Plan, dict[int, str]]:
    """The plan of ``routine`` and the positions of the steps that already succeeded in ``old``.

    A step is done when every one of its tasks succeeded (or was skipped as done by an earlier resume);
    tasks of one step share an executor instance, so a partly done step runs again whole.
    """
    if old.status == RUNNING:
        raise UserError(f"run {old.run_id} is still running; wait for it or cancel it first")
    if routine.hash != old.routine_hash and not force:
        raise UserError(f"{routine.file}: the routine changed since run {old.run_id}; pass --force to resume anyway")
    the_plan = plan(routine)
    latest: dict[tuple[int, int], Any] = {}
    for task in store.tasks(old.run_id):
        latest[(task.step_index, task.task_index)] = task
    done: dict[int, str] = {}
    for position, step in enumerate(the_plan.steps):
        records = [latest.get((position, i)) for i in range(len(step.spec.tasks))]
        if records and all(r is not None and _succeeded(r) for r in records):
            done[position] = _origin(records[0], old.run_id)
    return the_plan, done


def _succeeded(task: Any) -> bool:
    return task.status == SUCCEEDED or (task.status == "skipped" and (task.error or "").startswith("already succeeded"))


def _origin(task: Any, run_id: str) -> str:
    if task.status == "skipped" and task.error:
        return task.error.rsplit(" ", 1)[-1]
    return run_id
