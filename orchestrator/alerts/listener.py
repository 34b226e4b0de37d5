"""The listener that tells a routine's ``notify:`` targets how a run ended, and records the outcome.

It runs after the run store has the final status, so a slow or broken target delays the exit by
at most its retries times its timeout, and never changes the run's status or exit code.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from ..events import FAILED, SUCCEEDED, Listener, RunResult
from ..outcome import Status
from ..runs.store import LogRecord, RunStore
from .deliver import Message, Outcome, Sender, deliver

# No entry for cancelled: a cancelled run alerts no one (README, "Alerts and lateness").
EVENT_OF: dict[str, str] = {SUCCEEDED: "success", FAILED: "failure", Status.DEAD: "failure"}


class Notifier(Listener):
    def __init__(self, routine: Any, store: RunStore | None = None,
                 senders: Callable[[], Mapping[str, Sender]] | None = None) -> None:
        self.routine, self.store = routine, store
        self.senders = senders
        self.outcomes: list[Outcome] = []

    def run_finished(self, result: RunResult) -> None:
        event = EVENT_OF.get(result.status)
        # Nobody asked for this event: return before the senders (and plugins) are even loaded.
        if event is None or not any(event in t.when for t in self.routine.notify):
            return
        message = run_message(event, result)
        self.outcomes = deliver(self.routine.notify, message, self._senders(), self._mask)
        if self.store is not None:
            self.store.append_logs([outcome_log(result.run_id, o) for o in self.outcomes])

    def _senders(self) -> Mapping[str, Sender]:
        if self.senders is not None:
            return self.senders()
        # Imported when a message is due: smtplib and the plugin registry cost nothing to a run
        # that sends none.
        from .senders import all_senders

        return all_senders()

    def _mask(self, text: str) -> str:
        # The routine's masking covers the targets' own secrets too (NotifyTarget.secrets): a
        # webhook URL in an error is masked like a password.
        masked: str = self.routine.masked(text)
        return masked


def run_message(event: str, result: RunResult) -> Message:
    failed = [t for t in result.tasks if t.status == FAILED]
    took = f"{result.ended - result.started:.1f}s"
    text = f"{result.routine} {result.status} (run {result.run_id}, {took})"
    if failed:
        first = failed[0]
        text += f": {first.step}.{first.task} {first.error_type}: {first.error}"
    details = {
        "run_id": result.run_id,
        "status": str(result.status),
        "duration": round(result.ended - result.started, 3),
        "failed_tasks": [
            {"step": t.step, "task": t.task, "error_type": t.error_type, "error": t.error}
            for t in failed
        ],
    }
    return Message(event, result.routine, text, details)


def outcome_log(run_id: str, outcome: Outcome) -> LogRecord:
    """How a notification is recorded: a line in the run's log (``orchestrate logs``)."""
    if outcome.ok:
        return LogRecord(run_id, time.time(), "NOTIFY", None, None,
                         f"notified {outcome.target} (attempt {outcome.attempts})")
    return LogRecord(
        run_id,
        time.time(),
        "ERROR",
        None,
        None,
        f"notification to {outcome.target} failed after {outcome.attempts} attempt(s): "
        f"{outcome.error}",
    )
