"""Keep secret values out of what is printed or stored: log records, tracebacks, streamed text.

Masking works on text before it is encoded (JSON escapes a non-ASCII or quoted secret, and an
escaped secret no longer matches) and on whole lines (a secret written in two pieces matches
neither piece).
"""
from __future__ import annotations

import re
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Container

from .routine.substitution import mask

if TYPE_CHECKING:
    import logging

LINE_END = re.compile(r"[\r\n]")
MAX_PENDING = 8192  # an unended line this long is passed on, but for a secret's possible start
MAX_TRACEBACK = 32_768  # characters kept of one traceback: its end, the frames nearest the error
TRACEBACK_HEADER = "Traceback (most recent call last):"


# Not a ``logging.Filter`` subclass: a handler takes any object with a ``filter`` method, and this
# module is on every run's path, which does not import ``logging`` until something logs
# (orchestrator.lazy_logging).
class MaskSecrets:
    """Masks secrets in a record's message, traceback and stack before any handler formats it."""

    def __init__(self, secrets: frozenset[str] | set[str]) -> None:
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            # The message is formatted here and args dropped: a secret passed as an argument ('%s',
            # password) only appears once formatted, and a handler must not format it again from
            # the raw args.
            record.msg, record.args = mask(record.getMessage(), self.secrets), None
            if record.exc_info and not record.exc_text:
                import logging

                # Formatted here, once: handlers reuse ``exc_text`` instead of formatting it again.
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = mask(record.exc_text, self.secrets)
            if record.stack_info:
                record.stack_info = mask(record.stack_info, self.secrets)
        return True


class MaskedLines:
    """Buffers written text and hands on only whole lines (``\\n`` or ``\\r`` ended), masked.

    Each thread has its own unfinished line, so concurrent tasks do not mix theirs. A line that
    grows past :data:`MAX_PENDING` without ending is handed on except for its last characters, as
    many as the longest secret could still need to complete.
    """

    def __init__(self, secrets: set[str] | frozenset[str], sink: Callable[[str], None]) -> None:
        self.secrets, self.sink = set(secrets), sink
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()
        # The most characters of a secret that can stand at the end of a line cut short without the
        # secret being whole yet.
        self._keep = max((len(s) for s in self.secrets), default=1) - 1

    def write(self, text: str) -> None:
        thread = threading.get_ident()
        # Only the dict is shared; the masking and the sink run outside the lock, so one slow
        # writer does not hold up the other threads.
        with self._lock:
            buffered = self._pending.pop(thread, "") + text
        cut = _last_line_end(buffered)
        ready, rest = buffered[:cut], buffered[cut:]
        if len(rest) > MAX_PENDING:
            # Masked before it is split: a secret wholly inside is replaced first, so the cut
            # cannot fall in the middle of one; the kept tail may still hold the start of one.
            rest = mask(rest, self.secrets)
            split = len(rest) - self._keep
            ready, rest = ready + rest[:split], rest[split:]
        if rest:
            with self._lock:
                self._pending[thread] = rest
        if ready:
            self.sink(mask(ready, self.secrets))

    def close(self) -> None:
        """Hand on every thread's unfinished line."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for rest in pending:
            self.sink(mask(rest, self.secrets))


def _last_line_end(text: str) -> int:
    """Index just past the last ``\\n`` or ``\\r`` in ``text`` (0 if none)."""
    return max(text.rfind("\n"), text.rfind("\r")) + 1


def mask_shown(text: str, secrets: set[str] | frozenset[str], shown: int) -> str:
    """``text`` with secrets masked, also where a message showed only the first ``shown``
    characters of a secret's ``repr`` (a validation message quoting a wrong value)."""
    # A message that quotes a value cut short shows only the start of its repr; that start is
    # still the secret's.
    cut = {repr(s)[:shown] for s in secrets if len(repr(s)) > shown}
    return mask(mask(text, set(secrets)), cut)


def masked_traceback(exc: BaseException, secrets: set[str] | frozenset[str],
                     skip_files: Container[str] = ()) -> str:
    """The formatted traceback of ``exc``, secrets masked; leading frames of ``skip_files`` (the
    engine calling the task) are left out, and only the end of a huge traceback is kept."""
    import traceback  # only when something failed: start-up does not pay for it

    text = getattr(
        exc, "child_traceback", None
    )  # raised in a task's child process, formatted there
    if not isinstance(text, str):
        tb: TracebackType | None = exc.__traceback__
        # The engine's own frames lead every task traceback; dropping them keeps the task's code on
        # top. One frame is always kept, so a traceback is never empty.
        while (
            tb is not None
            and tb.tb_next is not None
            and tb.tb_frame.f_code.co_filename in skip_files
        ):
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > MAX_TRACEBACK:
        # The end is kept: the frames nearest the error and the message say what went wrong.
        text = "…\n" + text[-MAX_TRACEBACK:]
    return mask(text, set(secrets))


def last_frames(text: str | None, frames: int = 3) -> str | None:
    """A stored traceback with each of its exceptions (a chain has several) cut to the last
    ``frames`` frames: what ``--json`` shows."""
    if not text:
        return text
    kept: list[str] = []
    section: list[str] = []
    # A header appended at the end flushes the last section like any other.
    for line in [*text.rstrip("\n").split("\n"), TRACEBACK_HEADER]:
        if line == TRACEBACK_HEADER and section:
            starts = [i for i, entry in enumerate(section) if entry.startswith("  File ")]
            cut = len(starts) > frames
            kept += [*section[:starts[0]], "  …", *section[starts[-frames]:]] if cut else section
            section = []
        section.append(line)
    return "\n".join(kept)
