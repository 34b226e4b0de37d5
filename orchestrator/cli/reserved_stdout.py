"""``--json`` promises one document on stdout, while tasks and their subprocesses print freely."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator


@contextlib.contextmanager
def stdout_reserved() -> Iterator[Any]:
    """For ``--json``: file descriptor 1 points at stderr (tasks, subprocesses,
    ``os.write(1, ...)``); the yielded stream is the real stdout, kept for the one JSON document."""
    # What Python buffered so far belongs to the real stdout: flushed before fd 1 is redirected.
    sys.stdout.flush()
    saved = os.dup(1)
    # At the descriptor, not by swapping sys.stdout: subprocesses and C extensions write to fd 1
    # directly and would otherwise end up in the middle of the JSON document.
    os.dup2(2, 1)
    # A descriptor of its own: closing this stream must not close saved, which restores fd 1.
    real = os.fdopen(os.dup(saved), "w")
    try:
        yield real
    finally:
        real.flush()
        real.close()
        # What tasks printed through sys.stdout meanwhile is flushed to stderr, before fd 1 is back.
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
