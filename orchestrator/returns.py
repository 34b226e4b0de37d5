"""What a task returned, as the run keeps it: metrics, or else a result value.

A task's return value that is metrics (see :meth:`TaskMetrics.from_value`) becomes its metrics;
any other value is kept as the task's ``result``: what later steps may read as the task's output,
so it is kept as JSON wherever it can be. A value JSON cannot hold is kept as its ``repr``; a big
one is cut; secrets are masked in both, because the result reaches output, logs and the store.
"""
from __future__ import annotations

import json
from typing import Any

from .routine.substitution import mask, mask_values

MAX_RESULT_CHARS = 65_536  # of a result's JSON text: the run store is not a place for data
SHORT_RESULT_CHARS = 60  # of the one-line form on a task's line


def kept_result(value: Any, secrets: set[str] | frozenset[str] = frozenset()) -> Any:
    """``value`` as a task's result: a JSON value (strings masked), or a masked text when it is
    not JSON (its ``repr``) or too big (its JSON text, cut). None for None."""
    if value is None:
        return None
    try:
        # Through JSON and back: tuples become lists and keys strings now, so the result a later
        # step reads in this run equals what the store gives back later. allow_nan=False: NaN is no
        # JSON, and a strict reader of the store or of --json output would refuse it.
        text = json.dumps(value, allow_nan=False)
        kept: Any = json.loads(text)
    except (TypeError, ValueError, RecursionError):  # a set, an object, NaN, a cycle
        kept = _repr(value)
    if isinstance(kept, str):
        text = kept  # a text is cut as itself, so that keeping a kept result changes nothing
    if len(text) > MAX_RESULT_CHARS:
        note = f"… (cut: {len(text)} characters)"
        kept = text[:MAX_RESULT_CHARS - len(note)] + note
    return _masked(kept, set(secrets))


def result_text(result: Any, width: int = SHORT_RESULT_CHARS) -> str:
    """A kept result on one line, cut to ``width`` characters: what a task's line shows."""
    if result is None:
        return ""
    text = json.dumps(result, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not fail a task that succeeded
        return f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"


def _masked(value: Any, secrets: set[str], key: str = "") -> Any:
    """Secrets masked in strings and dict keys, and values under secret-looking keys hidden."""
    if isinstance(value, dict):
        # Keys too: a dict keyed by values (a host, a user) can carry a secret in a key.
        return {mask(k, secrets): _masked(v, secrets, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets, key) for v in value]
    return mask_values(value, secrets, key)
