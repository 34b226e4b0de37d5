"""Copy a container's stdout and stderr into the task's log as the lines are written.

Both streams come on one followed connection (Docker's multiplexed format: each frame says which
stream it belongs to) with Docker's timestamps, so every line has a position (nanoseconds since
the epoch). The last positions copied are handed to ``on_position`` (which saves them with the
container's record): a re-attached task starts after them, so a line is not lost, and at most
the lines of the last save interval are copied twice.

A followed stream ends when the container stops; one that breaks earlier (a daemon restart) is
opened again from the last position.
"""
from __future__ import annotations

import calendar
import collections
import logging
import struct
import threading
import time
from typing import Any, Callable, Iterator

STREAMS = ("stdout", "stderr")
# 0 would be stdin, which only an attach carries; an unknown kind is logged as stdout, not lost.
STREAM_OF_FRAME = {1: "stdout", 2: "stderr"}
# Docker's frame header: the stream's byte, three padding bytes, the payload's size (big-endian).
# The executor never asks for a TTY, so the stream always comes framed.
FRAME_HEADER = struct.Struct(">BxxxL")
STDERR_TAIL_LINES = 20
# Seconds between writes of the position to the record (a JSON file replaced whole): a chatty
# container would otherwise rewrite it for every line.
SAVE_INTERVAL = 0.25
# How long an exited container's remaining output may take to arrive before the task goes on
# without it: a stream the daemon never ends must not hold the task forever.
DRAIN_SECONDS = 10.0
EXIT_NOTICE_SECONDS = 1.0
"""How long a stream that ended waits to hear from the task thread that the container exited,
before asking the daemon whether it still runs (a stream can end just before ``wait`` returns)."""


def parse_timestamp(stamp: bytes) -> int:
    """Docker's RFC 3339 UTC timestamp (``2026-11-30T11:21:23.188765742Z``) in nanoseconds.

    Sliced, not ``time.strptime``: that loads locale machinery on first use and is slow per line."""
    text = stamp.decode("ascii")
    if len(text) < 20 or text[4] != "-" or text[10] != "T" or not text.endswith("Z"):
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    # timegm, not mktime: the stamp is UTC, and mktime would shift it by the local zone.
    seconds = calendar.timegm(tuple(int(field) for field in fields) + (0, 0, 0))
    fraction = text[20:-1] if text[19] == "." else ""
    if not fraction.isdigit() and fraction:
        raise ValueError(f"not a timestamp: {text[:40]!r}")
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def frames(raw: Any) -> Iterator[tuple[str, bytes]]:
    """``(stream name, payload)`` per frame: an 8-byte header (stream, size), then the payload."""
    while True:
        header = raw.read(FRAME_HEADER.size)
        if len(header) < FRAME_HEADER.size:
            return
        kind, length = FRAME_HEADER.unpack(header)
        # A short read: the stream ended mid-frame (container gone, connection cut). The partial
        # frame is dropped; the caller reopens from the last position if the container still runs.
        payload = raw.read(length) if length else b""
        if len(payload) < length:
            return
        yield STREAM_OF_FRAME.get(kind, "stdout"), payload


