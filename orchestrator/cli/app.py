"""``orchestrate``: parse arguments, call the core, render. No logic of its own.

Exit codes (orchestrator.outcome.ExitCode): 0 success, 1 a task failed, 2 bad input, usage or
environment (an orchestrator home or run store that cannot be used), 3 `wait --timeout` gave up,
130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys
import threading
import traceback
from typing import Any, Callable, Iterator

from .. import __version__
from ..outcome import ExitCode, Status, exit_code
from . import extensions as cli_extensions
from . import metadata as cli_metadata

FOLLOW_POLL_SECONDS = 0.05  # logs --follow: a container's line shows within ~50 ms of reaching the store
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.INTERRUPTED
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = dict(cli_extensions.COMMANDS)
CANCEL_JOIN_SECONDS = 30.0
RUN_STATUSES = tuple(Status)


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
        super().__init__(*args, formatter_class=sized(formatter_class), **kwargs)


@functools.lru_cache(maxsize=None)
def sized(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` told the terminal width like :class:`HelpFormatter` (argparse makes one to
    check each argument added: the commands that ask for ``RawDescriptionHelpFormatter`` would
    import shutil on every start-up)."""
    if issubclass(formatter, HelpFormatter):
        return formatter
    return type(formatter.__name__, (HelpFormatter, formatter), {})


class OnlySubcommand:
    """Sub-parsers, but only the one the command line names is really built: each costs about
    as much start-up as validating a small routine (argparse looks up translations for each)."""

    def __init__(self, subparsers: Any, only: str | None) -> None:
        self.subparsers, self.only = subparsers, only

    @property
    def choices(self) -> dict[str, argparse.ArgumentParser]:
        return self.subparsers.choices  # type: ignore[no-any-return]

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.only is None or name == self.only:
            return self.subparsers.add_parser(name, **kwargs)
        return Unused()


