"""``orchestrate check``: a routine's breaches of its ``expect:`` block, and the ``late`` alert,
sent once per breach.

What was last announced is kept in the run store's watermarks, under the pseudo-step
``__check__``, so checks from cron, Lambda or several hosts agree. A breach whose alert could
not reach every target is tried again at the next check.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

from ..freshness import Breach, breaches
from ..runs.store import RunStore
from .deliver import Message, Outcome, Sender, deliver

# Not a step name a routine can have: its watermarks never mix with a real step's.
STATE_STEP = "__check__"
HISTORY = 200  # runs looked at per routine: enough to find the last success of a busy routine


@dataclasses.dataclass
class Lateness:
    routine: str
    breaches: list[Breach]
    notified: list[Outcome]

    def to_dict(self) -> dict[str, Any]:
        return {"routine": self.routine, "late": bool(self.breaches),
                "breaches": [dataclasses.asdict(b) for b in self.breaches],
                "notified": [dataclasses.asdict(o) for o in self.notified]}


def check_routine(store: RunStore, routine: Any, senders: Callable[[], Mapping[str, Sender]],
                  now: float | None = None) -> Lateness:
    """The routine's breaches now; a ``late`` alert for each one not announced before."""
    now = time.time() if now is None else now
    found = (
        breaches(routine.expect, store.list_runs(routine.name, limit=HISTORY), now)
        if routine.expect
        else []
    )
    outcomes: list[Outcome] = []
    for breach in found:
        # One watermark per kind of breach: the key says which breach was announced last, so a new
        # breach of the same kind (after a success ended the old one) is announced again.
        if store.get_watermark(routine.name, STATE_STEP, breach.kind) == breach.key:
            continue  # announced already: once per breach
        message = Message("late", routine.name, f"{routine.name} is late: {breach.text}",
                          {"breach": breach.kind, "detail": breach.text})
        sent = deliver(routine.notify, message, senders(), routine.masked) if routine.notify else []
        outcomes.extend(sent)
        # Marked announced only when every target got it: otherwise the next check tries again, and
        # the targets that already had it hear it twice rather than one target never.
        if all(o.ok for o in sent):
            store.set_watermark(routine.name, STATE_STEP, breach.kind, breach.key, breach.key)
    return Lateness(routine.name, found, outcomes)
