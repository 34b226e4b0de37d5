"""Lambda's output: one JSON line per event on stdout, as CloudWatch expects; what tasks print or
log is wrapped into such lines too, secrets masked."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
import threading
from typing import Any, TextIO

from ..events import CANCELLED, FAILED, SKIPPED, SUCCEEDED, Listener, RunInfo, RunResult, TaskResult
from ..executor import current_context
from ..masking import MaskedLines, MaskSecrets, last_frames
from ..routine.substitution import mask_values

_LEVELS: dict[str, str] = {FAILED: "ERROR", CANCELLED: "WARNING"}


def _now() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class JsonLinesRenderer(Listener):
    """One JSON object per line on stdout, as CloudWatch Logs Insights reads them;
    secrets masked."""

    FIELDS = (
        "ts",
        "level",
        "event",
        "run_id",
        "routine",
        "step",
        "task",
        "status",
        "attempt",
        "duration",
        "error",
    )

    def __init__(
        self,
        run_id: str,
        routine: str,
        secrets: frozenset[str] = frozenset(),
        stream: TextIO | None = None,
        request_id: str | None = None,
    ) -> None:
        self.run_id, self.routine, self.secrets, self.request_id = (
            run_id,
            routine,
            set(secrets),
            request_id,
        )
        # Bound now, before Output replaces sys.stdout with a _JsonOutput that writes through this
        # renderer: looked up at emit time, it would feed each line back into itself.
        self.stream = stream or sys.stdout
        # Tasks run in parallel threads; one write and flush per line under the lock keeps their
        # lines from interleaving mid-line.
        self._lock = threading.Lock()

    def emit(self, event: str, level: str = "INFO", **fields: Any) -> None:
        # Every line carries every field (null where it does not apply), in the same order, so a
        # Logs Insights query or a parser can rely on one shape whatever the event.
        line: dict[str, Any] = {name: None for name in self.FIELDS}
        line.update(
            ts=_now(), level=level, event=event, run_id=self.run_id, routine=self.routine, **fields
        )
        if self.request_id:
            line["request_id"] = self.request_id
        text = json.dumps(masked(line, self.secrets))
        with self._lock:
            self.stream.write(text + "\n")
            # Lambda's stdout is a pipe, which Python buffers: flushing each line gets it to
            # CloudWatch even if the sandbox is frozen or killed right after.
            self.stream.flush()

    def _task(self, event: str, result: TaskResult, level: str = "INFO", **fields: Any) -> None:
        self.emit(
            event, level, step=result.step, task=result.task, attempt=result.attempts, **fields
        )

    def run_started(self, run: RunInfo) -> None:
        self.emit("run_started", status="running", tasks=run.total_tasks)

    def task_started(self, result: TaskResult) -> None:
        self._task("task_started", result, status="running")

    def task_retrying(self, result: TaskResult, delay: float) -> None:
        self._task("task_retrying", result, "WARNING", status="retrying", error=result.error,
                   delay=delay, **_traceback(result))

    def task_finished(self, result: TaskResult) -> None:
        level = _LEVELS.get(result.status, "INFO")
        self._task(
            "task_finished",
            result,
            level,
            status=result.status,
            duration=_round(result.duration),
            error=result.error,
            reason=result.reason,
            **_traceback(result),
        )

    def run_finished(self, result: RunResult) -> None:
        level = "INFO" if result.status in (SUCCEEDED, SKIPPED) else "ERROR"
        self.emit(
            "run_finished",
            level,
            status=result.status,
            duration=_round(result.ended - result.started),
        )


def masked(value: Any, secrets: set[str] | frozenset[str]) -> Any:
    """``value`` as plain JSON data with secrets masked, ready to encode: masking the encoded text
    would miss a secret that JSON escapes (non-ASCII, quotes, backslashes)."""
    # The round trip also turns what json cannot encode (datetimes, paths) into strings first, so
    # the masking sees every value as the line will show it.
    return mask_values(json.loads(json.dumps(value, default=str)), set(secrets))


def _traceback(result: TaskResult) -> dict[str, Any]:
    """A failed attempt's last frames, as a field of its line."""
    return {"traceback": last_frames(result.traceback)} if result.traceback else {}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _JsonOutput(io.TextIOBase):
    """Stands in for stdout/stderr during a run: what tasks print becomes masked ``output`` lines.

    Only whole lines are emitted, also on ``flush()``: a secret flushed in two pieces would
    otherwise become two lines that each hold half of it.
    """

    def __init__(self, renderer: JsonLinesRenderer, level: str) -> None:
        self.renderer, self.level = renderer, level
        self._lines = MaskedLines(renderer.secrets, self._emit)

    def write(self, text: str) -> int:
        self._lines.write(text)
        return len(text)

    def _emit(self, text: str) -> None:
        # The task context of the thread that printed, so each line names its step and task even
        # when tasks run in parallel.
        context = current_context()
        for line in text.splitlines():
            if line.strip():
                self.renderer.emit("output", self.level, step=context.step if context else None,
                                   task=context.task if context else None, message=line)

    def close_lines(self) -> None:
        """Emit what is left of unfinished lines (the run is over)."""
        self._lines.close()

    # Not a terminal: libraries that draw progress bars or colours when they see one must write
    # plain lines here.
    def isatty(self) -> bool:
        return False


class Output:
    """Routes stdout, stderr and logging through the renderer for the duration of a run."""

    def __init__(self, renderer: JsonLinesRenderer, secrets: frozenset[str]) -> None:
        self.renderer, self.filter = renderer, MaskSecrets(secrets)
        self._saved: tuple[Any, Any] = (None, None)

    def __enter__(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _JsonOutput(self.renderer, "INFO"), _JsonOutput(
            self.renderer, "WARNING"
        )
        # Redirecting stdout misses the root logger's handlers, which write to streams bound earlier
        # (the Lambda runtime installs its own handler): each gets the masking filter instead.
        for handler in logging.getLogger().handlers:
            handler.addFilter(self.filter)

    def __exit__(self, *exc: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            # A half line a task printed without a newline is emitted before the streams are
            # restored.
            if isinstance(stream, _JsonOutput):
                stream.close_lines()
        sys.stdout, sys.stderr = self._saved
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self.filter)