class Unused:
    """Stands in for a sub-parser that is not built: whatever is asked of it (arguments, groups,
    nested sub-parsers) is ignored."""

    def __getattr__(self, name: str) -> Callable[..., Unused]:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> Unused:
        return self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, the sub-parser of that command alone (none for
    a name that is no command, such as ``--version``)."""
    parser = Parser(
        prog="orchestrate",
        description="Validate and run data-lake routines. `orchestrate ROUTINE` is `orchestrate run ROUTINE`.",
        epilog="Exit codes: 0 success, 1 a task failed, 2 bad input, usage or environment (home, run "
               "store), 3 `wait --timeout` gave up, 130 interrupted.",
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
    run.add_argument("--on", choices=("local", "step-functions"), default="local",
                     help="where the routine runs: here (default) or as an execution of a deployed "
                          "state machine (orchestrate generate --target step-functions)")
    run.add_argument("--state-machine", metavar="ARN", help="with --on step-functions: its ARN")
    run.add_argument("--run-id", help=argparse.SUPPRESS)
    run.add_argument("--params-file", help=argparse.SUPPRESS)  # --param values of a detached run
    selection(run)
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
    wait.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 3; the run goes on)")
    sub.add_parser("cancel", parents=[common, run_ref], help="stop a run (and its remote work); return once stopped")
    resume = sub.add_parser("resume", parents=[common, run_ref],
                            help="run the tasks that did not succeed in a run")
    resume.add_argument("--force", action="store_true", help="resume even if the routine file "
                        "changed, the run succeeded or it was resumed already")
    resume.add_argument("--max-parallel", type=positive, default=4, metavar="N")
    resume.add_argument("--allow-concurrent", action="store_true", help=argparse.SUPPRESS)
    resume.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE", help="override a param again")
    doctor = sub.add_parser("doctor", parents=[common], help="check executors: libraries, credentials, endpoints")
    doctor.add_argument("routine", nargs="?", help="check the executors of this routine with its params")
    sub.add_parser("validate", parents=[common, routine], help="check a routine without running anything")
    selection(sub.add_parser("plan", parents=[common, routine], help="show the ordered steps with resolved params"))
    backfill = sub.add_parser("backfill", parents=[common, routine],
                              help="one recorded run per date of a range: --param run_date=A..B")
    backfill.add_argument("--max-parallel", type=positive, default=1, metavar="N", help="dates run at once (default 1)")
    backfill.add_argument("--rerun", action="store_true", help="run dates that already succeeded too")
    selection(backfill)
    sub.add_parser("plugins", parents=[common], help="list registered executors and their tasks")
    sub.add_parser("schema", parents=[common], help="print the routine JSON Schema, with every executor's params")
    sub.add_parser("help", help="help for a command, an executor or EXECUTOR.TASK").add_argument(
        "topic", nargs="?", help="a command (run), an executor (athena) or a task (athena.run_query)")
    report = sub.add_parser("report", parents=[common], help="write a run (or a routine's last runs) as one HTML file")
    report.add_argument("target", metavar="RUN_ID|ROUTINE", help="a run id (or prefix); with --history a routine")
    report.add_argument("--output", "-o", metavar="FILE", help="where to write (default: NAME.html here; - for stdout)")
    report.add_argument("--history", type=positive, metavar="N", help="the routine's last N runs instead of one run")
    check = sub.add_parser("check", parents=[common], help="report late routines (expect:) and send `late` alerts")
    check.add_argument("routines", nargs="*", metavar="ROUTINE",
                       help="routine files (default: every routine the run store knows)")
    cli_metadata.add_parser(sub, common)
    cli_extensions.add_parsers(sub, common, routine)  # last: it adds an example to every command
    for built in sub.choices.values():  # the examples' formatter, told the width too
        built.formatter_class = sized(built.formatter_class)
    return parser


def selection(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--only", type=lambda t: [n.strip() for n in t.split(",") if n.strip()], default=[],
                        metavar="STEP[,STEP]", help="run only these steps (the others are skipped)")
    parser.add_argument("--from", dest="start", metavar="STEP", help="run this step and every step downstream")
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
    """``orchestrate [FLAGS] ROUTINE ...`` means ``orchestrate run [FLAGS] ROUTINE ...``.

    A first word that is no command but looks like one (no path separator, no routine suffix)
    is a typo, answered by argparse's "invalid choice" with our did-you-mean (see ``main``).
    """
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is None or argv[first] in (*COMMANDS, "help"):
        return argv
    if any(a in ("-h", "--help", "--version") for a in argv[:first]):
        return argv
    word = argv[first]
    if "/" not in word and "." not in word and not os.path.exists(word):
        return argv  # a mistyped command, not a routine
    return ["run", *argv]


def main(argv: list[str] | None = None) -> int:
    args_list = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    unknown = _unknown_command(args_list)
    if unknown is not None:
        from ..registry import unknown_message

        build_parser().print_usage(sys.stderr)
        print(f"orchestrate: {unknown_message('command', unknown, [*COMMANDS, 'help'])}", file=sys.stderr)
        return EXIT_USAGE
    # A known command needs only its own sub-parser, --version none; anything else (help,
    # mistakes) gets them all.
    first = args_list[0] if args_list else None
    parser = build_parser(first if first in COMMANDS or first == "--version" else None)
    try:
        return _dispatch(parser, parser.parse_args(args_list))
    except BrokenPipeError:
        # `orchestrate runs | head -1`: the reader left; say nothing more (and not at exit either).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _unknown_command(argv: list[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first in (*COMMANDS, "help") or any(a in ("-h", "--help", "--version") for a in argv):
        return None
    return first


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    show_plugin_warnings()
    if args.command == "help":
        return cmd_help(parser, args.topic)
    from ..errors import UserError

    try:
        return COMMANDS[args.command](args)
    except (UserError, OSError) as exc:  # an OSError here is the machine's: a folder or disk to fix
        return user_error(args, exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def user_error(args: argparse.Namespace, exc: Exception) -> int:
    """One line per problem on stderr (and one JSON document with ``--json``); exit 2."""
    if getattr(args, "verbose", False):
        traceback.print_exc()
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        message = f"orchestrate: {exc.strerror or exc}{where}"
    else:
        message = str(exc)
    print(message, file=sys.stderr)
    if getattr(args, "json", False):
        problems = [dataclasses.asdict(p) for p in getattr(exc, "problems", [])]
        print(json.dumps({"status": "invalid", "errors": message.splitlines(), "problems": problems}))
    return int(getattr(exc, "exit_code", EXIT_USAGE))


def show_plugin_warnings() -> None:
    """A plugin that fails to load is one line on stderr, whatever the output mode."""
    plugins = logging.getLogger("orchestrator.plugins")
    if not plugins.handlers:
        plugins.addHandler(StderrLines())
        plugins.propagate = False


class StderrLines(logging.Handler):
    """Each record's message as a line on the ``sys.stderr`` of the moment (not the one when the
    handler was made: tests and embedding programs swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(record.getMessage(), file=sys.stderr)
        except Exception:
            self.handleError(record)


