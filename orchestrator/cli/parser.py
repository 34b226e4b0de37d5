"""The command line's grammar: every command's arguments, built with argparse.

Only the sub-parser of the command being run is built (see ``OnlySubcommand``), and help is told
the terminal width without asking ``shutil``: both are start-up costs paid on every command.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any, Callable

from .. import __version__
from ..outcome import Status
from . import extensions as cli_extensions

RUN_STATUSES = tuple(Status)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width: asking shutil for it imports shutil, bz2 and
    lzma on every start-up, for help that is rarely printed."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        # Less 2, as argparse itself takes from the terminal's width.
        super().__init__(prog, indent_increment, max_help_position, width or terminal_columns() - 2)


def terminal_columns() -> int:
    """What ``shutil.get_terminal_size`` answers: ``$COLUMNS``, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    # sys.__stdout__, not sys.stdout: the process's own stream, even when sys.stdout has been
    # replaced. It is None without a console (AttributeError), may be closed (ValueError), or may
    # not be a terminal at all (OSError).
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Parser(argparse.ArgumentParser):
    """argparse's parser, its help told the terminal width (argparse makes sub-parsers with
    keyword arguments only, as this does)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["formatter_class"] = sized(kwargs.get("formatter_class", HelpFormatter))
        super().__init__(**kwargs)


@functools.lru_cache(maxsize=None)
def sized(formatter: Any) -> type[argparse.HelpFormatter]:
    """``formatter`` told the terminal width like :class:`HelpFormatter` (argparse makes one to
    check each argument added: the commands that ask for ``RawDescriptionHelpFormatter`` would
    import shutil on every start-up)."""
    if issubclass(formatter, HelpFormatter):
        return formatter
    # HelpFormatter first in the bases, so its __init__ (the width) wins while the other formatter's
    # layout methods still apply; cached, so each formatter class gets one subclass, not one per
    # parser.
    return type(formatter.__name__, (HelpFormatter, formatter), {})


@functools.lru_cache(maxsize=None)
def untranslated_argparse() -> None:
    """Let argparse skip gettext when no catalog could translate its messages anyway.

    argparse passes every title and help text it makes through ``gettext.gettext``, which
    searches the locale folder for a catalog each time (nothing caches a miss) and imports
    ``locale`` to name the languages: about 7 M instructions (1.5 ms) of every command's
    start-up. Without any catalog of the current domain in the folder (CPython ships none, and
    pyenv's builds have no folder at all), gettext hands every message back unchanged, which is
    what the replacements do; with one, argparse is left as it is.
    """
    import gettext

    domain = gettext.textdomain()
    folder = gettext.bindtextdomain(domain)
    try:
        languages = os.listdir(folder)
    except OSError:  # no locale folder at all
        languages = []
    catalog = os.path.join("LC_MESSAGES", f"{domain}.mo")
    if any(os.path.exists(os.path.join(folder, lang, catalog)) for lang in languages):
        return
    setattr(argparse, "_", lambda message: message)
    setattr(argparse, "ngettext",
            lambda singular, plural, count: singular if count == 1 else plural)


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

    # Returns itself, so chained calls (add_parser(...).add_argument(...)) are ignored too.
    def _ignore(self, *args: Any, **kwargs: Any) -> Unused:
        return self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, the sub-parser of that command alone (none for
    a name that is no command, such as ``--version``)."""
    untranslated_argparse()
    parser = Parser(
        prog="orchestrate",
        description="Validate and run data-lake routines. "
        "`orchestrate ROUTINE` is `orchestrate run ROUTINE`.",
        epilog="Exit codes: 0 success, 1 a task failed, 2 bad input, usage or environment "
        "(home, run store), 3 `wait --timeout` gave up, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    sub = OnlySubcommand(parser.add_subparsers(dest="command", metavar="COMMAND"), only)
    # Parents are copied into each command's parser, which adds its own -h: a parent with one too
    # would make argparse report a conflicting option.
    common = Parser(add_help=False)
    common.add_argument(
        "--verbose", "-v", action="store_true", help="show tracebacks and debug logs"
    )
    common.add_argument(
        "--quiet", "-q", action="store_true", help="print only failures and the final status"
    )
    common.add_argument(
        "--json", action="store_true", help="print exactly one JSON document on stdout"
    )
    routine = Parser(add_help=False)
    routine.add_argument("routine", help="routine file (.json, .yaml or .yml)")
    routine.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a routine param (repeatable)",
    )
    add_run_parser(sub, common, routine)
    add_record_parsers(sub, common)
    add_routine_parsers(sub, common, routine)
    add_executor_parsers(sub, common)
    add_report_parsers(sub, common)
    # Its module is imported only to build its own parser: start-up pays for it in no other command.
    if only in (None, "metadata"):
        from . import metadata as cli_metadata

        cli_metadata.add_parser(sub, common)
    cli_extensions.add_parsers(sub, common, routine)  # last: it adds an example to every command
    for built in sub.choices.values():  # the examples' formatter, told the width too
        built.formatter_class = sized(built.formatter_class)  # type: ignore[arg-type] # a class
    return parser


def add_run_parser(
    sub: Any, common: argparse.ArgumentParser, routine: argparse.ArgumentParser
) -> None:
    """``run``: where and how a routine runs."""
    run = sub.add_parser("run", parents=[common, routine], help="validate, then run a routine")
    run.add_argument(
        "--max-parallel",
        type=positive,
        default=4,
        metavar="N",
        help="independent executors run at once (default 4)",
    )
    run.add_argument(
        "--detach", action="store_true", help="run in the background; print the run id"
    )
    run.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="run even if this routine is already running",
    )
    run.add_argument(
        "--on",
        choices=("local", "step-functions"),
        default="local",
        help="where the routine runs: here (default) or as an execution of a deployed "
        "state machine (orchestrate generate --target step-functions)",
    )
    run.add_argument("--state-machine", metavar="ARN", help="with --on step-functions: its ARN")
    # For a detached run's background process: the run id the parent already printed.
    run.add_argument("--run-id", help=argparse.SUPPRESS)
    run.add_argument("--params-file", help=argparse.SUPPRESS)  # --param values of a detached run
    selection(run)


