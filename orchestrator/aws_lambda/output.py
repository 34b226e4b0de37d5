"""Lambda's output: one JSON line per event on stdout, as CloudWatch expects; what tasks print or log
is wrapped into such lines too, secrets masked."""
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
from ..routine.substitution import mask
from ..runs.recorder import MaskSecrets


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLinesRenderer(Listener):
    """One JSON object per line on stdout, as CloudWatch Logs Insights reads them; secrets masked."""

    FIELDS = ("ts", "level", "event", "run_id", "routine", "step", "task", "status", "attempt", "duration", "error")

    def __init__(self, run_id: str, routine: str, secrets: frozenset[str] = frozenset(), stream: TextIO | None = None,
                 request_id: str | None = None) -> None:
        self.run_id, self.routine, self.secrets, self.request_id = run_id, routine, set(secrets), request_id
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def emit(self, event: str, level: str = "INFO", **fields: Any) -> None:
        line = {name: None for name in self.FIELDS}
        line.update(ts=_now(), level=level, event=event, run_id=self.run_id, routine=self.routine, **fields)
        if self.request_id:
            line["request_id"] = self.request_id
        text = mask(json.dumps(line, default=str), self.secrets)
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _task(self, event: str, result: TaskResult, level: str = "INFO", **fields: Any) -> None:
        self.emit(event, level, step=result.step, task=result.task, attempt=result.attempts, **fields)

    def run_started(self, run: RunInfo) -> None:
        self.emit("run_started", status="running", tasks=run.total_tasks)

    def task_started(self, result: TaskResult) -> None:
        self._task("task_started", result, status="running")

    def task_retrying(self, result: TaskResult, delay: float) -> None:
        self._task("task_retrying", result, "WARNING", status="retrying", error=result.error, delay=delay)

    def task_finished(self, result: TaskResult) -> None:
        level = {FAILED: "ERROR", CANCELLED: "WARNING"}.get(result.status, "INFO")
        self._task("task_finished", result, level, status=result.status, duration=_round(result.duration),
                   error=result.error, reason=result.reason)

    def run_finished(self, result: RunResult) -> None:
        level = "INFO" if result.status in (SUCCEEDED, SKIPPED) else "ERROR"
        self.emit("run_finished", level, status=result.status, duration=_round(result.ended - result.started))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _JsonOutput(io.TextIOBase):
    """Stands in for stdout/stderr during a run: what tasks print becomes masked ``output`` JSON lines."""

    def __init__(self, renderer: JsonLinesRenderer, level: str) -> None:
        self.renderer, self.level = renderer, level
        self._partial = threading.local()

    def write(self, text: str) -> int:
        buffered = getattr(self._partial, "text", "") + text
        *lines, self._partial.text = buffered.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if line.strip():
            context = current_context()
            self.renderer.emit("output", self.level, step=context.step if context else None,
                               task=context.task if context else None, message=line)

    def flush(self) -> None:
        rest = getattr(self._partial, "text", "")
        self._partial.text = ""
        self._line(rest)

    def isatty(self) -> bool:
        return False


class Output:
    """Routes stdout, stderr and logging through the renderer for the duration of a run."""

    def __init__(self, renderer: JsonLinesRenderer, secrets: frozenset[str]) -> None:
        self.renderer, self.filter = renderer, MaskSecrets(secrets)
        self._saved: tuple[Any, Any] = (None, None)

    def __enter__(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _JsonOutput(self.renderer, "INFO"), _JsonOutput(self.renderer, "WARNING")
        for handler in logging.getLogger().handlers:
            handler.addFilter(self.filter)

    def __exit__(self, *exc: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _JsonOutput):
                stream.flush()
        sys.stdout, sys.stderr = self._saved
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self.filter)
