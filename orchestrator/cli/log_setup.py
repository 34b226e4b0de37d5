"""Where log records go: task logs on stderr (through rich's console when there is one, masked),
and a broken plugin's warning as one line.

Both are set up when ``logging`` is first imported, not here: a run that logs nothing never
imports it (see orchestrator.lazy_logging), and the handlers, being ``logging`` classes, live in
``log_handlers``.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any

from ..lazy_logging import when_imported

# logging.DEBUG, INFO and WARNING, which this module cannot name without importing ``logging``.
DEBUG, INFO, WARNING = 10, 20, 30


def show_plugin_warnings() -> None:
    """A plugin that fails to load is one line on stderr, whatever the output mode."""
    when_imported(_show_plugin_warnings)


def _show_plugin_warnings(logging: ModuleType) -> None:
    from .log_handlers import StderrLines

    plugins = logging.getLogger("orchestrator.plugins")
    if not plugins.handlers:
        plugins.addHandler(StderrLines())
        # Not also through the "orchestrator" logger's terminal handler: the warning would be
        # printed a second time, timestamped.
        plugins.propagate = False


def configure_logging(
    args: argparse.Namespace, secrets: frozenset[str] = frozenset(), console: Any = None
) -> None:
    """Log lines on stderr; through the rich console when there is one, so they print above
    the live progress bar instead of over it."""
    level = DEBUG if args.verbose else WARNING if args.quiet else INFO
    # ``sys.stderr`` read now, as a handler made here would have: a run's log capture replaces it
    # with a tee that writes to the run's log, and task log lines would be stored twice.
    stream = sys.stderr
    when_imported(lambda logging: _configure(logging, level, secrets, console, stream))


def _configure(logging: ModuleType, level: int, secrets: frozenset[str], console: Any,
               stream: Any) -> None:
    from ..masking import MaskSecrets
    from .log_handlers import ConsoleLogHandler, TaskLogFormatter

    handler = ConsoleLogHandler(console) if console is not None else logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.addFilter(MaskSecrets(secrets))
    handler.setFormatter(
        TaskLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    logger = logging.getLogger("orchestrator")
    logger.addHandler(handler)
    # INFO at least even under --quiet: the handler filters what the terminal shows, but the
    # records must still get past the logger to reach the run's log capture on the root.
    logger.setLevel(min(level, INFO))