def add_record_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The commands about recorded runs: ``runs``, ``show``, ``logs``, ``wait``, ``cancel``,
    ``resume``."""
    runs = sub.add_parser("runs", parents=[common], help="list recent runs")
    runs.add_argument("--routine", help="only runs of this routine")
    runs.add_argument("--status", choices=RUN_STATUSES, help="only runs with this status")
    runs.add_argument("--limit", type=positive, default=20, help="how many (default 20)")
    run_ref = Parser(add_help=False)
    run_ref.add_argument("run_id", metavar="RUN_ID", help="a run id (or a unique prefix)")
    sub.add_parser(
        "show",
        parents=[common, run_ref],
        help="one run: tasks, attempts, metrics, errors, children",
    )
    logs = sub.add_parser("logs", parents=[common, run_ref], help="print a run's log")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the run ends"
    )
    logs.add_argument("--tail", type=natural, metavar="N", help="only the last N lines")
    wait = sub.add_parser(
        "wait", parents=[common, run_ref], help="block until a run ends; exit with its code"
    )
    wait.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up after this long (exit 3; the run goes on)",
    )
    sub.add_parser(
        "cancel",
        parents=[common, run_ref],
        help="stop a run (and its remote work); return once stopped",
    )
    resume = sub.add_parser(
        "resume", parents=[common, run_ref], help="run the tasks that did not succeed in a run"
    )
    resume.add_argument(
        "--force",
        action="store_true",
        help="resume even if the routine file "
        "changed, the run succeeded or it was resumed already",
    )
    resume.add_argument("--max-parallel", type=positive, default=4, metavar="N")
    resume.add_argument("--allow-concurrent", action="store_true", help=argparse.SUPPRESS)
    resume.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param again",
    )


def add_routine_parsers(
    sub: Any, common: argparse.ArgumentParser, routine: argparse.ArgumentParser
) -> None:
    """The commands that read a routine without running it as one run: ``doctor``,
    ``validate``, ``plan``, ``backfill``."""
    doctor = sub.add_parser(
        "doctor", parents=[common], help="check executors: libraries, credentials, endpoints"
    )
    doctor.add_argument(
        "routine", nargs="?", help="check the executors of this routine with its params"
    )
    sub.add_parser(
        "validate", parents=[common, routine], help="check a routine without running anything"
    )
    selection(
        sub.add_parser(
            "plan", parents=[common, routine], help="show the ordered steps with resolved params"
        )
    )
    backfill = sub.add_parser(
        "backfill",
        parents=[common, routine],
        help="one recorded run per date of a range: --param run_date=A..B",
    )
    backfill.add_argument(
        "--max-parallel",
        type=positive,
        default=1,
        metavar="N",
        help="dates run at once (default 1)",
    )
    backfill.add_argument(
        "--rerun", action="store_true", help="run dates that already succeeded too"
    )
    selection(backfill)


def add_executor_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``plugins``, ``schema`` and ``help``: what the installed executors offer."""
    sub.add_parser("plugins", parents=[common], help="list registered executors and their tasks")
    sub.add_parser(
        "schema",
        parents=[common],
        help="print the routine JSON Schema, with every executor's params",
    )
    sub.add_parser("help", help="help for a command, an executor or EXECUTOR.TASK").add_argument(
        "topic",
        nargs="?",
        help="a command (run), an executor (athena) or a task (athena.run_query)",
    )


def add_report_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``report`` and ``check``: a run as a page; routines that are late."""
    report = sub.add_parser(
        "report", parents=[common], help="write a run (or a routine's last runs) as one HTML file"
    )
    report.add_argument(
        "target", metavar="RUN_ID|ROUTINE", help="a run id (or prefix); with --history a routine"
    )
    report.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="where to write (default: NAME.html here; - for stdout)",
    )
    report.add_argument(
        "--history", type=positive, metavar="N", help="the routine's last N runs instead of one run"
    )
    check = sub.add_parser(
        "check", parents=[common], help="report late routines (expect:) and send `late` alerts"
    )
    check.add_argument(
        "routines",
        nargs="*",
        metavar="ROUTINE",
        help="routine files (default: every routine the run store knows)",
    )


def selection(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--only",
        type=lambda t: [n.strip() for n in t.split(",") if n.strip()],
        default=[],
        metavar="STEP[,STEP]",
        help="run only these steps (the others are skipped)",
    )
    parser.add_argument(
        # "from" is a Python keyword: args.from would not even parse.
        "--from", dest="start", metavar="STEP", help="run this step and every step downstream"
    )
    return parser


# argparse turns ArgumentTypeError (and int()'s ValueError) into a usage error, exit 2.
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
