"""``orchestrate``: parse arguments, call the core, render. No logic of its own.

Exit codes: 0 success, 1 a task failed, 2 bad input or usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable, Iterator

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
CANCEL_JOIN_SECONDS = 30.0
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled", "skipped", "dead")


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width: asking shutil for it imports shutil, bz2 and
    lzma on every start-up, for help that is rarely printed."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or terminal_columns() - 2)


def terminal_columns() -> int:
    """What ``shutil.get_terminal_size`` answers: ``$COLUMNS``, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, formatter_class: Any = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


class OnlySubcommand:
    """Sub-parsers, but only the one the command line names is really built: each costs about
    as much start-up as validating a small routine (argparse looks up translations for each)."""

    def __init__(self, subparsers: Any, only: str | None) -> None:
        self.subparsers, self.only = subparsers, only

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.only is None or name == self.only:
            return self.subparsers.add_parser(name, **kwargs)
        return Unused()


class Unused:
    """Stands in for a sub-parser that is not built."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, the sub-parser of that command alone."""
    parser = Parser(
        prog="orchestrate",
        description="Validate and run data-lake routines. `orchestrate ROUTINE` is `orchestrate run ROUTINE`.",
        epilog="Exit codes: 0 success, 1 a task failed, 2 bad input or usage, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    sub = OnlySubcommand(parser.add_subparsers(dest="command", metavar="COMMAND"), only)
    common = Parser(add_help=False)
    common.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("--quiet", "-q", action="store_true", help="print only failures and the final status")
    common.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    routine = Parser(add_help=False)
    routine.add_argument("routine", help="routine file (.json, .yaml or .yml)")
    routine.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                         help="override a routine param (repeatable)")
    run = sub.add_parser("run", parents=[common, routine], help="validate, then run a routine")
    run.add_argument("--max-parallel", type=positive, default=4, metavar="N", help="independent executors run at once (default 4)")
    run.add_argument("--detach", action="store_true", help="run in the background; print the run id")
    run.add_argument("--allow-concurrent", action="store_true", help="run even if this routine is already running")
    run.add_argument("--run-id", help=argparse.SUPPRESS)
    runs = sub.add_parser("runs", parents=[common], help="list recent runs")
    runs.add_argument("--routine", help="only runs of this routine")
    runs.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    runs.add_argument("--limit", type=positive, default=20, help="how many (default 20)")
    run_ref = Parser(add_help=False)
    run_ref.add_argument("run_id", metavar="RUN_ID", help="a run id (or a unique prefix)")
    sub.add_parser("show", parents=[common, run_ref], help="one run: tasks, attempts, metrics, errors, children")
    logs = sub.add_parser("logs", parents=[common, run_ref], help="print a run's log")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--tail", type=natural, metavar="N", help="only the last N lines")
    wait = sub.add_parser("wait", parents=[common, run_ref], help="block until a run ends; exit with its code")
    wait.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 2)")
    sub.add_parser("cancel", parents=[common, run_ref], help="stop a run (and its remote work); return once stopped")
    resume = sub.add_parser("resume", parents=[common, run_ref], help="run again what did not succeed in a run")
    resume.add_argument("--force", action="store_true", help="resume even if the routine file changed")
    resume.add_argument("--max-parallel", type=positive, default=4, metavar="N")
    resume.add_argument("--allow-concurrent", action="store_true", help=argparse.SUPPRESS)
    resume.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE", help="override a param again")
    doctor = sub.add_parser("doctor", parents=[common], help="check executors: libraries, credentials, endpoints")
    doctor.add_argument("routine", nargs="?", help="check the executors of this routine with its params")
    sub.add_parser("validate", parents=[common, routine], help="check a routine without running anything")
    sub.add_parser("plan", parents=[common, routine], help="show the ordered steps with resolved params")
    sub.add_parser("plugins", parents=[common], help="list registered executors and their tasks")
    sub.add_parser("schema", parents=[common], help="print the routine JSON Schema, with every executor's params")
    sub.add_parser("help", help="show help for a command").add_argument("topic", nargs="?", help="a command")
    return parser


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def normalise_argv(argv: list[str]) -> list[str]:
    """``orchestrate ROUTINE ...`` means ``orchestrate run ROUTINE ...``."""
    if argv and not argv[0].startswith("-") and argv[0] not in (*COMMANDS, "help"):
        return ["run", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    args_list = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    # A known command needs only its own sub-parser; anything else (help, mistakes) gets them all.
    parser = build_parser(args_list[0] if args_list and args_list[0] in COMMANDS else None)
    args = parser.parse_args(args_list)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "help":
        return cmd_help(parser, args.topic)
    show_plugin_warnings()
    from .errors import UserError

    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(str(exc), file=sys.stderr)
        if getattr(args, "json", False):
            problems = [dataclasses.asdict(p) for p in getattr(exc, "problems", [])]
            print(json.dumps({"status": "invalid", "error": str(exc), "problems": problems}))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def show_plugin_warnings() -> None:
    """A plugin that fails to load is one line on stderr, whatever the output mode."""
    plugins = logging.getLogger("orchestrator.plugins")
    if not plugins.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        plugins.addHandler(handler)
        plugins.propagate = False


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


def load(args: argparse.Namespace, path: str | None = None, params: dict[str, Any] | None = None) -> Any:
    from .config import load_routine, parse_param_overrides
    from .registry import Registry

    overrides = {**(params or {}), **parse_param_overrides(args.param)}
    return load_routine(path or args.routine, overrides, Registry(), run_id=getattr(args, "run_id", None))


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
        print(json.dumps({"routine": the_plan.routine.name, "run_id": the_plan.routine.run_id, "steps": steps}, indent=2,
                         default=str))
        return EXIT_OK
    for number, step in enumerate(steps, 1):
        flags = "" if step["active"] else "  (inactive: will be skipped)"
        after = f"  after {', '.join(step['after'])}" if step["after"] else ""
        print(f"{number}. {step['step']} [{step['executor']}]{after}{flags}")
        for key, value in step["params"].items():
            print(f"     {key} = {json.dumps(value, default=str)}")
        for call in step["tasks"]:
            extras = [f"{k}={v}" for k, v in call.items() if k in ("retries", "timeout") and v]
            args_text = json.dumps(call["args"], default=str) if call["args"] else ""
            print(f"   - {call['task']}{(' ' + args_text) if args_text else ''}{('  ' + ' '.join(extras)) if extras else ''}")
    return EXIT_OK


@command
def cmd_run(args: argparse.Namespace) -> int:
    from .engine import plan

    routine = load(args)
    if args.detach:
        return detach(args, routine.run_id)
    return execute(args, plan(routine))


def execute(args: argparse.Namespace, the_plan: Any, done: dict[int, str] | None = None, resumed_from: str | None = None) -> int:
    """Run a plan with tracking: claim the routine, render, record, cancel cleanly on signals."""
    from .lifecycle import TrackedRun
    from .runs import open_store

    with (stdout_reserved() if args.json else contextlib.nullcontext(sys.stdout)) as stdout:
        tracked = TrackedRun(open_store(), the_plan, [renderer(args, stdout)], args.max_parallel, done, resumed_from)
        tracked.claim(args.allow_concurrent)
        configure_logging(args, the_plan.routine.secrets)
        with cancel_on_signals(tracked):
            result = tracked.execute()
    return result.exit_code


@contextlib.contextmanager
def stdout_reserved() -> Iterator[Any]:
    """For ``--json``: file descriptor 1 points at stderr (tasks, subprocesses, ``os.write(1, ...)``);
    the yielded stream is the real stdout, kept for the one JSON document."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(os.dup(saved), "w")
    try:
        yield real
    finally:
        real.flush()
        real.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def detach(args: argparse.Namespace, run_id: str) -> int:
    """Start the run in a background process; return once it has claimed the routine (or failed to)."""
    import subprocess
    import time

    from .home import home_dir
    from .runs import open_store

    log_path = home_dir() / "logs" / f"{run_id}.out"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", args.routine, "--run-id", run_id, "--quiet",
           "--max-parallel", str(args.max_parallel), *(f"--param={p}" for p in args.param)]
    if args.allow_concurrent:
        cmd.append("--allow-concurrent")
    with open(log_path, "ab") as log:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    store = open_store()
    while store.get_run(run_id) is None:
        if child.poll() is not None:
            sys.stderr.write(log_path.read_text())
            return child.returncode or EXIT_FAILED
        time.sleep(0.05)
    print(json.dumps({"run_id": run_id, "pid": child.pid}) if args.json else run_id)
    return EXIT_OK


def renderer(args: argparse.Namespace, stdout: Any = None) -> Any:
    from .render import JsonRenderer, PlainRenderer, RichRenderer

    if args.json:
        return JsonRenderer(stdout or sys.stdout)
    if not args.quiet and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        return RichRenderer()
    return PlainRenderer(sys.stderr, quiet=args.quiet)


@command
def cmd_runs(args: argparse.Namespace) -> int:
    from .lifecycle import reap
    from .runs import open_store

    store = open_store()
    runs = reap(store, store.list_runs(args.routine, args.status, limit=args.limit))
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return EXIT_OK
    from .views import runs_table

    print(runs_table(runs))
    return EXIT_OK


@command
def cmd_show(args: argparse.Namespace) -> int:
    from .lifecycle import look_up
    from .runs import open_store
    from .views import run_details, show_run

    store = open_store()
    details = run_details(store, look_up(store, args.run_id))
    print(json.dumps(details, indent=2, default=str) if args.json else show_run(details))
    return EXIT_OK


@command
def cmd_logs(args: argparse.Namespace) -> int:
    import time

    from .lifecycle import look_up
    from .runs import open_store
    from .views import log_line

    store = open_store()
    run = look_up(store, args.run_id)
    records = store.logs(run.run_id)
    if args.tail is not None:
        records = records[-args.tail:] if args.tail else []
    last = records[-1].seq if records else 0
    while True:
        for record in records:
            print(json.dumps(record.__dict__) if args.json else log_line(record), flush=True)
            last = record.seq
        if not args.follow or run.finished:
            return EXIT_OK
        time.sleep(0.2)
        run = look_up(store, run.run_id)
        records = store.logs(run.run_id, after=last)


@command
def cmd_wait(args: argparse.Namespace) -> int:
    from .lifecycle import exit_code, wait_for
    from .runs import open_store

    run = wait_for(open_store(), args.run_id, args.timeout)
    if args.json:
        print(json.dumps(run.to_dict()))
    elif not args.quiet:
        print(f"run {run.run_id} {run.status}")
    return exit_code(run.status)


@command
def cmd_cancel(args: argparse.Namespace) -> int:
    from .lifecycle import cancel_run
    from .runs import open_store

    run, changed = cancel_run(open_store(), args.run_id)
    message = f"run {run.run_id} {run.status}" if changed else f"run {run.run_id} already ended ({run.status}); nothing to cancel"
    print(json.dumps({"run_id": run.run_id, "status": run.status, "changed": changed}) if args.json else message)
    return EXIT_OK


@command
def cmd_resume(args: argparse.Namespace) -> int:
    from .config import parse_param_overrides
    from .errors import UserError
    from .lifecycle import look_up, resume_plan
    from .runs import open_store

    store = open_store()
    old = look_up(store, args.run_id)
    given = parse_param_overrides(args.param)
    hidden = sorted(k for k, v in old.params.items() if v == "****" and k not in given)
    if hidden:
        raise UserError(f"run {old.run_id} had secret params that were not stored: pass them again with "
                        + " ".join(f"--param {k}=..." for k in hidden))
    params = {k: v for k, v in old.params.items() if v != "****"}
    args.run_id = None
    the_plan, done = resume_plan(store, old, load(args, old.routine_file, params), args.force)
    if not args.quiet and not args.json:
        print(f"resuming run {old.run_id}: {len(done)} of {len(the_plan.steps)} steps already succeeded", file=sys.stderr)
    return execute(args, the_plan, done, resumed_from=old.run_id)


@command
def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    report = diagnose(args.routine)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for item in report:
            mark = "PROBLEM" if item["problems"] else "skipped" if item.get("skipped") else "ok"
            print(f"{mark:7} {item['subject']}")
            for problem in item["problems"] or ([item["skipped"]] if item.get("skipped") else []):
                print(f"        - {problem}")
    return EXIT_OK if all(not item["problems"] for item in report) else EXIT_FAILED


def configure_logging(args: argparse.Namespace, secrets: frozenset[str] = frozenset()) -> None:
    from .tracking import MaskSecrets

    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.addFilter(MaskSecrets(secrets))
    handler.setFormatter(TaskLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("orchestrator")
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))


class TaskLogFormatter(logging.Formatter):
    """Names a task's log lines ``step.task`` rather than by the full logger name."""

    def format(self, record: logging.LogRecord) -> str:
        name = record.name
        record.name = name.removeprefix("orchestrator.task.")
        try:
            return super().format(record)
        finally:
            record.name = name


@contextlib.contextmanager
def cancel_on_signals(run: Any) -> Iterator[None]:
    """First Ctrl-C or SIGTERM cancels the run cleanly; a second one exits at once."""
    import signal

    cancellers: list[threading.Thread] = []

    def handler(signum: int, frame: Any) -> None:
        if cancellers:
            getattr(run, "save_records", lambda: None)()  # what batching holds back is not lost
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
    broken = [plugin._asdict() for plugin in registry.broken()]
    if args.json:
        claims = {k: [i.origin for i in v] for k, v in conflicts.items()}
        print(json.dumps({"executors": rows, "conflicts": claims, "broken": broken}, indent=2))
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for row in rows:
            origin = f"{row['distribution']} {row['version']}".strip() or row["plugin"]
            print(f"{row['name']:<{width}}  {row['class']}  ({origin})  tasks: {', '.join(row['tasks'])}")
        for plugin in registry.broken():
            print(f"{plugin.name:<{width}}  BROKEN  ({plugin.origin})  {plugin.reason}")
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
