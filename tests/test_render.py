"""What a terminal shows (issue 9, item 11): rich writes ANSI for an 80-column terminal and pyte,
a VT100 emulator, turns it into the screen a user would see (cursor moves and erases applied)."""
from __future__ import annotations

import argparse
import io
import logging
import time

import pyte
from rich.console import Console

from orchestrator.cli.log_setup import configure_logging
from orchestrator.cli.plan_cmd import plural
from orchestrator.cli.render import RichRenderer
from orchestrator.cli.views import runs_table, show_run
from orchestrator.events import FAILED, SUCCEEDED, RunInfo, RunResult, TaskResult
from orchestrator.executor import TaskMetrics


def console() -> Console:
    return Console(width=80, height=24, force_terminal=True, color_system="standard", file=io.StringIO())


def screen_lines(out: Console) -> list[str]:
    """The terminal's scrollback and screen after everything ``out`` wrote."""
    screen = pyte.HistoryScreen(80, 24, history=1000)
    stream = pyte.Stream(screen)
    stream.feed(out.file.getvalue().replace("\n", "\r\n"))
    history = ["".join(char.data for char in line.values()) for line in screen.history.top]
    return [line.rstrip() for line in history + screen.display]


def a_run(renderer: RichRenderer, logger: logging.Logger | None = None) -> RunResult:
    names = [("stage_people_from_landing", "transfer"), ("stage_people_from_landing", "post_staging"),
             ("query_the_warehouse", "run_query")]
    renderer.run_started(RunInfo("r-1", "people_daily", len(names)))
    results = []
    for i, (step, task) in enumerate(names):
        result = TaskResult(step, "x", task, i, attempts=1, started=time.time())
        renderer.task_started(result)
        if logger:
            logger.info("working on %s", task)
        result.ended = result.started + 1.5
        if task == "run_query":
            result.status, result.error, result.error_type = FAILED, "line one\nline two of a long error", "KeyError"
        else:
            result.status = SUCCEEDED
            result.metrics = TaskMetrics(total_rows=3, execution_metadata={
                "files": 3, "sql": "SELECT a\nFROM b", "nested": {"x": 1}, "bytes": 123456789})
        renderer.task_finished(result)
        results.append(result)
    run = RunResult("r-1", "people_daily", FAILED, time.time() - 5, time.time(), results)
    renderer.run_finished(run)
    return run


def test_summary_fits_80_columns_one_row_per_task_with_full_names():
    out = console()
    a_run(RichRenderer(out))
    lines = screen_lines(out)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 80, text
    for name in ("stage_people_from_landing.transfer", "stage_people_from_landing.post_staging",
                 "query_the_warehouse.run_query"):
        rows = [line for line in lines if line.lstrip().startswith(name) and ("succeeded" in line or "failed" in line)]
        assert len(rows) >= 1, (name, text)
    summary = text[text.index("people_daily · run"):]
    assert "total_rows=3" in summary and "nested" not in summary and "SELECT a" not in summary
    assert "line one line two" in summary  # a multi-line error stays on its row


def test_log_lines_print_above_the_live_bar_not_into_it():
    out = console()
    renderer = RichRenderer(out)
    root = logging.getLogger("orchestrator")
    before = list(root.handlers)
    configure_logging(argparse.Namespace(verbose=False, quiet=False), frozenset(), renderer.console)
    (handler,) = [h for h in root.handlers if h not in before]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    try:
        a_run(renderer, logging.getLogger("orchestrator.task.test_render"))
    finally:
        root.removeHandler(handler)
    lines = screen_lines(out)
    for task in ("transfer", "post_staging", "run_query"):
        assert f"INFO working on {task}" in lines, lines


def test_progress_says_done_when_finished():
    renderer = RichRenderer(console())
    a_run(renderer)
    assert renderer._describe() == "done"


def test_plural_and_empty_run_lists():
    assert (plural(1, "step"), plural(2, "step"), plural(0, "task")) == ("1 step", "2 steps", "0 tasks")
    assert runs_table([]) == "no runs recorded"
    assert runs_table([], status="running") == "no running runs"
    assert runs_table([], routine="daily", status="failed") == "no failed of daily runs"


def test_show_is_a_readable_report():
    task = {"step": "q", "task": "run_query", "attempt": 1, "status": "failed", "started": 1.0, "ended": 2.0,
            "error": "boom\nsecond line", "metrics": None}
    ok = {**task, "task": "load", "status": "succeeded", "error": None,
          "metrics": {"inserts": 2, "execution_metadata": {"sql": "SELECT 1\nFROM t", "queries": [{"id": 1}]}}}
    text = show_run({"run": {"run_id": "r", "routine": "x", "status": "failed", "started": 1.0, "ended": 3.0},
                     "tasks": [task, ok], "children": []})
    assert "{" not in text and "\\n" not in text
    assert "q.run_query #1 failed" in text and "      second line" in text and "inserts=2" in text


def test_a_quick_task_duration_reads_as_formatting_would_show_it():
    """The plain line's duration skips float formatting below 0.005 s: the text must not change."""
    from orchestrator.cli.render import _took

    edges = [0.0, 1e-9, 0.004, 0.0049999, 0.005, 0.00500001, 0.0051, 0.015, 0.125, 2.0,
             -1e-9, -0.01]
    for seconds in edges + [i / 7919 for i in range(200)]:
        assert _took(seconds) == f" in {seconds:.2f}s", seconds
