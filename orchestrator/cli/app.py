"""``orchestrate``: parse arguments, call the core, render. No logic of its own.

This module is the entry point: it picks the command, builds its parser, runs it and turns
user-fixable errors into one line and an exit code. The grammar is in ``parser``, each command
family in its ``*_cmd`` module (listed in ``commands``).

Exit codes (orchestrator.outcome.ExitCode): 0 success, 1 a task failed, 2 bad input, usage or
environment (an orchestrator home or run store that cannot be used), 3 `wait --timeout` gave up,
130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from ..outcome import ExitCode
from .commands import NAMES as COMMANDS
from .commands import command_function
from .log_setup import show_plugin_warnings
from .parser import build_parser


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
        print(
            f"orchestrate: {unknown_message('command', unknown, [*COMMANDS, 'help'])}",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    # A known command needs only its own sub-parser, --version none; anything else (help,
    # mistakes) gets them all.
    first = args_list[0] if args_list else None
    parser = build_parser(first if first in COMMANDS or first == "--version" else None)
    try:
        return _dispatch(parser, parser.parse_args(args_list))
    except BrokenPipeError:
        # `orchestrate runs | head -1`: the reader left; say nothing more (and not at exit either).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


def _unknown_command(argv: list[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    if (
        first is None
        or first in (*COMMANDS, "help")
        or any(a in ("-h", "--help", "--version") for a in argv)
    ):
        return None
    return first


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.command:
        parser.print_help()
        return ExitCode.USAGE
    # Before any command runs: whichever one finds a broken plugin, the warning is one line.
    show_plugin_warnings()
    if args.command == "help":
        from .help_cmd import cmd_help

        return cmd_help(parser, args.topic)
    from ..errors import UserError

    try:
        return command_function(args.command)(args)
    except (UserError, OSError) as exc:  # an OSError here is the machine's: a folder or disk to fix
        return user_error(args, exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def user_error(args: argparse.Namespace, exc: Exception) -> int:
    """One line per problem on stderr (and one JSON document with ``--json``); exit 2."""
    if getattr(args, "verbose", False):
        # Imported only here: ``traceback`` costs every command about 7 M instructions (~1.5 ms)
        # at start-up, and only --verbose prints one.
        import traceback

        traceback.print_exc()
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        message = f"orchestrate: {exc.strerror or exc}{where}"
    else:
        message = str(exc)
    print(message, file=sys.stderr)
    if getattr(args, "json", False):
        problems = [dataclasses.asdict(p) for p in getattr(exc, "problems", [])]
        print(
            json.dumps({"status": "invalid", "errors": message.splitlines(), "problems": problems})
        )
    return int(getattr(exc, "exit_code", ExitCode.USAGE))
