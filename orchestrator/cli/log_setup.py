"""Where log records go: task logs on stderr (through rich's console when there is one, masked),
and a broken plugin's warning as one line."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


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


def configure_logging(
    args: argparse.Namespace, secrets: frozenset[str] = frozenset(), console: Any = None
) -> None:
    """Log lines on stderr; through the rich console when there is one, so they print above
    the live progress bar instead of over it."""
    from ..masking import MaskSecrets

    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler: logging.Handler = (
        ConsoleLogHandler(console) if console is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setLevel(level)
    handler.addFilter(MaskSecrets(secrets))
    handler.setFormatter(
        TaskLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
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