def cmd_help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    if topic is None:
        parser.print_help()
        return EXIT_OK
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if topic in subparsers.choices:
        subparsers.choices[topic].print_help()
        return EXIT_OK
    return help_executor(topic, list(subparsers.choices))


def help_executor(topic: str, commands: list[str]) -> int:
    """``help EXECUTOR`` or ``help EXECUTOR.TASK``; an unknown topic names the closest of both kinds."""
    from ..errors import UserError
    from ..registry import Registry, unknown_message
    from .help import describe_executor, describe_task

    ref, _, task = topic.partition(".")
    registry = Registry()
    try:
        info = registry.resolve(ref)
    except UserError:
        print(unknown_message("command or executor", topic, [*commands, *registry.known_names()]), file=sys.stderr)
        return EXIT_USAGE
    if task and task not in info.tasks:
        print(unknown_message(f"task of {info.name}", task, info.tasks), file=sys.stderr)
        return EXIT_USAGE
    print(describe_task(info, task) if task else describe_executor(info))
    return EXIT_OK


def load(args: argparse.Namespace, path: str | None = None, options: Any = None) -> Any:
    """The routine ``args`` name, validated; with the params and run id of ``options`` if given,
    else of the flags (``validate`` and ``plan`` do not import the engine for that)."""
    from ..catalog.refs import resolve_routine_arg
    from ..registry import Registry
    from ..routine.load import load_routine

    params = options.params if options is not None else param_overrides(args)
    run_id = options.run_id if options is not None else getattr(args, "run_id", None)
    return load_routine(resolve_routine_arg(path or args.routine), params, Registry(),
                        run_id=run_id)


