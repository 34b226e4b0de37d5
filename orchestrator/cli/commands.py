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
    "validate": "plan_cmd:cmd_validate",
    "plan": "plan_cmd:cmd_plan",
    "run": "run_cmd:cmd_run",
    "runs": "inspect_cmd:cmd_runs",
    "show": "inspect_cmd:cmd_show",
    "logs": "inspect_cmd:cmd_logs",
    "wait": "control_cmd:cmd_wait",
    "cancel": "control_cmd:cmd_cancel",
    "resume": "run_cmd:cmd_resume",
    "report": "report_cmd:cmd_report",
    "check": "check_cmd:cmd_check",
    "doctor": "executors_cmd:cmd_doctor",
    "plugins": "executors_cmd:cmd_plugins",
    "schema": "executors_cmd:cmd_schema",
    "metadata": "metadata:cmd_metadata",
    "backfill": "backfill:cmd_backfill",
}
# In the order "did you mean" lists them when nothing is close (`help` is added there).
NAMES = (*cli_extensions.COMMANDS, *BUILT_IN)


def command_function(name: str) -> Command:
    """The function that runs command ``name`` (one of ``NAMES``)."""
    if name in cli_extensions.COMMANDS:
        return cli_extensions.COMMANDS[name]
    module, _, function = BUILT_IN[name].partition(":")
    found: Command = getattr(importlib.import_module(f".{module}", __package__), function)
    return found
