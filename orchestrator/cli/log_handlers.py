"""The handlers and formatter behind ``log_setup``: imported only once ``logging`` is, since they
subclass its classes (see orchestrator.lazy_logging)."""

from __future__ import annotations

import logging
import sys
from typing import Any


class StderrLines(logging.Handler):
    """Each record's message as a line on the ``sys.stderr`` of the moment (not the one when the
    handler was made: tests and embedding programs swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        # The message alone: a broken plugin's warning is a whole sentence ("warning: plugin
        # ..."), which a time and a logger name would only push off the line.
        try:
            print(record.getMessage(), file=sys.stderr)
        except Exception:
            self.handleError(record)


class ConsoleLogHandler(logging.Handler):
    """Writes formatted records through a rich console (plain text: no markup, no highlighting)."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        # markup=False: a message with [brackets] is text, not rich markup to swallow or choke
        # on; soft_wrap: a long line stays one line for copying and grep.
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class TaskLogFormatter(logging.Formatter):
    """Names a task's log lines ``step.task`` rather than by the full logger name."""

    def format(self, record: logging.LogRecord) -> str:
        name = record.name
        record.name = name.removeprefix("orchestrator.task.")
        # Put back whatever happens: the same record goes on to the root logger's handlers (the
        # run's log capture), which may read the step and task from the full name.
        try:
            return super().format(record)
        finally:
            record.name = name
