"""``orchestrate help [COMMAND|EXECUTOR[.TASK]]``."""

from __future__ import annotations

import argparse
import sys

from ..outcome import ExitCode


def cmd_help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    if topic is None:
        parser.print_help()
        return ExitCode.OK
    # argparse offers no public way to reach a parser's sub-parsers.
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if topic in subparsers.choices:
        subparsers.choices[topic].print_help()
        return ExitCode.OK
    return help_executor(topic, list(subparsers.choices))


def help_executor(topic: str, commands: list[str]) -> int:
    """``help EXECUTOR`` or ``help EXECUTOR.TASK``; an unknown topic names the closest of both
    kinds."""
    from ..errors import UserError
    from ..registry import Registry, unknown_message
    from .help import describe_executor, describe_task

    ref, _, task = topic.partition(".")
    registry = Registry()
    try:
        info = registry.resolve(ref)
    except UserError:
        print(
            unknown_message("command or executor", topic, [*commands, *registry.known_names()]),
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if task and task not in info.tasks:
        print(unknown_message(f"task of {info.name}", task, info.tasks), file=sys.stderr)
        return ExitCode.USAGE
    print(describe_task(info, task) if task else describe_executor(info))
    return ExitCode.OK
