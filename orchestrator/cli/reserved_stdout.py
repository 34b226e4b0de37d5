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
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(os.dup(saved), "w")
    try:
        yield real
    finally:
        real.flush()
        real.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
