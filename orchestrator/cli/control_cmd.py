"""``orchestrate wait`` and ``orchestrate cancel``: act on a run (or a Step Functions execution)."""

from __future__ import annotations

import argparse
import json

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
    run = wait_for(open_store(), args.run_id, args.timeout)
    if args.json:
        print(json.dumps(run.to_dict()))
    elif not args.quiet:
        print(f"run {run.run_id} {run.status}")
    return exit_code(run.status)


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..runs.control import cancel_run
    from ..runs.store import open_store

    if args.run_id.startswith("arn:aws:states:"):  # an execution of a state machine
        from . import step_functions

        print(step_functions.outcome(step_functions.stop(args.run_id))[1])
        return ExitCode.OK
    run, changed = cancel_run(open_store(), args.run_id)
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
