"""Waiting for files to land: poll a folder or S3 prefix until enough matching files are there
and have stopped changing.

A file still being written is not taken: its size and version (locally size, mtime, ctime and
inode; on S3 the ETag) must read the same on polls at least ``stable_for`` seconds apart. Polls
follow the AWS waits' :class:`Backoff` (0.2 s, then a fifth of the time waited so far, capped),
but never sleep past the moment the next file would count as stable, nor past the timeout, and
wake at once when the run is cancelled.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable

from orchestrator import Cancelled, Context, TaskMetrics

from ..aws.polling import DEFAULT_BACKOFF, Backoff
from .locations import matches
from .storage import Entry, Store

MAX_LISTED = 1000
"""At most this many file names go into the metrics (the count is always exact)."""


class FilesNotReady(Exception):
    """The timeout passed before enough matching files were there and stable."""


@dataclasses.dataclass(frozen=True)
class _Seen:
    entry: Entry
    since: float  # when this exact version was first listed (monotonic clock)


class Watch:
    """What each poll listed, and since when each file has read the same."""

    def __init__(self, stable_for: float) -> None:
        self.stable_for = stable_for
        self._seen: dict[str, _Seen] = {}

    def update(self, entries: Iterable[Entry], now: float) -> None:
        seen = {}
        for entry in entries:
            before = self._seen.get(entry.rel)
            seen[entry.rel] = (
                before if before is not None and before.entry == entry else _Seen(entry, now)
            )
        # Rebuilt from each listing rather than updated: memory follows the files there now, and a
        # file that comes back later starts its stable time again.
        self._seen = seen  # a file gone since the last poll is forgotten

    @property
    def matched(self) -> int:
        return len(self._seen)

    def stable(self, now: float) -> list[Entry]:
        return sorted((s.entry for s in self._seen.values() if now - s.since >= self.stable_for),
                      key=lambda entry: entry.rel)

    def next_stable_in(self, now: float) -> float | None:
        """Seconds until the next file not yet stable would be, if it does not change meanwhile."""
        waits = [s.since + self.stable_for - now for s in self._seen.values()
                 if now - s.since < self.stable_for]
        return min(waits) if waits else None


def wait_for_files(store: Store, pattern: str, *, min_files: int, timeout: float, stable_for: float,
                   context: Context, check_cancelled: Callable[[], None],
                   backoff: Backoff = DEFAULT_BACKOFF) -> TaskMetrics:
    """Wait until ``min_files`` files under ``store`` match ``pattern`` and are stable; their
    metrics. Raises :class:`FilesNotReady` at ``timeout``, ``Cancelled`` when the run stops."""
    start = time.monotonic()
    deadline = start + timeout
    watch = Watch(stable_for)
    polls = 0
    while True:
        check_cancelled()
        # A local folder that does not exist yet may still be made by whoever delivers the files.
        listed = store.list() if store.exists() else ()
        now = time.monotonic()
        watch.update((e for e in listed if matches(e.rel, pattern)), now)
        polls += 1
        ready = watch.stable(now)
        if len(ready) >= min_files:
            return _metrics(store, ready, polls, now - start)
        if now >= deadline:
            raise FilesNotReady(
                f"timed out after {timeout:g}s waiting for {min_files} file(s) matching "
                f"{pattern!r} in {store.uri}: {watch.matched} matched, {len(ready)} stable "
                f"(unchanged for {stable_for:g}s)")
        delay = backoff.delay(now - start)
        soon = watch.next_stable_in(now)
        if soon is not None:
            delay = min(delay, max(soon, backoff.first))
        if context.wait(max(0.0, min(delay, deadline - now))):
            raise Cancelled(f"{context.step}.{context.task} cancelled while waiting for files")


def _metrics(store: Store, ready: list[Entry], polls: int, waited: float) -> TaskMetrics:
    metadata: dict[str, Any] = {
        "location": store.uri, "files": [e.rel for e in ready[:MAX_LISTED]],
        "bytes": sum(e.size for e in ready), "polls": polls, "waited_s": round(waited, 3)}
    if len(ready) > MAX_LISTED:
        metadata["files_listed"] = MAX_LISTED
    return TaskMetrics(total_rows=len(ready), execution_metadata=metadata)
