"""Ctrl-C and SIGTERM during a run: cancel cleanly first, exit at once the second time."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

from ..outcome import ExitCode

CANCEL_JOIN_SECONDS = 30.0


@contextlib.contextmanager
def cancel_on_signals(run: Any) -> Iterator[None]:
    """First Ctrl-C or SIGTERM cancels the run cleanly; a second one exits at once."""
    # The C module under ``signal``: the same functions, without the enums ``signal`` makes of
    # every signal number at import (about 3.4 M instructions, ~0.8 ms, of each run's start-up).
    # Handlers come back as plain ints or functions, which is all the restore below needs.
    if TYPE_CHECKING:  # typeshed describes ``signal`` only
        import signal
    else:
        try:
            import _signal as signal
        except ImportError:  # an interpreter without it
            import signal

    cancellers: list[threading.Thread] = []

    def handler(signum: int, frame: Any) -> None:
        if cancellers:
            getattr(run, "save_records", lambda: None)()  # what batching holds back is not lost
            # The user asked to force: no finally blocks, no atexit, no waiting on threads that may
            # hang.
            os._exit(ExitCode.INTERRUPTED)
        print("\ncancelling: asking running tasks to stop (again to force)", file=sys.stderr)
        # Cancel in a thread: stopping remote work (a query, a job run) can take seconds, and the
        # handler must return so the main thread keeps running the engine, which sees the tasks end.
        cancellers.append(threading.Thread(target=run.cancel, name="cancel", daemon=True))
        cancellers[0].start()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        # The run has returned; give the canceller time to finish stopping remote work, bounded, so
        # a hung cancel cannot keep the process from exiting.
        for thread in cancellers:
            thread.join(CANCEL_JOIN_SECONDS)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
