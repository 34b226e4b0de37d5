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
        if done(value):
            return value
        if context is not None and context.cancelled:
            raise Cancelled("cancelled while waiting")
        now = time.monotonic()
        if long_poll and now - called >= 0.8 * long_poll:
            continue
        delay = backoff.delay(now - start)
        if deadline is not None:
            if now >= deadline:
                raise TimeoutError(f"still not done after {now - start:.1f}s")
            delay = min(delay, deadline - now)
        if _sleep(context, delay):
            raise Cancelled("cancelled while waiting")


def _sleep(context: Context | None, seconds: float) -> bool:
    if context is None:
        time.sleep(seconds)
        return False
    return context.wait(seconds)
