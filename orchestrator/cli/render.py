"""Listeners that show a run: rich progress for a terminal, plain lines for pipes and logs."""
from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from ..events import CANCELLED, FAILED, SKIPPED, SUCCEEDED, Listener, RunInfo, RunResult, TaskResult

_STYLE: dict[str, str] = {
    SUCCEEDED: "green",
    FAILED: "bold red",
    CANCELLED: "yellow",
    SKIPPED: "dim",
}


def describe_metrics(result: TaskResult) -> str:
    """What a succeeded task reported: its metrics, else its result value, on one line."""
    metrics = metrics_text(result.metrics.to_dict() if result.metrics is not None else None)
    return metrics or returned_text(result.result)


def returned_text(value: Any) -> str:
    """A task's result value, short, on one line: ``result=[1, 2]``."""
    if value is None:  # most tasks: no import statement run per task
        return ""
    from ..returns import result_text

    return f"result={result_text(value)}"


def metrics_text(metrics: dict[str, Any] | None) -> str:
    """``k=v`` pairs on one line: counts first, then short scalar metadata (no dicts, no
    newlines)."""
    if not metrics:
        return ""
    values = dict(metrics)
    meta = dict(values.pop("execution_metadata", None) or {})
    warning = meta.pop("warning", None)  # a task's warning is shown whole, and first
    shown = {k: v for k, v in values.items() if v is not None}
    shown.update({k: v for k, v in meta.items()
                  if isinstance(v, (int, float, str)) and len(str(v)) < 40 and "\n" not in str(v)})
    text = " ".join(f"{k}={v}" for k, v in shown.items())
    return f"warning: {warning}; {text}" if warning else text


def task_line(result: TaskResult) -> str:
    status = result.status
    if (status is SUCCEEDED and result.attempts == 1 and result.metrics is None
            and result.result is None and result.started is not None
            and result.ended is not None):  # most lines of a long run: one f-string
        return f"{result.step}.{result.task} succeeded{_took(result.ended - result.started)}"
    name = f"{result.step}.{result.task}"
    if status == SKIPPED:
        return f"{name} skipped: {result.reason}"
    started, ended = result.started, result.ended
    duration = "" if started is None or ended is None else _took(ended - started)
    attempts = f" after {result.attempts} attempts" if result.attempts > 1 else ""
    tail = (
        f": {result.error_type}: {result.error}"
        if (status == FAILED or status == CANCELLED) and result.error
        else ""
    )
    metrics = (describe_metrics(result) if status == SUCCEEDED
               and (result.metrics is not None or result.result is not None) else "")
    # ``!s``: a StrEnum formats through Python code; its str() is the text, at C speed
    shown = f"  {metrics}" if metrics else ""
    return f"{name} {status!s}{duration}{attempts}{tail}{shown}"


def _took(seconds: float) -> str:
    # Formatting a float with ``.2f`` costs as much as the rest of the line; a quick task (most
    # of a long run's lines) rounds to 0.00 exactly when under 0.005 s (the float nearest 0.005
    # is just above it, and rounds up), so its text is a constant.
    if 0 <= seconds < 0.005:
        return " in 0.00s"
    return f" in {seconds:.2f}s"


def indented(traceback: str) -> str:
    return "".join(f"    {line}\n" for line in traceback.rstrip("\n").split("\n"))


def run_line(result: RunResult) -> str:
    counts: dict[str, int] = {}
    for task in result.tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return (
        f"run {result.run_id} {result.status} in {result.ended - result.started:.2f}s ({summary})"
    )