def param_overrides(args: argparse.Namespace, params: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """``--param`` values (and a detached run's params file) over ``params``."""
    from ..routine.load import parse_param_overrides

    given = [*read_private_params(getattr(args, "params_file", None)), *args.param]
    return {**(params or {}), **parse_param_overrides(given)}


def run_options(args: argparse.Namespace, params: dict[str, Any] | None = None) -> Any:
    """The run flags as one ``RunOptions``, built once and passed whole to the run and the engine.
    ``params``: a resumed run's stored params, under those given again."""
    from ..engine.options import RunOptions

    return RunOptions(params=param_overrides(args, params), run_id=getattr(args, "run_id", None),
                      max_parallel=getattr(args, "max_parallel", 4),
                      only=tuple(getattr(args, "only", ())), start=getattr(args, "start", None),
                      allow_concurrent=getattr(args, "allow_concurrent", False))


@command
def cmd_validate(args: argparse.Namespace) -> int:
    routine = load(args)
    tasks = sum(len(s.tasks) for s in routine.steps)
    if args.json:
        print(json.dumps({"routine": routine.name, "valid": True, "steps": len(routine.steps), "tasks": tasks}))
    elif not args.quiet:
        from .render import plural

        print(f"{args.routine}: ok ({routine.name}: {plural(len(routine.steps), 'step')}, {plural(tasks, 'task')})")
    return EXIT_OK


@command
def cmd_plan(args: argparse.Namespace) -> int:
    from ..engine import plan
    from ..selection import excluded_steps

    the_plan = plan(load(args))
    excluded = excluded_steps(the_plan, args.only, args.start)
    steps = the_plan.describe()
    for step in steps:
        step["selected"] = step["step"] not in excluded
    if args.json:
        # No run id: each run gets its own when it starts, so a plan's would be one no run has.
        print(json.dumps({"routine": the_plan.routine.name, "steps": steps}, indent=2, default=str))
        return EXIT_OK
    for number, step in enumerate(steps, 1):
        flags = "" if step["active"] else "  (inactive: will be skipped)"
        flags = f"  ({excluded[step['step']]}: will be skipped)" if step["step"] in excluded else flags
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
    from ..engine import plan

    from ..errors import UserError

    options = run_options(args)
    routine = load(args, options=options)
    if args.on == "step-functions":
        from . import step_functions

        if not args.state_machine:
            raise UserError("--on step-functions needs --state-machine ARN")
        if args.only or args.start:
            raise UserError("--only/--from apply to local runs; compile a routine without those steps instead")
        return step_functions.run(routine, dict(options.params), args.state_machine, args.detach, args.json)
    if args.state_machine:
        raise UserError("--state-machine applies to --on step-functions only")
    the_plan = plan(routine)
    options.excluded(the_plan)  # checked before anything starts
    if args.detach:
        return detach(args, routine.run_id)
    return execute(args, the_plan, options)


def execute(args: argparse.Namespace, the_plan: Any, options: Any) -> int:
    """Run a plan with tracking: claim the routine, render, record, cancel cleanly on signals."""
    from ..runs.control import TrackedRun
    from ..runs.store import open_store

    with (stdout_reserved() if args.json else contextlib.nullcontext(sys.stdout)) as stdout:
        shown = renderer(args, stdout)
        tracked = TrackedRun(open_store(), the_plan, [shown], options)
        tracked.claim()
        configure_logging(args, the_plan.routine.secrets, getattr(shown, "console", None))
        with cancel_on_signals(tracked):
            result = tracked.execute()
    if tracked.failure is not None:  # not raised: --json has already printed its one document
        print(f"run {result.run_id} stopped and failed: {tracked.failure}", file=sys.stderr)
        return EXIT_USAGE
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

    from ..home import home_dir
    from ..runs.store import open_store

    log_path = home_dir() / "logs" / f"{run_id}.out"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", args.routine, "--run-id", run_id, "--quiet",
           "--max-parallel", str(args.max_parallel)]
    params_file = write_private_params(args.param) if args.param else None
    if params_file is not None:  # a command line is readable by every user (ps, /proc/PID/cmdline)
        cmd += ["--params-file", str(params_file)]
    if args.allow_concurrent:
        cmd.append("--allow-concurrent")
    if args.only:
        cmd.append("--only=" + ",".join(args.only))
    if args.start:
        cmd.append(f"--from={args.start}")
    try:
        with open(log_path, "ab") as log:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        store = open_store()
        while store.get_run(run_id) is None:
            if child.poll() is not None:
                sys.stderr.write(log_path.read_text())
                return child.returncode or EXIT_FAILED
            time.sleep(0.05)
    finally:
        if params_file is not None:  # read and removed by the child before it claims the run
            params_file.unlink(missing_ok=True)
    print(json.dumps({"run_id": run_id, "pid": child.pid}) if args.json else run_id)
    return EXIT_OK


def write_private_params(pairs: list[str]) -> Any:
    """``--param`` values in a new file only this user can read (0600), for a detached run."""
    import tempfile
    from pathlib import Path

    from ..home import home_dir

    folder = home_dir() / "detach"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="run-", suffix=".params", dir=folder)  # created 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(pairs, handle)
    return Path(name)


def read_private_params(path: str | None) -> list[str]:
    """The ``--param`` values a detaching parent wrote to ``path``; removed once read."""
    if not path:
        return []
    from ..errors import UserError

    try:
        with open(path, encoding="utf-8") as handle:
            pairs = json.load(handle)
    except (OSError, ValueError) as exc:
        message = f"--params-file {path}: cannot read the detached run's params: {exc}"
        raise UserError(message) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
        raise UserError(f"--params-file {path}: expected a JSON list of KEY=VALUE strings")
    return pairs


def renderer(args: argparse.Namespace, stdout: Any = None) -> Any:
    from .render import JsonRenderer, PlainRenderer, RichRenderer

    if args.json:
        return JsonRenderer(stdout or sys.stdout)
    if not args.quiet and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        return RichRenderer(verbose=args.verbose)
    return PlainRenderer(sys.stderr, quiet=args.quiet, verbose=args.verbose)


@command
def cmd_runs(args: argparse.Namespace) -> int:
    from ..runs.control import reap
    from ..runs.store import open_store

    store = open_store()
    runs = reap(store, store.list_runs(args.routine, args.status, limit=args.limit))
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return EXIT_OK
    from .views import runs_table

    print(runs_table(runs, late_routines(store, runs), args.routine, args.status))
    return EXIT_OK


