"""Every command's name and where its function lives, as ``module:function`` text.

A command's module is imported only when the command line names it: start-up pays for one
command, not for all of them. A command function takes the parsed arguments and returns the
exit code.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Callable

from . import extensions as cli_extensions

Command = Callable[[argparse.Namespace], int]

BUILT_IN: dict[str, str] = {
    "validate": "orchestrator.cli.plan_cmd:cmd_validate",
    "plan": "orchestrator.cli.plan_cmd:cmd_plan",
    "run": "orchestrator.cli.run_cmd:cmd_run",
    "runs": "orchestrator.cli.inspect_cmd:cmd_runs",
    "show": "orchestrator.cli.inspect_cmd:cmd_show",
    "logs": "orchestrator.cli.inspect_cmd:cmd_logs",
    "wait": "orchestrator.cli.control_cmd:cmd_wait",
    "cancel": "orchestrator.cli.control_cmd:cmd_cancel",
    "resume": "orchestrator.cli.run_cmd:cmd_resume",
    "report": "orchestrator.cli.report_cmd:cmd_report",
    "check": "orchestrator.cli.check_cmd:cmd_check",
    "doctor": "orchestrator.cli.executors_cmd:cmd_doctor",
    "plugins": "orchestrator.cli.executors_cmd:cmd_plugins",
    "schema": "orchestrator.cli.executors_cmd:cmd_schema",
    "metadata": "orchestrator.cli.metadata:cmd_metadata",
    "backfill": "orchestrator.cli.backfill:cmd_backfill",
}
# In the order "did you mean" lists them when nothing is close (`help` is added there).
NAMES = (*cli_extensions.COMMANDS, *BUILT_IN)


def command_function(name: str) -> Command:
    """The function that runs command ``name`` (one of ``NAMES``)."""
    module, _, function = {**cli_extensions.COMMANDS, **BUILT_IN}[name].partition(":")
    found: Command = getattr(importlib.import_module(module), function)
    return found
