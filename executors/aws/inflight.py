"""Remote work in progress, so that ``Executor.cancel()`` (from another thread) can stop it.

:class:`RemoteOps` says how to describe and stop one kind of remote work; :class:`InFlight` holds
what one executor instance has running. The task itself then confirms the stop and raises
``Cancelled``.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable


@dataclasses.dataclass
class RemoteOps:
    """How to describe and stop one kind of remote work; used by :class:`~.work.RemoteWork`."""

    engine: str
    what: str
    describe: Callable[[str], dict[str, Any]]
    state_of: Callable[[dict[str, Any]], str | None]
    reason_of: Callable[[dict[str, Any]], str | None]
    stop: Callable[[str], None]
    long_poll: float = 0.0


class InFlight:
    """Remote work in progress for one executor instance, so ``cancel()`` can stop it from
    another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by engine as well: ids are only unique within one engine (a crawler's id is its
        # name).
        self._items: dict[tuple[str, str], RemoteOps] = {}
        self._stopped: set[tuple[str, str]] = set()

    def add(self, ops: RemoteOps, remote_id: str) -> None:
        with self._lock:
            self._items[(ops.engine, remote_id)] = ops

    def discard(self, ops: RemoteOps, remote_id: str) -> None:
        with self._lock:
            self._items.pop((ops.engine, remote_id), None)

    def stop(self, ops: RemoteOps, remote_id: str) -> None:
        """Ask the engine to stop ``remote_id`` once; later calls are no-ops."""
        key = (ops.engine, remote_id)
        with self._lock:
            if key in self._stopped:
                return
            # Marked before the call: cancel() and the task's own stop-and-confirm both get here,
            # and a second stop is an error on some engines (Redshift refuses to cancel an ABORTED
            # statement, Glue a crawler already STOPPING).
            self._stopped.add(key)
        try:
            # Outside the lock: a slow or retried stop call must not hold up stopping other work.
            ops.stop(remote_id)
        except Exception:
            with self._lock:
                # The stop was not delivered (throttled, no answer): let the next cancel or the
                # confirm loop try again.
                self._stopped.discard(key)
            raise

    def was_stopped(self, ops: RemoteOps, remote_id: str) -> bool:
        """Whether ``stop`` was asked for ``remote_id`` (by ``cancel()`` or the task itself)."""
        with self._lock:
            return (ops.engine, remote_id) in self._stopped

    def stop_all(self) -> list[str]:
        """Stop everything in flight; return errors instead of raising (from ``cancel()``)."""
        with self._lock:
            # A snapshot: task threads discard finished work while we are stopping the rest.
            items = list(self._items.items())
        errors = []
        for (engine, remote_id), ops in items:
            try:
                self.stop(ops, remote_id)
            except Exception as exc:
                # One failed stop must not leave the others running.
                errors.append(f"{engine} {remote_id}: {exc}")
        return errors