def late_routines(store: Any, runs: list[Any]) -> dict[str, str]:
    """Routine name -> why it is late, for the routines listed whose file has an ``expect:``."""
    from pathlib import Path

    from ..errors import UserError
    from ..freshness import breaches, expectation
    from ..routine.load import parse_file

    late, seen = {}, set()
    for run in runs:
        if run.routine in seen or not run.routine_file or not os.path.isfile(run.routine_file):
            continue
        seen.add(run.routine)
        try:
            doc = parse_file(Path(run.routine_file))
        except UserError:
            continue
        expect = expectation(doc.get("expect") if isinstance(doc, dict) else None, lambda *_: None)
        found = breaches(expect, store.list_runs(run.routine, limit=200)) if expect else []
        if found:
            late[run.routine] = "; ".join(b.text for b in found)
    return late


@command
def cmd_show(args: argparse.Namespace) -> int:
    from ..runs.control import look_up
    from ..runs.store import open_store
    from .views import details_json, run_details, show_run

    store = open_store()
    details = run_details(store, look_up(store, args.run_id))
    if args.json:
        print(json.dumps(details_json(details), indent=2, default=str))
    else:
        print(show_run(details))
    return EXIT_OK


@command
def cmd_logs(args: argparse.Namespace) -> int:
    import time

    from ..runs.control import look_up
    from ..runs.store import open_store
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
        time.sleep(FOLLOW_POLL_SECONDS)
        run = look_up(store, run.run_id)
        records = store.logs(run.run_id, after=last)


@command
def cmd_wait(args: argparse.Namespace) -> int:
    from ..runs.control import wait_for
    from ..runs.store import open_store

    if args.run_id.startswith("arn:aws:states:"):  # an execution of a state machine
        from . import step_functions

        code, line = step_functions.outcome(
            step_functions.follow(args.run_id, lambda _: None, timeout=args.timeout))
        if not args.quiet:
            print(line)
        return code
    run = wait_for(open_store(), args.run_id, args.timeout)
    if args.json:
        print(json.dumps(run.to_dict()))
    elif not args.quiet:
        print(f"run {run.run_id} {run.status}")
    return exit_code(run.status)


@command
def cmd_cancel(args: argparse.Namespace) -> int:
    from ..runs.control import cancel_run
    from ..runs.store import open_store

    if args.run_id.startswith("arn:aws:states:"):  # an execution of a state machine
        from . import step_functions

        print(step_functions.outcome(step_functions.stop(args.run_id))[1])
        return EXIT_OK
    run, changed = cancel_run(open_store(), args.run_id)
    message = f"run {run.run_id} {run.status}" if changed else f"run {run.run_id} already ended ({run.status}); nothing to cancel"
    print(json.dumps({"run_id": run.run_id, "status": run.status, "changed": changed}) if args.json else message)
    return EXIT_OK


@command
def cmd_resume(args: argparse.Namespace) -> int:
    from ..routine.load import parse_param_overrides
    from ..errors import UserError
    from ..runs.control import look_up, resume_plan
    from ..runs.store import open_store

    store = open_store()
    old = look_up(store, args.run_id)
    given = parse_param_overrides(args.param)
    hidden = sorted(k for k, v in old.params.items() if v == "****" and k not in given)
    if hidden:
        raise UserError(f"run {old.run_id} had secret params that were not stored: pass them again with "
                        + " ".join(f"--param {k}=..." for k in hidden))
    params = {k: v for k, v in old.params.items() if v != "****"}
    args.run_id = None  # the new run's: a new one
    options = run_options(args, params)
    the_plan, resume = resume_plan(store, old, load(args, old.routine_file, options), args.force)
    if not args.quiet and not args.json:
        total = sum(len(step.spec.tasks) for step in the_plan.steps)
        print(f"resuming run {old.run_id}: {len(resume.done)} of {total} tasks already succeeded",
              file=sys.stderr)
    return execute(args, the_plan, options.resuming(resume))


