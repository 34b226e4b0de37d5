"""``orchestrate run`` and ``orchestrate resume``: run a plan with tracking, rendered as it goes.

``execute`` is the one place a local run is started from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from ..outcome import ExitCode
from .log_setup import configure_logging
from .routine_arg import load, param_overrides
from .signals import cancel_on_signals


def cmd_run(args: argparse.Namespace) -> int:
    from ..engine import plan
    from ..errors import UserError

    options = run_options(args)
    # on Step Functions, the Lambda reads ${secret.X}: never this process
    routine = load(args, options=options, resolve=args.on != "step-functions")
    if args.on == "step-functions":
        from . import step_functions

        if not args.state_machine:
            raise UserError("--on step-functions needs --state-machine ARN")
        if args.only or args.start:
            raise UserError(
                "--only/--from apply to local runs; compile a routine without those "
                "steps instead"
            )
        return step_functions.run(routine, dict(options.params), args.state_machine, args.detach,
                                  args.json)
    if args.state_machine:
        raise UserError("--state-machine applies to --on step-functions only")
    the_plan = plan(routine)
    options.excluded(the_plan)  # --only/--from checked before anything starts
    if args.detach:
        from .detach import detach

        return detach(args, routine.run_id)
    return execute(args, the_plan, options)


def run_options(args: argparse.Namespace, params: dict[str, Any] | None = None) -> Any:
    """The run flags as one ``RunOptions``, built once and passed whole to the run and the engine.
    ``params``: a resumed run's stored params, under those given again."""
    from ..engine.options import RunOptions

    return RunOptions(params=param_overrides(args, params), run_id=getattr(args, "run_id", None),
                      max_parallel=getattr(args, "max_parallel", 4),
                      only=tuple(getattr(args, "only", None) or ()),
                      start=getattr(args, "start", None),
                      allow_concurrent=getattr(args, "allow_concurrent", False))


def execute(args: argparse.Namespace, the_plan: Any, options: Any) -> int:
    """Run a plan with tracking: claim the routine, render, record, cancel cleanly on signals."""
    from ..runs.control import TrackedRun
    from ..runs.store import open_store

    reserved: Any = contextlib.nullcontext(sys.stdout)
    if args.json:
        # --json's one document must be alone on stdout, whatever tasks print; only then is
        # the module that sees to it imported.
        from .reserved_stdout import stdout_reserved

        reserved = stdout_reserved()
    with reserved as stdout:
        shown = renderer(args, stdout)
        tracked = TrackedRun(open_store(), the_plan, [shown], options)
        tracked.claim()
        configure_logging(args, the_plan.routine.secrets, getattr(shown, "console", None))
        # Only around the execution: a Ctrl-C while loading or claiming has nothing to cancel
        # and stops the command at once (app: "interrupted", exit 130).
        with cancel_on_signals(tracked):
            result = tracked.execute()
    if tracked.failure is not None:  # not raised: --json has already printed its one document
        print(f"run {result.run_id} stopped and failed: {tracked.failure}", file=sys.stderr)
        return ExitCode.USAGE
    return result.exit_code


def cmd_resume(args: argparse.Namespace) -> int:
    from ..routine.load import parse_param_overrides
    from ..runs.control import look_up, resume_params, resume_plan
    from ..runs.store import open_store

    store = open_store()
    old = look_up(store, args.run_id)
    params = resume_params(old, parse_param_overrides(args.param))
    args.run_id = None  # the new run's: a new one
    options = run_options(args, params)
    the_plan, resume = resume_plan(
        store, old, load(args, old.routine_file, options=options, resolve=True), args.force)
    if not args.quiet and not args.json:
        total = sum(len(step.spec.tasks) for step in the_plan.steps)
        print(
            f"resuming run {old.run_id}: {len(resume.done)} of {total} tasks already succeeded",
            file=sys.stderr,
        )
    return execute(args, the_plan, options.resuming(resume))


def renderer(args: argparse.Namespace, stdout: Any = None) -> Any:
    from .render import JsonRenderer, PlainRenderer, RichRenderer

    if args.json:
        return JsonRenderer(stdout or sys.stdout)
    # The live display only for a person at a terminal: a pipe, a CI log or NO_COLOR gets plain
    # timestamped lines.
    if not args.quiet and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        return RichRenderer(verbose=args.verbose)
    return PlainRenderer(sys.stderr, quiet=args.quiet, verbose=args.verbose)
