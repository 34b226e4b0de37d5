"""What a cancel must reach: the run's stop flags, every live executor, every running attempt.

``cancel()`` may come from any thread or a signal handler while steps start and tasks retry, so
the scheduler and the task runner register what is running here, under one lock.
"""
from __future__ import annotations

import threading
from typing import Any


class Cancellation:
    def __init__(self) -> None:
        self.cancelled = threading.Event()  # cancel() was called: everything stops
        self.stopping = threading.Event()  # nothing new starts (cancelled, or a task failed)
        self._lock = threading.Lock()
        self._instances: dict[str, Any] = {}  # step name -> its executor, while the step runs
        self._attempts: set[threading.Event] = set()  # the cancel event of each running attempt

    def cancel(self) -> None:
        """Ask every running task to stop and every executor to cancel its remote work."""
        self.cancelled.set()
        self.stopping.set()
        with self._lock:
            events, instances = list(self._attempts), list(self._instances.values())
        for instance in instances:
            quietly(instance.cancel)
        for event in events:
            event.set()

    def executor_started(self, step: str, instance: Any) -> None:
        with self._lock:
            self._instances[step] = instance

    def executor_ended(self, step: str) -> None:
        with self._lock:
            self._instances.pop(step, None)

    def attempt_started(self, own_event: bool) -> threading.Event:
        """The cancel event a task attempt watches. Only an attempt that may be stopped on its own
        (it has a timeout) gets an event of its own, registered here and set at once if the run
        is already cancelled; any other attempt watches the run's ``cancelled``, which is set at
        the same moments, at no cost per task."""
        if not own_event:
            return self.cancelled
        event = threading.Event()
        if self.cancelled.is_set():
            event.set()
        with self._lock:
            self._attempts.add(event)
        return event

    def attempt_ended(self, event: threading.Event) -> None:
        if event is not self.cancelled:
            with self._lock:
                self._attempts.discard(event)


def quietly(fn: Any) -> None:
    """Call ``fn`` ignoring its errors: a cancel or close that fails must not end the run."""
    try:
        fn()
    except Exception:
        pass