@command
def cmd_report(args: argparse.Namespace) -> int:
    from ..runs.control import look_up, reap
    from ..runs.store import open_store
    from .report import history_report, run_report

    store = open_store()
    if args.history:
        routine = routine_name(args.target)
        runs = reap(store, store.list_runs(routine, limit=args.history))
        if not runs:
            from ..errors import UserError

            raise UserError(f"no runs recorded for routine {routine!r}; see `orchestrate runs`")
        page, default = history_report(store, routine, runs), f"{routine}-history.html"
    else:
        run = look_up(store, args.target)
        page, default = run_report(store, run), f"{run.routine}-{run.run_id[:8]}.html"
    if args.output == "-":
        sys.stdout.write(page)
        return EXIT_OK
    path = os.path.abspath(args.output or default)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    print(json.dumps({"report": path, "bytes": len(page.encode())}) if args.json else path)
    return EXIT_OK


def routine_name(target: str) -> str:
    """A routine named directly, or by its file (only its ``routine_name`` is read)."""
    if os.path.isfile(target):
        from ..routine.load import parse_file
        from pathlib import Path

        doc = parse_file(Path(target))
        if isinstance(doc, dict) and isinstance(doc.get("routine_name"), str):
            return doc["routine_name"]
    return target


@command
def cmd_check(args: argparse.Namespace) -> int:
    from ..alerts.lateness import check_routine
    from ..alerts.senders import all_senders
    from ..errors import UserError
    from ..runs.store import open_store

    store = open_store()
    files = args.routines or known_routine_files(store)
    results, unreadable = [], []
    for path in files:
        try:
            routine = load(argparse.Namespace(param=[], run_id=None), path)
        except UserError as exc:
            unreadable.append({"routine_file": path, "error": str(exc).splitlines()[0]})
            continue
        results.append(check_routine(store, routine, all_senders).to_dict())
    if args.json:
        print(json.dumps({"routines": results, "unreadable": unreadable}, indent=2))
    else:
        for item in results:
            print(f"{'LATE' if item['late'] else 'ok':5} {item['routine']}")
            for breach in item["breaches"]:
                print(f"      - {breach['text']}")
            for sent in item["notified"]:
                print(f"      notified {sent['target']}" if sent["ok"] else f"      notification to {sent['target']} "
                      f"failed: {sent['error']}")
        for item in unreadable:
            print(f"ERROR {item['routine_file']}: {item['error']}")
    late = any(item["late"] for item in results)
    return EXIT_FAILED if late or unreadable else EXIT_OK


def known_routine_files(store: Any) -> list[str]:
    """The file each routine in the store last ran from, one per routine name, that still exists."""
    files: dict[str, str] = {}
    for run in store.list_runs(limit=100_000):
        if run.routine not in files and run.routine_file and os.path.isfile(run.routine_file):
            files[run.routine] = run.routine_file
    return sorted(files.values())


@command
def cmd_doctor(args: argparse.Namespace) -> int:
    from ..catalog.refs import resolve_routine_arg
    from ..doctor import diagnose

    report = diagnose(resolve_routine_arg(args.routine) if args.routine else None)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for item in report:
            print(f"{'PROBLEM' if item['problems'] else 'ok':7} {item['subject']}")
            for problem in item["problems"]:
                print(f"        - {problem}")
        if not args.routine:
            print("Endpoints are probed per step: orchestrate doctor ROUTINE")
    return EXIT_OK if all(not item["problems"] for item in report) else EXIT_FAILED


def configure_logging(args: argparse.Namespace, secrets: frozenset[str] = frozenset(), console: Any = None) -> None:
    """Log lines on stderr; through the rich console when there is one, so they print above
    the live progress bar instead of over it."""
    from ..masking import MaskSecrets

    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler: logging.Handler = ConsoleLogHandler(console) if console is not None else logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.addFilter(MaskSecrets(secrets))
    handler.setFormatter(TaskLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("orchestrator")
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))


class ConsoleLogHandler(logging.Handler):
    """Writes formatted records through a rich console (plain text: no markup, no highlighting)."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


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
    from ..registry import Registry

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
    from ..registry import Registry
    from ..routine.schema_export import full_schema

    print(json.dumps(full_schema(Registry()), indent=2))
    return EXIT_OK


COMMANDS["metadata"] = cli_metadata.cmd_metadata


@command
def cmd_backfill(args: argparse.Namespace) -> int:
    from .backfill import backfill

    return backfill(args, load, renderer)
