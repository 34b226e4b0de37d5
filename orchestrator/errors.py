"""The one boundary for mistakes a user can fix: each problem says what, where and how."""
from __future__ import annotations

from .records import FrozenRecord, frozen_record


@frozen_record
class Problem(FrozenRecord):
    """One thing wrong with a routine: the file, the JSON path in it, what to do. ``code`` names
    the kind of problem where a caller acts on it (``subject``: what it is about), so nobody has
    to parse the message."""

    file: str
    path: str
    message: str
    code: str = ""
    subject: str = ""

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.path}: {self.message}"
            if self.path
            else f"{self.file}: {self.message}"
        )


ENV_UNSET = "env-unset"  # ${env.X} names a variable that is not set; subject: its name


class UserError(Exception):
    """Bad input or usage: the CLI prints it in one line per problem and exits 2."""


class RoutineError(UserError):
    """A routine failed validation; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        # One problem per line: the CLI prints the message as it is, and a reader sees every
        # problem at once instead of fixing them one run at a time.
        super().__init__("\n".join(map(str, problems)))


class PluginError(UserError):
    """A plugin is broken or two plugins claim the same executor name."""


class EnvironmentProblem(UserError):
    """The machine, not the input: the orchestrator home or the run store cannot be used (not
    writable, full, damaged, locked, deleted). Exit 2 like bad input: something must be fixed
    before a run can be trusted to record itself, and a rerun as it is would fail the same way."""
