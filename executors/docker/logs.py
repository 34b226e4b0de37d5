"""Copy a container's stdout and stderr into the task's log as the lines are written.

Each stream is followed on its own connection with Docker's timestamps, so every line has a
position (nanoseconds since the epoch). The last position copied is handed to ``on_position``
(which saves it with the container's record): a re-attached task starts after it, so a line is
not lost, and at most the lines of the last save interval are copied twice.

A followed stream ends when the container stops; one that breaks earlier (a read timeout on a
quiet container, a daemon restart) is opened again from the last position.
"""
from __future__ import annotations

import calendar
import collections
import logging
import threading
import time
from typing import Any, Callable

STREAMS = ("stdout", "stderr")
STDERR_TAIL_LINES = 20
SAVE_INTERVAL = 0.25
DRAIN_SECONDS = 10.0


def parse_timestamp(stamp: bytes) -> int:
    """Docker's RFC 3339 timestamp (``2026-11-30T11:21:23.188765742Z``) in nanoseconds."""
    text = stamp.decode("ascii")
    whole, _, rest = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((rest + "000000000")[:9])


class LogPump:
    """Two follower threads (stdout, stderr) writing into ``logger`` until the container stops."""

    def __init__(self, api: Any, container_id: str, logger: logging.Logger | logging.LoggerAdapter,
                 positions: dict[str, int] | None = None,
                 on_position: Callable[[dict[str, int]], None] | None = None) -> None:
        self.api, self.container_id, self.logger = api, container_id, logger
        self.positions = {name: int((positions or {}).get(name, 0)) for name in STREAMS}
        self.on_position = on_position
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.lines = 0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saved_at = 0.0
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._follow, args=(name,), daemon=True,
                                          name=f"logs-{container_id[:12]}-{name}") for name in STREAMS]

    def start(self) -> LogPump:
        for thread in self._threads:
            thread.start()
        return self

    def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Wait for both streams to end (the container has stopped), then save the position."""
        end = time.monotonic() + seconds
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        self._stopped.set()
        self._save(force=True)

    def _follow(self, name: str) -> None:
        while not self._stopped.is_set():
            try:
                self._copy(name)
                ended = True  # the daemon closes a followed stream when the container stops
            except Exception as exc:  # a broken stream is opened again while the container runs
                self.logger.debug("container %s %s stream broke (%s); reopening", self.container_id[:12], name, exc)
                ended = False
            if ended and not self._running():
                return
            if not ended and not self._running():
                self._copy_rest(name)
                return
            time.sleep(0.1)

    def _copy_rest(self, name: str) -> None:
        try:
            self._copy(name)
        except Exception as exc:
            self.logger.warning("container %s: the end of its %s could not be read: %s",
                                self.container_id[:12], name, exc)

    def _copy(self, name: str) -> None:
        since = self.positions[name] / 1e9 if self.positions[name] else None
        stream = self.api.logs(self.container_id, stdout=name == "stdout", stderr=name == "stderr",
                               stream=True, follow=True, timestamps=True, since=since)
        partial = b""
        try:
            for chunk in stream:
                partial += chunk
                *lines, partial = partial.split(b"\n")
                for line in lines:
                    self._line(name, line)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if partial:
            self._line(name, partial)

    def _line(self, name: str, raw: bytes) -> None:
        stamp, _, body = raw.partition(b" ")
        try:
            position = parse_timestamp(stamp)
        except ValueError:
            position, body = self.positions[name], raw
        if position and position <= self.positions[name]:
            return  # already copied before a reconnect or a re-attach
        text = body.decode("utf-8", "replace").rstrip("\r")
        if name == "stderr":
            self.stderr_tail.append(text)
            self.logger.info("stderr: %s", text)
        else:
            self.logger.info("%s", text)
        with self._lock:
            self.positions[name] = position
            self.lines += 1
        self._save()

    def _save(self, force: bool = False) -> None:
        if self.on_position is None:
            return
        now = time.monotonic()
        with self._save_lock:  # one writer at a time: both streams save into the same record
            if not force and now - self._saved_at < SAVE_INTERVAL:
                return
            self._saved_at = now
            with self._lock:
                positions = dict(self.positions)
            try:
                self.on_position(positions)
            except Exception as exc:  # a lost position means lines copied twice, never a failed task
                self.logger.debug("log position not saved: %s", exc)

    def _running(self) -> bool:
        try:
            return bool(self.api.inspect_container(self.container_id)["State"]["Running"])
        except Exception:
            return False
