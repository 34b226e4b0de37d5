"""``orchestrate wait`` and ``orchestrate cancel``: act on a run (or a Step Functions execution)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..outcome import ExitCode, exit_code


def cmd_wait(args: argparse.Namespace) -> int:
    from ..runs.control import wait_for
    from ..runs.store import open_store

    if args.run_id.startswith("arn:aws:states:"):  # an execution of a state machine
        from . import step_functions

        code, line = step_functions.outcome(
            step_functions.follow(args.run_id, lambda _: None, timeout=args.timeout)
        )
        if not args.quiet:
            print(line)
        return code
    store = open_store()
    execution = _execution_of(store, args.run_id)
    if execution is not None:  # recorded under a state machine's execution: follow that
        from . import step_functions

        code, line = step_functions.wait_recorded(store, *execution, args.timeout)
        if not args.quiet:
            print(line)
        return code
    run = wait_for(store, args.run_id, args.timeout)
    if args.json:
        print(json.dumps(run.to_dict()))
    elif not args.quiet:
        print(f"run {run.run_id} {run.status}")
    # wait exits as the run did (0, 1 or 130), so a script can wait for a detached run and act on
    # it.
    return exit_code(run.status)


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..runs.control import cancel_run
    from ..runs.store import open_store

    if args.run_id.startswith("arn:aws:states:"):  # an execution of a state machine
        from . import step_functions

        print(step_functions.outcome(step_functions.stop(args.run_id))[1])
        return ExitCode.OK
    store = open_store()
    execution = _execution_of(store, args.run_id)
    if execution is not None:  # recorded under a state machine's execution: StopExecution
        from . import step_functions

        print(step_functions.cancel_recorded(store, *execution))
        return ExitCode.OK
    # Cancelling a run that already ended is not an error: a script may cancel unconditionally.
    run, changed = cancel_run(store, args.run_id)
    message = (
        f"run {run.run_id} {run.status}"
        if changed
        else f"run {run.run_id} already ended ({run.status}); nothing to cancel"
    )
    print(
        json.dumps({"run_id": run.run_id, "status": run.status, "changed": changed})
        if args.json
        else message
    )
    return ExitCode.OK


def _execution_of(store: Any, ref: str) -> tuple[Any, str] | None:
    """The run ``ref`` and its Step Functions execution ARN, when it was recorded under one."""
    from ..runs.control import look_up
    from ..runs.store import execution_of

    run = look_up(store, ref)
    execution = execution_of(run)
    return None if execution is None else (run, execution)
