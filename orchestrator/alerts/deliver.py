"""Send one message to the targets that want its event: each with its retries and timeout.

A failing target never raises: its outcome is returned for the caller to record, masked.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Mapping

from .targets import NotifyTarget

Sender = Callable[[NotifyTarget, "Message"], None]
"""``send(target, message)``: deliver within ``target.timeout`` seconds or raise."""


@dataclasses.dataclass(frozen=True)
class Message:
    event: str  # failure, success or late
    routine: str
    text: str  # one line for people (Slack's "text", the email subject's detail)
    details: Mapping[str, Any]  # run id, status, failed tasks, the breach...

    def payload(self) -> dict[str, Any]:
        """Slack-compatible JSON: ``text`` is what Slack shows; the rest is for machines."""
        # Slack's incoming webhooks read "text" and ignore other keys, so one body serves Slack and
        # any receiver that wants the fields.
        return {"text": self.text, "event": self.event, "routine": self.routine, **self.details}


@dataclasses.dataclass(frozen=True)
class Outcome:
    target: str
    ok: bool
    attempts: int
    error: str | None = None


def deliver(
    targets: Iterable[NotifyTarget],
    message: Message,
    senders: Mapping[str, Sender],
    mask: Callable[[str], str] = str,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Each target that wants ``message.event``, tried ``1 + retries`` times; never raises."""
    outcomes = []
    for target in targets:
        if message.event in target.when:
            outcomes.append(_attempt(target, message, senders.get(target.kind), mask, sleep))
    return outcomes


def _attempt(
    target: NotifyTarget,
    message: Message,
    send: Sender | None,
    mask: Callable[[str], str],
    sleep: Callable[[float], None],
) -> Outcome:
    if send is None:
        return Outcome(
            target.label, False, 0, f"no installed plugin sends {target.kind} notifications"
        )
    error = ""
    # Targets are tried one after another, each to its end: the run's exit waits for them, bounded
    # by each target's retries, delays and timeout (the senders pass the timeout on).
    for attempt in range(1, target.retries + 2):
        try:
            send(target, message)
            return Outcome(target.label, True, attempt)
        except Exception as exc:  # any failure of a notifier is an outcome, never the run's failure
            # Masked before it is kept: an error may quote a secret (a webhook's URL, an SMTP
            # password).
            error = mask(f"{type(exc).__name__}: {exc}")
        if attempt <= target.retries:
            # Doubling waits (1 s, 2 s, 4 s by default); none after the last attempt.
            sleep(target.retry_delay * 2 ** (attempt - 1))
    return Outcome(target.label, False, target.retries + 1, error)
