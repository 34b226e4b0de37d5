"""Waiting for remote work: polls that grow with the time waited, bounded, and cancellable.

:class:`Backoff` polls at 0.2 s, then at a fifth of the elapsed time (so a finished job is seen
within ~20 % of its run time), with jitter, capped; :func:`wait_for` bounds it by a deadline and
wakes up at once on cancellation.
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, TypeVar

from orchestrator.executor import Cancelled, Context

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Poll delays: ``first`` at the start, then ``ratio`` × elapsed time, jittered, at most
    ``cap``.

    Detection lag stays proportional to the run time (a 2 s query is seen within ~0.4 s of
    finishing) while the number of calls grows only logarithmically until the cap.
    """

    first: float = 0.2
    ratio: float = 0.2
    cap: float = 30.0
    jitter: float = 0.1

    def delay(self, elapsed: float, rng: random.Random | None = None) -> float:
        base = min(self.cap, max(self.first, self.ratio * elapsed))
        # ±10 % jitter keeps parallel steps that started together from polling the same API in
        # lockstep (and tripping its rate limit together); tests pass a seeded rng to pin the
        # values.
        return base * (1 + self.jitter * (2 * (rng or random).random() - 1))


DEFAULT_BACKOFF = Backoff()


def wait_for(poll: Callable[[], T], done: Callable[[T], bool], context: Context | None, *,
             backoff: Backoff = DEFAULT_BACKOFF, deadline: float | None = None,
             long_poll: float = 0.0) -> T:
    """Call ``poll`` until ``done``; raise ``Cancelled`` when the run is cancelled,
    ``TimeoutError`` at ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value. With ``long_poll`` > 0 the remote side may hold
    the call open that long: when a call took most of it, the next one follows at once.
    """
    start = time.monotonic()
    while True:
        called = time.monotonic()
        value = poll()
        # Checked before the cancel flag: work that ended while a cancel arrived is reported with
        # its real end, not stopped after the fact.
        if done(value):
            return value
        if context is not None and context.cancelled:
            raise Cancelled("cancelled while waiting")
        now = time.monotonic()
        # The server held this call for (most of) its wait window, so the work was still running for
        # that whole time; sleeping on top would only add detection lag. 0.8 allows for a server
        # that returns a little before its window.
        if long_poll and now - called >= 0.8 * long_poll:
            continue
        delay = backoff.delay(now - start)
        if deadline is not None:
            # The deadline is checked after a poll, so the last answer before it is never thrown
            # away.
            if now >= deadline:
                raise TimeoutError(f"still not done after {now - start:.1f}s")
            # Otherwise a capped 30 s sleep could overshoot a task's timeout by that much.
            delay = min(delay, deadline - now)
        if _sleep(context, delay):
            raise Cancelled("cancelled while waiting")


def _sleep(context: Context | None, seconds: float) -> bool:
    if context is None:
        time.sleep(seconds)
        return False
    # An event wait, not time.sleep: cancel() from another thread wakes it at once.
    return context.wait(seconds)
