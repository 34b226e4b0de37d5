"""Freshness and timeliness: a routine's ``expect:`` block, and the breaches the run store shows.

``every`` (+ ``within`` of grace): a successful run must have started that recently.
``max_duration``: the newest run must not take (or have been running) longer than that.
Each breach has a key naming the run it is about, so it is reported as new only once.
"""
from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable, Iterable

# Seconds per unit. No months or years: they have no fixed length, and a check must mean the same
# thing in February as in March.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhdw])$")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"1w"`` in seconds."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit: 90s, 30m, 2h, 1d, 1w"
        )
    return float(match.group(1)) * UNITS[match.group(2)]


def spoken(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0", "")
    return f"{seconds:.0f}s"


@dataclasses.dataclass(frozen=True)
class Expectation:
    every: float | None = None
    within: float = 0.0
    max_duration: float | None = None


@dataclasses.dataclass(frozen=True)
class Breach:
    kind: str  # stale (no recent success) or slow (a run took too long)
    key: str  # the same breach, seen again, has the same key
    text: str


def expectation(raw: Any, report: Callable[[str, str], None]) -> Expectation | None:
    """The ``expect:`` block the schema accepted (its durations already match the pattern)."""
    if not isinstance(raw, dict):
        return None
    try:
        values = {
            k: parse_duration(v) for k, v in raw.items() if k in ("every", "within", "max_duration")
        }
    except ValueError as exc:
        report("expect", str(exc))
        return None
    if "within" in values and "every" not in values:
        report("expect.within", "within is the grace after every; give every too")
    return Expectation(values.get("every"), values.get("within", 0.0), values.get("max_duration"))


def breaches(expect: Expectation, runs: Iterable[Any], now: float | None = None) -> list[Breach]:
    """What is late now, judged from a routine's recorded runs (any order)."""
    now = time.time() if now is None else now
    ordered = sorted(runs, key=lambda r: r.started, reverse=True)
    found = []
    if expect.every is not None:
        allowed = expect.every + expect.within
        # When the last success started, not ended: 'every' is the period of a schedule, and a
        # schedule sets start times.
        success = next((r for r in ordered if r.status == "succeeded"), None)
        if success is None:
            # A fixed key: "never succeeded" is one breach until the first success, announced once.
            found.append(Breach("stale", "stale:never", "no successful run is recorded; "
                                f"one is expected every {spoken(expect.every)}"))
        elif now - success.started > allowed:
            found.append(
                Breach(
                    "stale",
                    f"stale:{success.run_id}",
                    f"last successful run {success.run_id} "
                    f"started {spoken(now - success.started)} ago; "
                    f"expected every {spoken(expect.every)}"
                    + (f" (+{spoken(expect.within)} grace)" if expect.within else ""),
                )
            )
    if expect.max_duration is not None and ordered:
        # Only the newest run: an older slow run was judged while it was the newest.
        newest = ordered[0]
        # A run still going counts its time so far: a hung run is late before it ever ends.
        took = (newest.ended or now) - newest.started
        if took > expect.max_duration:
            verb = "has been running for" if newest.ended is None else "took"
            found.append(
                Breach(
                    "slow",
                    f"slow:{newest.run_id}",
                    f"run {newest.run_id} {verb} {spoken(took)}; "
                    f"at most {spoken(expect.max_duration)} is expected",
                )
            )
    return found
