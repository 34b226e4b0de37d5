"""``orchestrate validate`` and ``orchestrate plan``: what a routine would do, with nothing run."""

from __future__ import annotations

import argparse
import json

from ..outcome import ExitCode
from .routine_arg import load


def cmd_validate(args: argparse.Namespace) -> int:
    routine = load(args)
    tasks = sum(len(s.tasks) for s in routine.steps)
    if args.json:
        print(
            json.dumps(
                {
                    "routine": routine.name,
                    "valid": True,
                    "steps": len(routine.steps),
                    "tasks": tasks,
                }
            )
        )
    elif not args.quiet:
        counts = f"{plural(len(routine.steps), 'step')}, {plural(tasks, 'task')}"
        print(f"{args.routine}: ok ({routine.name}: {counts})")
    return ExitCode.OK


def cmd_plan(args: argparse.Namespace) -> int:
    from ..engine import plan
    from ..selection import excluded_steps

    the_plan = plan(load(args))
    # Also checks the names in --only and --from, so a typo fails the plan as it would fail the run.
    excluded = excluded_steps(the_plan, args.only, args.start)
    steps = the_plan.describe()
    for step in steps:
        step["selected"] = step["step"] not in excluded
    if args.json:
        # No run id: each run gets its own when it starts, so a plan's would be one no run has.
        print(json.dumps({"routine": the_plan.routine.name, "steps": steps}, indent=2, default=str))
        return ExitCode.OK
    for number, step in enumerate(steps, 1):
        flags = "" if step["active"] else "  (inactive: will be skipped)"
        flags = (
            f"  ({excluded[step['step']]}: will be skipped)" if step["step"] in excluded else flags
        )
        after = f"  after {', '.join(step['after'])}" if step["after"] else ""
        print(f"{number}. {step['step']} [{step['executor']}]{after}{flags}")
        for key, value in step["params"].items():
            print(f"     {key} = {json.dumps(value, default=str)}")
        for call in step["tasks"]:
            extras = [f"{k}={v}" for k, v in call.items() if k in ("retries", "timeout") and v]
            args_text = json.dumps(call["args"], default=str) if call["args"] else ""
            line = f"   - {call['task']}" + (f" {args_text}" if args_text else "")
            print(line + (f"  {' '.join(extras)}" if extras else ""))
    return ExitCode.OK


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
