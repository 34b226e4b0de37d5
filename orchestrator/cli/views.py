"""Plain-text views of recorded runs for `runs`, `show` and `logs`."""
from __future__ import annotations

import json
import time
from typing import Any

from ..masking import last_frames
from ..runs.store import LogRecord, RunRecord, RunStore


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _duration(start: float | None, end: float | None) -> str:
    return f"{end - start:.2f}s" if start and end else "-"


def runs_table(
    runs: list[RunRecord],
    late: dict[str, str] | None = None,
    routine: str | None = None,
    status: str | None = None,
) -> str:
    """One line per run; the newest run of each routine that is late
    (``late``: why) is marked LATE."""
    if not runs:
        if routine or status:
            which = " ".join(filter(None, [status, f"of {routine}" if routine else None]))
            return f"no {which} runs"
        return "no runs recorded"
    late = dict(late or {})
    lines = [f"{'RUN ID':36}  {'ROUTINE':20}  {'STATUS':9}  {'STARTED':19}  {'DURATION':>9}  "
             f"{'PARENT':36}  RESUMES"]
    marked: set[str] = set()
    for run in runs:
        # Runs come newest first: only the first of each routine, its newest, is marked.
        mark = "  LATE" if run.routine in late and run.routine not in marked else ""
        marked.add(run.routine)
        lines.append(
            f"{run.run_id:36}  {run.routine[:20]:20}  {run.status:9}  {_clock(run.started):19}  "
            f"{_duration(run.started, run.ended):>9}  {run.parent_run_id or '':36}  "
            f"{run.resumed_from or '':36}{mark}".rstrip()
        )
    lines.extend(f"LATE {routine}: {why}" for routine, why in late.items())
    return "\n".join(lines)


def run_details(store: RunStore, run: RunRecord) -> dict[str, Any]:
    """The run, its task attempts and its child runs (recursively)."""
    children = [
        run_details(store, child)
        # list_runs answers newest first; children are shown in the order they started.
        for child in reversed(store.list_runs(parent=run.run_id, limit=1000))
    ]
    return {
        "run": run.to_dict(),
        "tasks": [t.to_dict() for t in store.tasks(run.run_id)],
        "children": children,
    }


def details_json(details: dict[str, Any]) -> dict[str, Any]:
    """``show --json``: the details with each traceback cut to its last frames."""
    tasks = [{**task, "traceback": last_frames(task.get("traceback"))} for task in details["tasks"]]
    return {**details, "tasks": tasks, "children": [details_json(c) for c in details["children"]]}


def show_run(details: dict[str, Any], indent: str = "") -> str:
    run = details["run"]
    lines = [f"{indent}run {run['run_id']}  {run['routine']}  {run['status']}  "
             f"started {_clock(run['started'])}  took {_duration(run['started'], run['ended'])}"]
    if run.get("resumed_from"):
        lines.append(f"{indent}  resumes run {run['resumed_from']}")
    # A child's parent is the run printed just above it; only the top run names its own.
    if run.get("parent_run_id") and not indent:
        lines.append(f"{indent}  parent {run['parent_run_id']}")
    for task in details["tasks"]:
        attempt = f"#{task['attempt']}" if task["attempt"] else "  "
        error = (task["error"] or "").strip().splitlines()
        detail = error[0] if error else _metrics(task["metrics"]) or _returned(task.get("result"))
        lines.append(f"{indent}  {task['step']}.{task['task']} {attempt} {task['status']:9} "
                     f"{_duration(task['started'], task['ended']):>8}  {detail}".rstrip())
        lines.extend(f"{indent}      {more}" for more in error[1:])  # a multi-line error, readable
        lines += [f"{indent}      {line}" for line in _result_lines(task.get("result"))]
        if task.get("args") is not None:  # what it was given from upstream outputs (masked)
            lines.append(f"{indent}      args: {json.dumps(task['args'], default=str)}")
        if task.get("traceback"):
            trace = task["traceback"].rstrip("\n").split("\n")
            lines += [f"{indent}      {line}" for line in trace]
    for child in details["children"]:
        lines.append(show_run(child, indent + "    "))
    return "\n".join(lines)


def _metrics(metrics: dict[str, Any] | None) -> str:
    from .render import metrics_text

    return metrics_text(metrics)


def _returned(value: Any) -> str:
    from .render import returned_text

    return returned_text(value)


def _result_lines(value: Any, most: int = 40) -> list[str]:
    """A result too long for its task's line, in full below it (up to ``most`` lines)."""
    from ..returns import SHORT_RESULT_CHARS

    if value is None:
        return []
    # A short result is on the task's own line already (_returned).
    if len(json.dumps(value, ensure_ascii=False, default=str)) <= SHORT_RESULT_CHARS:
        return []
    import textwrap

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    # drop_whitespace=False keeps a value's own indentation, and `or [""]` its blank lines, which
    # textwrap.wrap turns into nothing.
    lines = ["result:", *("  " + part for line in text.splitlines()
                          for part in textwrap.wrap(line, 96, drop_whitespace=False) or [""])]
    if len(lines) > most:
        lines = [*lines[:most], f"  … {len(lines) - most} more lines (show --json has it all)"]
    return lines


def log_line(record: LogRecord) -> str:
    where = f"{record.step}.{record.task}" if record.step else "-"
    clock = time.strftime("%H:%M:%S", time.localtime(record.ts))
    return f"{clock} {record.level:7} {where}: {record.message}"
