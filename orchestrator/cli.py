"""``orchestrate``: parse arguments, call the core, render. No logic of its own.

Exit codes: 0 success, 1 a task failed, 2 bad input or usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Iterator

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
CANCEL_JOIN_SECONDS = 30.0


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate",
        description="Validate and run data-lake routines. `orchestrate ROUTINE` is `orchestrate run ROUTINE`.",
        epilog="Exit codes: 0 success, 1 a task failed, 2 bad input or usage, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("--quiet", "-q", action="store_true", help="print only failures and the final status")
    common.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    routine = argparse.ArgumentParser(add_help=False)
    routine.add_argument("routine", help="routine file (.json, .yaml or .yml)")
    routine.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                         help="override a routine param (repeatable)")
    sub.add_parser("run", parents=[common, routine], help="validate, then run a routine").add_argument(
        "--max-parallel", type=int, default=4, metavar="N", help="independent executors run at once (default 4)")
    sub.add_parser("validate", parents=[common, routine], help="check a routine without running anything")
    sub.add_parser("plan", parents=[common, routine], help="show the ordered steps with resolved params")
    sub.add_parser("plugins", parents=[common], help="list registered executors and their tasks")
    sub.add_parser("schema", parents=[common], help="print the routine JSON Schema, with every executor's params")
    sub.add_parser("help", help="show help for a command").add_argument("topic", nargs="?", help="a command")
    return parser


def normalise_argv(argv: list[str]) -> list[str]:
    """``orchestrate ROUTINE ...`` means ``orchestrate run ROUTINE ...``."""
    if argv and not argv[0].startswith("-") and argv[0] not in (*COMMANDS, "help"):
        return ["run", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    args_list = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "help":
        return cmd_help(parser, args.topic)
    from .errors import UserError

    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    if topic is None:
        parser.print_help()
        return EXIT_OK
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if topic not in subparsers.choices:
        print(f"unknown command {topic!r}; commands: {', '.join(subparsers.choices)}", file=sys.stderr)
        return EXIT_USAGE
    subparsers.choices[topic].print_help()
    return EXIT_OK


def load(args: argparse.Namespace) -> Any:
    from .config import load_routine, parse_param_overrides
    from .registry import Registry

    return load_routine(args.routine, parse_param_overrides(args.param), Registry())


@command
def cmd_validate(args: argparse.Namespace) -> int:
    routine = load(args)
    tasks = sum(len(s.tasks) for s in routine.steps)
    if args.json:
        print(json.dumps({"routine": routine.name, "valid": True, "steps": len(routine.steps), "tasks": tasks}))
    elif not args.quiet:
        print(f"{args.routine}: ok ({routine.name}: {len(routine.steps)} steps, {tasks} tasks)")
    return EXIT_OK


@command
def cmd_plan(args: argparse.Namespace) -> int:
    from .engine import plan

    the_plan = plan(load(args))
    steps = the_plan.describe()
    if args.json:
        print(json.dumps({"routine": the_plan.routine.name, "run_id": the_plan.routine.run_id, "steps": steps}, indent=2))
        return EXIT_OK
    for number, step in enumerate(steps, 1):
        flags = "" if step["active"] else "  (inactive: will be skipped)"
        after = f"  after {', '.join(step['after'])}" if step["after"] else ""
        print(f"{number}. {step['step']} [{step['executor']}]{after}{flags}")
        for key, value in step["params"].items():
            print(f"     {key} = {json.dumps(value)}")
        for call in step["tasks"]:
            extras = [f"{k}={v}" for k, v in call.items() if k in ("retries", "timeout") and v]
            args_text = json.dumps(call["args"]) if call["args"] else ""
            print(f"   - {call['task']}{(' ' + args_text) if args_text else ''}{('  ' + ' '.join(extras)) if extras else ''}")
    return EXIT_OK


@command
def cmd_run(args: argparse.Namespace) -> int:
    from .engine import Run, plan

    routine = load(args)
    listeners = [] if args.json else [renderer(args)]
    run = Run(plan(routine), listeners, args.max_parallel)
    configure_logging(args)
    with cancel_on_signals(run), (contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()):
        result = run.execute()
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    return result.exit_code


def renderer(args: argparse.Namespace) -> Any:
    from .render import PlainRenderer, RichRenderer

    if not args.quiet and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        return RichRenderer()
    return PlainRenderer(sys.stderr, quiet=args.quiet)


def configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("orchestrator")
    logger.addHandler(handler)
    logger.setLevel(level)


@contextlib.contextmanager
def cancel_on_signals(run: Any) -> Iterator[None]:
    """First Ctrl-C or SIGTERM cancels the run cleanly; a second one exits at once."""
    cancellers: list[threading.Thread] = []

    def handler(signum: int, frame: Any) -> None:
        if cancellers:
            os._exit(EXIT_INTERRUPTED)
        print("\ncancelling: asking running tasks to stop (again to force)", file=sys.stderr)
        cancellers.append(threading.Thread(target=run.cancel, name="cancel", daemon=True))
        cancellers[0].start()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        for thread in cancellers:
            thread.join(CANCEL_JOIN_SECONDS)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@command
def cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import Registry

    registry = Registry()
    rows = [{"name": i.name, "class": i.class_name, "distribution": i.distribution, "version": i.version,
             "plugin": i.plugin, "tasks": i.tasks} for i in registry.executors()]
    conflicts = registry.conflicts()
    if args.json:
        print(json.dumps({"executors": rows, "conflicts": {k: [i.origin for i in v] for k, v in conflicts.items()}}, indent=2))
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for row in rows:
            origin = f"{row['distribution']} {row['version']}".strip() or row["plugin"]
            print(f"{row['name']:<{width}}  {row['class']}  ({origin})  tasks: {', '.join(row['tasks'])}")
    for name, infos in conflicts.items():
        print(f"conflict: executor name {name!r} is claimed by " + " and ".join(i.origin for i in infos), file=sys.stderr)
    return EXIT_USAGE if conflicts else EXIT_OK


@command
def cmd_schema(args: argparse.Namespace) -> int:
    from .registry import Registry
    from .schema_export import full_schema

    print(json.dumps(full_schema(Registry()), indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