class PlainRenderer(Listener):
    """One line per event: readable in a pipe, a CI log or with NO_COLOR."""

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False,
                 verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet, self.verbose = quiet, verbose
        self._lock = threading.Lock()
        # The clock shown, formatted once a second: ``strftime`` per line cost more than the
        # rest of it. [_from, _to) is the second the stamp is for; a clock set back is noticed.
        self._from, self._to, self._stamp = 0.0, 0.0, ""

    def write(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        now = time.time()
        with self._lock:
            if not self._from <= now < self._to:
                second = int(now)
                self._from, self._to = second, second + 1
                self._stamp = time.strftime("%H:%M:%S", time.localtime(second))
            self.stream.write(f"{self._stamp} {text}\n")
            self.stream.flush()

    def run_started(self, run: RunInfo) -> None:
        self.write(f"run {run.run_id} of {run.routine} started ({run.total_tasks} tasks)")

    def task_started(self, result: TaskResult) -> None:
        suffix = f" (attempt {result.attempts})" if result.attempts > 1 else ""
        self.write(f"{result.step}.{result.task} started{suffix}")

    def task_retrying(self, result: TaskResult, delay: float) -> None:
        self.write(
            f"{result.step}.{result.task} attempt {result.attempts} failed: {result.error}; "
            f"retrying in {delay:g}s"
        )
        self.write_traceback(result)

    def task_finished(self, result: TaskResult) -> None:
        status = result.status
        self.write(task_line(result), status == FAILED or status == CANCELLED)
        if status == FAILED:
            self.write_traceback(result)

    def write_traceback(self, result: TaskResult) -> None:
        """``--verbose``: the failed attempt's traceback (masked) under its line."""
        if self.verbose and result.traceback:
            with self._lock:
                self.stream.write(indented(result.traceback))
                self.stream.flush()

    def run_finished(self, result: RunResult) -> None:
        self.write(run_line(result), always=True)


class JsonRenderer(Listener):
    """``--json``: exactly one JSON document, written when the run ends, to the stream given at
    start (the real stdout, while what tasks print is sent to stderr)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def run_finished(self, result: RunResult) -> None:
        import json

        print(json.dumps(result.to_dict(), default=str), file=self.stream, flush=True)


class RichRenderer(Listener):
    """Live progress and a final summary table for a terminal."""

    def __init__(self, console: Any = None, verbose: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console or Console(stderr=True)
        # Log lines must go through this console (see ConsoleLogHandler) so they print above the
        # bar.
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="cyan"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._total = 0
        self._done = 0
        self._bar: Any = None
        self.verbose = verbose
        self._running: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def run_started(self, run: RunInfo) -> None:
        self.progress.start()
        self._total = run.total_tasks
        self._bar = self.progress.add_task(f"{run.routine}", total=run.total_tasks)

    def _describe(self) -> str:
        names = [f"{s}.{t}" for s, t in self._running]
        if names:
            return ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")
        return "done" if self._done >= self._total else "waiting"

    def task_started(self, result: TaskResult) -> None:
        with self._lock:
            self._running[(result.step, result.task)] = time.time()
            self.progress.update(self._bar, description=self._describe())

    def task_retrying(self, result: TaskResult, delay: float) -> None:
        self.progress.console.print(
            f"[yellow]↻[/] {result.step}.{result.task} attempt {result.attempts} failed: "
            f"{result.error}; retrying in {delay:g}s",
            markup=True,
            highlight=False,
        )
        self.print_traceback(result)

    def task_finished(self, result: TaskResult) -> None:
        with self._lock:
            self._running.pop((result.step, result.task), None)
            self._done += 1
            self.progress.update(self._bar, advance=1, description=self._describe())
        style = _STYLE.get(result.status, "")
        self.progress.console.print(
            f"[{style}]{task_line(result)}[/]", markup=True, highlight=False
        )
        if result.status == FAILED:
            self.print_traceback(result)

    def print_traceback(self, result: TaskResult) -> None:
        if self.verbose and result.traceback:
            text = indented(result.traceback)
            self.progress.console.print(text, markup=False, highlight=False, end="")

    def run_finished(self, result: RunResult) -> None:
        self.progress.stop()
        self.console.print(summary_table(result))
        style = _STYLE.get(result.status, "")
        self.console.print(f"[{style}]{run_line(result)}[/]", highlight=False)


def summary_table(result: RunResult) -> Any:
    """One row per task, designed for 80 columns: the name is never cut before the details are,
    and details stay on one line (ellipsis), so a table of many tasks stays a table."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"{result.routine} · run {result.run_id}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("task", no_wrap=True, overflow="fold", min_width=12)
    table.add_column("status", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("details", no_wrap=True, overflow="ellipsis", ratio=1)
    for task in result.tasks:
        if task.status == SUCCEEDED:
            detail = describe_metrics(task)
        else:
            detail = " ".join((task.error or task.reason or "").split())
        duration = f"{task.duration:.2f}s" if task.duration is not None else ""
        status = f"[{_STYLE.get(task.status, '')}]{task.status}[/]"
        table.add_row(
            f"{task.step}.{task.task}", status, str(task.attempts or ""), duration, detail
        )
    return table
