"""Executors registered inline by the unit tests (never through entry points)."""
from __future__ import annotations

import dataclasses
import threading
from typing import Annotated, Literal

from orchestrator import Context, Executor, Location, NotRetryable, TaskMetrics, hookimpl, task
from orchestrator.registry import Registry

CALLS: list[tuple[str, str, dict]] = []


class Greeter(Executor):
    """Greets; records every call in CALLS."""

    name = "greeter"

    def __init__(self, greeting: Annotated[str, "what to say"], times: int = 1, mode: Literal["loud", "soft"] = "soft",
                 folder: Location | None = None, api_token: str = "") -> None:
        self.greeting, self.times, self.mode, self.folder = greeting, times, mode, folder

    @task
    def say(self, who: str = "world", context: Context | None = None) -> TaskMetrics:
        CALLS.append(("say", who, {"run_id": context.run_id if context else None}))
        return TaskMetrics(total_rows=self.times)

    @task
    def count(self, n: int, path: Location = "data") -> TaskMetrics:
        CALLS.append(("count", str(n), {"path": path}))
        return TaskMetrics(inserts=n)

    def helper(self) -> None:
        """Not a task: a routine may not call it."""


@dataclasses.dataclass
class RichMetrics(TaskMetrics):
    files: int = 0


class Worker(Executor):
    """Knobs for engine tests: barriers, failures, waits, cancellation."""

    name = "worker"
    barrier: threading.Barrier | None = None
    active = 0
    peak = 0
    lock = threading.Lock()
    cancelled: list[str] = []
    attempts: dict[str, int] = {}

    def __init__(self, label: str = "w") -> None:
        self.label = label

    @task
    def meet(self) -> None:
        assert Worker.barrier is not None
        Worker.barrier.wait()

    @task
    def busy(self, seconds: float = 0.05, context: Context | None = None) -> None:
        with Worker.lock:
            Worker.active += 1
            Worker.peak = max(Worker.peak, Worker.active)
        try:
            context.wait(seconds)
        finally:
            with Worker.lock:
                Worker.active -= 1

    @task
    def flaky(self, fail_times: int = 1) -> RichMetrics:
        seen = Worker.attempts.get(self.label, 0) + 1
        Worker.attempts[self.label] = seen
        if seen <= fail_times:
            raise ConnectionError(f"transient failure {seen}")
        return RichMetrics(total_rows=1, files=seen)

    @task
    def fail(self) -> None:
        raise ValueError(f"{self.label} broke")

    @task
    def refuse(self) -> None:
        Worker.attempts[self.label] = Worker.attempts.get(self.label, 0) + 1
        raise NotRetryable("over budget")

    @task
    def wait_for_cancel(self, seconds: float = 30, context: Context | None = None) -> None:
        context.wait(seconds)
        context.check_cancelled()

    @task
    def ignore_cancel(self, seconds: float = 1.0) -> None:
        threading.Event().wait(seconds)

    def cancel(self) -> None:
        Worker.cancelled.append(self.label)

    @classmethod
    def reset(cls) -> None:
        cls.barrier, cls.active, cls.peak = None, 0, 0
        cls.cancelled, cls.attempts = [], {}


class Quitter(Executor):
    """Tasks that end in ways a task should not: the engine must still record a failure."""

    name = "quitter"

    @task
    def exit(self) -> None:
        raise SystemExit(3)

    @task
    def interrupt(self) -> None:
        raise KeyboardInterrupt


class InlinePlugin:
    @hookimpl
    def register_executors(self) -> list[type[Executor]]:
        return [Greeter, Worker, Quitter]


def inline_registry() -> Registry:
    registry = Registry(load_entrypoints=False)
    registry.register(InlinePlugin())
    return registry
