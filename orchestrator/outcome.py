"""Outcomes as data: the one status type for tasks and runs, and the one table of exit codes.

Every module that says "succeeded" or returns an exit code takes it from here, so the CLI, the
Lambda adapter, ``wait`` and the run store cannot disagree about what an outcome means.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What ``orchestrate`` returns; documented in the README and in ``orchestrate --help``."""

    OK = 0
    FAILED = 1  # a task failed (or a check found a problem)
    USAGE = 2  # bad input, bad usage or a bad environment: nothing was done
    WAIT_TIMEOUT = 3  # `orchestrate wait --timeout` gave up; the run is still going
    # 128 + SIGINT (2): what a shell reports for a command ended by Ctrl-C, whatever stopped it
    # here.
    INTERRUPTED = 130  # cancelled: Ctrl-C, SIGTERM, `orchestrate cancel`, a deadline


class Status(enum.StrEnum):
    """A task's or a run's status. A ``StrEnum``, so stored and printed as its plain value."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    DEAD = "dead"  # its process died without recording an end (found by liveness checks)

    @property
    def terminal(self) -> bool:
        return self is not Status.RUNNING

    @property
    def exit_code(self) -> ExitCode:
        """Skipped counts as success: nothing failed (an inactive routine, say)."""
        # Anything not listed exits 1: failed, and dead too, since a run whose process died did not
        # finish its work.
        return _EXIT.get(self, ExitCode.FAILED)


_EXIT = {
    Status.SUCCEEDED: ExitCode.OK,
    Status.SKIPPED: ExitCode.OK,
    Status.CANCELLED: ExitCode.INTERRUPTED,
}
TERMINAL = tuple(s for s in Status if s.terminal)


def exit_code(status: str) -> ExitCode:
    """The exit code for a status read back from a store (a plain string there)."""
    return Status(status).exit_code
