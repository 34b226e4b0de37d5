"""The Lambda's part in a Step Functions execution: run some tasks of one step, or record the end.

The state machine (``orchestrator.stepfunctions``) invokes the handler with
``{"routine", "version", "execution", "execution_arn", "step", "tasks", "params", "run_date"}`` for
tasks no native integration runs, and with ``{"routine", "version", "execution", "execution_arn",
"finish": "succeeded"|"failed"}`` at the end. A Distributed Map's child sends
``{..., "step", "task", "batch": [items]}``: the task's ``Executor.run_batch`` on those items
(logged, not recorded as a task: a map has thousands); the step's next Lambda call then lists
them in ``"restore"``, so they are rebuilt, not run again.
Everything is recorded in the shared run store (``ORCHESTRATOR_STORE``, DynamoDB when
deployed) under a run whose id is the execution's name, so ``orchestrate runs``/``show``/``logs``
show the execution like any other run. The run's host is ``external:EXECUTION_ARN``: no process of
ours lives for it between steps, so the store does not judge it dead by its heartbeat, and
``orchestrate cancel RUN_ID`` knows which execution to stop.

Only routines packaged with the function run this way (a path inside the package): the definition
names them, and their version must be the deployed one (``ORCHESTRATOR_ROUTINE_VERSION``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any

from ..errors import RoutineError, UserError
from ..events import SUCCEEDED
from .trust import InvalidEvent

VERSION_ENV = "ORCHESTRATOR_ROUTINE_VERSION"
HOST = "external:states"  # an execution whose ARN the event did not give
# run_date becomes ${run.date} and part of paths and queries: a date, and nothing else.
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FINISHED = ("succeeded", "failed")


class StepFailed(RuntimeError):
    """A task of the step did not succeed; Step Functions sees the error name ``StepFailed``."""


def is_step_event(event: Any) -> bool:
    return (
        isinstance(event, dict) and "execution" in event and ("step" in event or "finish" in event)
    )


def handle(runner: Any, event: dict[str, Any], context: Any) -> dict[str, Any]:
    from ..runs.store import open_store
    from .runner import resolve_source

    execution = _text(event, "execution")
    arn = event.get("execution_arn")
    # The ARN becomes the run's host (external:ARN), which orchestrate cancel turns into a
    # StopExecution call: it must name an execution.
    if arn is not None and not (isinstance(arn, str) and arn.startswith("arn:aws:states:")):
        raise InvalidEvent("event.execution_arn must be a Step Functions execution ARN")
    source = resolve_source(event.get("routine"))
    if not source.trusted or source.path is None:
        raise InvalidEvent("a state machine step runs a routine packaged with the function only")
    deployed = os.environ.get(VERSION_ENV)
    if deployed and str(event.get("version")) != deployed:
        raise InvalidEvent(f"the state machine was compiled from version {event.get('version')} of "
                           f"the routine, but this function holds version {deployed}; deploy both")
    # The shared store (DynamoDB when deployed): steps run in separate invocations, possibly in
    # separate sandboxes, and only the store ties them into one run.
    store = open_store(runner.registry)
    if "finish" in event:
        return _finish(runner, store, source.path, execution, event, arn)
    params = event.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidEvent("event.params must be an object of parameter values")
    run_date = event.get("run_date")
    if run_date is not None and not (isinstance(run_date, str) and _DATE.match(run_date)):
        raise InvalidEvent(f"event.run_date must be a date YYYY-MM-DD, got {run_date!r}")
    routine = _load(runner, source.path, params, execution, run_date)
    if "batch" in event:
        return _run_batch(store, routine, _text(event, "step"), event, context, arn)
    return _run_tasks(store, routine, _text(event, "step"), event.get("tasks"), context, arn,
                      event.get("restore") or [])


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"event.{key} must be a non-empty string")
    return value


def _load(runner: Any, path: Any, params: dict[str, Any], execution: str,
          run_date: str | None) -> Any:
    from ..routine.load import load_routine

    try:
        # The execution's name is the run id, so every step records into the same run; the event's
        # run_date keeps ${run.date} the same in each step, even when the execution crosses
        # midnight.
        return load_routine(path, params, runner.registry, run_id=execution, strict_params=False,
                            run_date=run_date, resolve_secrets=True)
    except RoutineError as exc:
        raise InvalidEvent("; ".join(str(p) for p in exc.problems)) from None
    except UserError as exc:
        raise InvalidEvent(str(exc)) from None


def ensure_record(store: Any, routine: Any, routine_file: str, arn: str | None = None) -> Any:
    """The execution's run record, created by whichever step comes first
    (parallel branches race)."""
    from ..runs.recorder import new_record
    from ..runs.store import external_host

    # Read first: every step after the first finds the record and must not start it again.
    found = store.get_run(routine.run_id)
    if found is not None:
        return found
    record = dataclasses.replace(new_record(routine), routine_file=routine_file,
                                 host=external_host(arn), pid=None, pid_started=None)
    try:
        # allow_concurrent: the execution is already under way when its first step gets here;
        # refusing it because another run of the routine is live would not hold it back, only
        # fail it half-way.
        store.start_run(record, allow_concurrent=True)
    except UserError:  # another branch recorded it between our read and our write
        found = store.get_run(routine.run_id)
        if found is None:
            raise
        return found
    return record


def _step_of(the_plan: Any, step_name: str) -> tuple[int, Any]:
    position = next((i for i, s in enumerate(the_plan.steps) if s.name == step_name), None)
    if position is None:
        raise InvalidEvent(f"the routine has no step {step_name!r}")
    return position, the_plan.steps[position].spec


def _positions(value: Any, spec: Any, key: str, empty: bool = False) -> list[int]:
    if (not isinstance(value, list) or (not value and not empty)
            or not all(isinstance(i, int) and 0 <= i < len(spec.tasks) for i in value)):
        raise InvalidEvent(f"event.{key} must list task positions of step {spec.name} "
                           f"(0 to {len(spec.tasks) - 1})")
    return value


def _run_tasks(store: Any, routine: Any, step_name: str, indexes: Any, context: Any,
               arn: str | None = None, restore: Any = ()) -> dict[str, Any]:
    from ..engine import Resume, Run, RunOptions, Step, plan
    from ..runs.recorder import LogCapture, RunRecorder
    from .runner import cancel_at, margin_seconds

    the_plan = plan(routine)
    position, spec = _step_of(the_plan, step_name)
    if indexes is None:
        indexes = list(range(len(spec.tasks)))
    indexes = _positions(indexes, spec, "tasks")
    restored = [i for i in _positions(list(restore), spec, "restore", empty=True)
                if i < min(indexes)]
    record = ensure_record(store, routine, str(routine.file), arn)
    store.update_run(record.run_id, heartbeat=time.time())
    recorder = RunRecorder(store, record)
    # tasks done by a batch map in this execution: their executor rebuilds what they left
    done = {(position, i): record.run_id for i in restored}
    run = Run(the_plan, [recorder], RunOptions(resume=Resume(record.run_id, done)),
              watermarks=store)
    indexes = sorted(set(restored) | set(indexes))
    # only these tasks, each keeping its position in the routine (how records are keyed)
    run.results[step_name] = [run.results[step_name][i] for i in indexes]
    subset = Step(dataclasses.replace(spec, tasks=tuple(spec.tasks[i] for i in indexes)), ())
    # Each step is its own invocation with its own Lambda deadline, guarded like a whole run's.
    timer = cancel_at(context, run.cancel, margin_seconds())
    try:
        with LogCapture(store, record.run_id, routine.secrets, on_error=recorder.store_failed):
            run.run_step(subset)
    finally:
        if timer is not None:
            timer.cancel()
    store.update_run(record.run_id, heartbeat=time.time())
    results = run.results[step_name]
    summary = {"run_id": record.run_id, "step": step_name,
               "tasks": [{"task": r.task, "index": r.index, "status": str(r.status),
                          "attempts": r.attempts} for r in results]}
    bad = [r for r in results if r.status != SUCCEEDED and r.index not in restored]
    if bad:
        first = bad[0]
        raise StepFailed(
            f"step {step_name} task {first.task} {first.status}: "
            f"{first.error_type or ''}: {routine.masked(first.error or first.reason or '')}"
        )
    return summary


def _run_batch(store: Any, routine: Any, step_name: str, event: dict[str, Any], context: Any,
               arn: str | None) -> dict[str, Any]:
    """One batch of a Distributed Map: ``run_batch`` of the step's executor, its log lines kept
    in the run store under the execution (a map may have thousands of batches: no task records)."""
    import threading

    from ..engine import Run, Step, plan
    from ..runs.recorder import LogCapture, RunRecorder
    from .runner import cancel_at, margin_seconds

    the_plan = plan(routine)
    position, spec = _step_of(the_plan, step_name)
    index = event.get("task")
    _positions([index], spec, "task")
    items = event.get("batch")
    if not isinstance(items, list):
        raise InvalidEvent("event.batch must be a list of the map's items")
    record = ensure_record(store, routine, str(routine.file), arn)
    recorder = RunRecorder(store, record)
    run = Run(the_plan, [recorder], watermarks=store)
    step = Step(spec, ())
    call = spec.tasks[index]
    # Not run through the engine, so there is no Run.cancel to call: the deadline sets the flag the
    # batch's task context is given instead.
    cancel = threading.Event()
    timer = cancel_at(context, cancel.set, margin_seconds())
    instance = spec.executor.cls(**spec.params)
    try:
        with LogCapture(store, record.run_id, routine.secrets, on_error=recorder.store_failed):
            ctx = run.tasks.context(step_name, call, 1, cancel)
            with ctx.active():
                try:
                    summary = instance.run_batch(ctx, call.task, items)
                except Exception as exc:
                    ctx.logger.error("batch of %d items failed: %s", len(items), exc)
                    # Step Functions shows the message in the execution's history: masked, and
                    # without the chained traceback (from None).
                    raise StepFailed(f"step {step_name} task {call.task} batch failed: "
                                     f"{type(exc).__name__}: {routine.masked(str(exc))}") from None
    finally:
        if timer is not None:
            timer.cancel()
        # In finally: a failed or cancelled batch still releases what its executor holds.
        instance.close()
    return {"run_id": record.run_id, "step": step_name, "task": call.task, "batch": summary}


def _finish(runner: Any, store: Any, path: Any, execution: str, event: dict[str, Any],
            arn: str | None = None) -> dict[str, Any]:
    from ..runs.store import LogRecord

    status = event.get("finish")
    if status not in _FINISHED:
        raise InvalidEvent(f"event.finish must be one of {', '.join(_FINISHED)}, got {status!r}")
    record = store.get_run(execution)
    if record is None:  # no step of ours ran before the end: record the execution anyway
        routine = _load(runner, path, {}, execution, None)
        record = ensure_record(store, routine, str(path), arn)
    if status == "failed" and event.get("failure") is not None:
        line = LogRecord(execution, time.time(), "ERROR", None, None,
                         f"execution failed: {event['failure']}")
        store.append_logs([line])
    store.update_run(execution, status=status, ended=time.time(), heartbeat=time.time())
    return {"run_id": execution, "status": status}