class LogPump:
    """A follower thread writing the container's output into ``logger`` until it stops."""

    def __init__(self, engine: Any, container_id: str,
                 logger: logging.Logger | logging.LoggerAdapter,
                 positions: dict[str, int] | None = None,
                 on_position: Callable[[dict[str, int]], None] | None = None) -> None:
        self.engine, self.container_id, self.logger = engine, container_id, logger
        self.positions = {name: int((positions or {}).get(name, 0)) for name in STREAMS}
        self.on_position = on_position
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.lines = 0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._saved_at = 0.0
        self._unsaved = False
        # _exited: the task thread is done waiting (exit or cancel). _stopped: end the follower now.
        self._exited = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True,
                                        name=f"logs-{container_id[:12]}")

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """The container has exited: wait for its stream to end, then save the position."""
        self._exited.set()
        self._thread.join(seconds)
        # Even when the join timed out: from here on the follower must not reopen the stream.
        self._stopped.set()
        if self._unsaved:
            self._save(force=True)

    def _follow(self) -> None:
        while not self._stopped.is_set():
            try:
                self._copy()
            except Exception as exc:  # a broken stream is opened again while the container runs
                self.logger.debug("container %s log stream broke (%s)", self.container_id[:12], exc)
                # The container has stopped: read once more from the last position for what the
                # break cut off, then end; while it runs, loop and reopen.
                if self._exited.is_set() or not self._running():
                    self._copy_rest()
                    return
            else:  # the daemon ends a followed stream when the container stops
                if self._exited.wait(EXIT_NOTICE_SECONDS) or not self._running():
                    return
            # A pause before reopening, so a restarting daemon is not hammered with requests.
            time.sleep(0.1)

    def _copy_rest(self) -> None:
        try:
            self._copy()
        except Exception as exc:
            self.logger.warning("container %s: the end of its output could not be read: %s",
                                self.container_id[:12], exc)

    def _copy(self) -> None:
        partial = {name: b"" for name in STREAMS}
        stream = self._open()
        try:
            for name, payload in frames(stream):
                # A frame may end mid-line: the unfinished tail waits for the stream's next frame,
                # and what is left when the stream ends is logged as it is.
                *lines, partial[name] = (partial[name] + payload).split(b"\n")
                for line in lines:
                    self._line(name, line)
        finally:
            stream.close()
        for name, rest in partial.items():
            if rest:
                self._line(name, rest)

    def _open(self) -> Any:
        """The followed logs request, from the earlier of the two streams' positions."""
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 1}
        # From the earlier of the two: the stream that is behind loses nothing; the other's lines
        # up to its position come again and _line drops them. The daemon's "since" includes lines
        # at exactly that time, which _line drops too.
        since = min(self.positions.values())
        if since:
            params["since"] = f"{since // 1_000_000_000}.{since % 1_000_000_000:09d}"
        return self.engine.logs(self.container_id, params)

    def _line(self, name: str, raw: bytes) -> None:
        stamp, _, body = raw.partition(b" ")
        position: int | None
        try:
            position = parse_timestamp(stamp)
        except ValueError:
            # No stamp, so no way to tell whether it was copied before: logged (a line twice
            # rather than none), and the position stays where the last stamped line left it.
            position, body = None, raw
        if position is not None and position <= self.positions[name]:
            return  # already copied before a reconnect or a re-attach
        # A program's bytes need not be UTF-8: replaced, never a failed task. "\r": CRLF line ends.
        text = body.decode("utf-8", "replace").rstrip("\r")
        if name == "stderr":
            self.stderr_tail.append(text)
            self.logger.info("stderr: %s", text)
        else:
            self.logger.info("%s", text)
        with self._lock:
            # After the line is logged, not before: a crash in between copies the line twice on
            # re-attach rather than losing it.
            if position is not None:
                self.positions[name] = position
            self.lines += 1
            self._unsaved = True
        self._save()

    def _save(self, force: bool = False) -> None:
        if self.on_position is None:
            return
        now = time.monotonic()
        # The follower saves per line, and drain from the task thread; the snapshot is taken under
        # this lock, so an older snapshot can never be written after a newer one.
        with self._save_lock:  # one writer at a time
            if not force and now - self._saved_at < SAVE_INTERVAL:
                return
            self._saved_at = now
            with self._lock:
                positions, self._unsaved = dict(self.positions), False
            try:
                self.on_position(positions)
            except (
                Exception
            ) as exc:  # a lost position means lines copied twice, never a failed task
                self.logger.debug("log position not saved: %s", exc)

    def _running(self) -> bool:
        try:
            # A container that cannot be inspected (removed, daemon away) counts as stopped: the
            # follower ends instead of reopening forever.
            return bool(self.engine.inspect(self.container_id)["State"]["Running"])
        except Exception:
            return False
