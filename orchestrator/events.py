"""What the engine tells its listeners, and what a run produces.

Console output, JSON output and the run store are all listeners; the engine knows none by name.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .records import FrozenRecord, Record, frozen_record
from .executor import TaskMetrics
from .masking import last_frames
from .outcome import Status

SUCCEEDED, FAILED, CANCELLED, SKIPPED = (
    Status.SUCCEEDED,
    Status.FAILED,
    Status.CANCELLED,
    Status.SKIPPED,
)


@dataclasses.dataclass(init=False, repr=False, eq=False)
class TaskResult(Record):
    """One task of a run as listeners see it: updated in place from start to end."""

    step: str
    executor: str
    task: str
    index: int
    step_index: int = 0
    status: str = SKIPPED
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    metrics: TaskMetrics | None = None
    error: str | None = None
    error_type: str | None = None
    reason: str | None = None
    next_watermark: Any = None
    watermark: Any = None  # what the task was given
    traceback: str | None = None  # of the failed attempt, secrets masked
    result: Any = None  # the task's return value when it is not metrics (JSON, masked; returns.py)
    args: Any = None  # its args once ${steps...} were resolved (masked); None when it has none

    # Written out, not generated: see records.FACTORY.
    def __init__(self, step: str, executor: str, task: str, index: int, step_index: int = 0,
                 status: str = SKIPPED, attempts: int = 0, started: float | None = None,
                 ended: float | None = None, metrics: TaskMetrics | None = None,
                 error: str | None = None, error_type: str | None = None,
                 reason: str | None = None, next_watermark: Any = None, watermark: Any = None,
                 traceback: str | None = None, result: Any = None, args: Any = None) -> None:
        self.step = step
        self.executor = executor
        self.task = task
        self.index = index
        self.step_index = step_index
        self.status = status
        self.attempts = attempts
        self.started = started
        self.ended = ended
        self.metrics = metrics
        self.error = error
        self.error_type = error_type
        self.reason = reason
        self.next_watermark = next_watermark
        self.watermark = watermark
        self.traceback = traceback
        self.result = result
        self.args = args

    @property
    def duration(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "executor": self.executor,
            "task": self.task,
            "status": self.status,
            "attempts": self.attempts,
            "duration": None if self.duration is None else round(self.duration, 6),
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "result": self.result,
            "args": self.args,
            "error": self.error,
            "error_type": self.error_type,
            "reason": self.reason,
            "traceback": last_frames(self.traceback),
        }


@dataclasses.dataclass(init=False, repr=False, eq=False)
class RunResult(Record):
    """How a run ended, with every task's result (what the CLI and the API return)."""

    run_id: str
    routine: str
    status: str
    started: float
    ended: float
    tasks: list[TaskResult]

    # Written out, not generated: see records.FACTORY.
    def __init__(self, run_id: str, routine: str, status: str, started: float, ended: float,
                 tasks: list[TaskResult]) -> None:
        self.run_id = run_id
        self.routine = routine
        self.status = status
        self.started = started
        self.ended = ended
        self.tasks = tasks

    @property
    def exit_code(self) -> int:
        return Status(self.status).exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "routine": self.routine,
            "status": self.status,
            "duration": round(self.ended - self.started, 6),
            "tasks": [t.to_dict() for t in self.tasks],
        }


@frozen_record
class RunInfo(FrozenRecord):
    """What listeners learn when a run starts."""

    run_id: str
    routine: str
    total_tasks: int


class Listener:
    """Base listener: override the events you care about. Calls may come from worker threads."""

    def run_started(self, run: RunInfo) -> None: ...

    def task_started(self, result: TaskResult) -> None: ...

    def task_retrying(self, result: TaskResult, delay: float) -> None: ...

    def task_finished(self, result: TaskResult) -> None:
        """A task ended: succeeded, failed, cancelled or skipped (see ``result.status``)."""

    def run_finished(self, result: RunResult) -> None: ...
