"""``orchestrate report``: one static HTML file of a recorded run, or of a routine's last runs.

The file opens from disk and loads nothing: styles, the timeline (positioned blocks) and a small
script are inline, and a Content-Security-Policy forbids anything else. Everything shown comes
from the run store, where errors, params and metrics were masked when they were recorded.
The script only measures: it writes each bar's rendered width next to its duration so a browser
test (and a curious user) can check the timeline is to scale.
"""
from __future__ import annotations

import html
import json
import time
from typing import Any, Iterable

from ..runs.store import RunRecord, RunStore, TaskRecord

# The page loads nothing: only its own inline style and script run, and no data in it (an error
# message, a param) can fetch, submit or redirect anywhere, even if it got past escaping.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")
METRICS = ("inserts", "updates", "soft_deletes", "total_rows")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;margin:4px 0}td,th{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f4f4f4}.num{text-align:right}
.st{font-weight:600}.succeeded{color:#17803d}.failed,.dead{color:#c62828}.cancelled{color:#b26a00}
.skipped,.running{color:#666}
.gantt{margin:8px 0}.row{display:flex;align-items:center;height:22px}
.label{width:260px;flex:none;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
font-family:monospace;font-size:12px}
.track{position:relative;flex:1;height:14px;background:#fafafa;border-left:1px solid #ccc}
.bar{position:absolute;top:0;height:14px;min-width:2px;box-sizing:border-box}
.bar.succeeded{background:#2e9d55}.bar.failed,.bar.dead{background:#d84343}
.bar.cancelled{background:#e39b2b}.bar.running{background:#7aa7e0}
.bar.wait{background:repeating-linear-gradient(45deg,#ccc 0 3px,#fff 3px 6px)}
.note{color:#666;font-size:12px;padding-left:6px}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:320px;font-size:12px}
.trend{display:flex;align-items:flex-end;height:120px;gap:2px;border-bottom:1px solid #ccc}
.tbar{flex:1;min-width:3px}.tbar.succeeded{background:#2e9d55}
.tbar.failed,.tbar.dead{background:#d84343}.tbar.cancelled{background:#e39b2b}\
.tbar.skipped{background:#aaa}.child{margin-left:24px;border-left:3px solid #eee;padding-left:12px}
"""

# Measures what the browser drew: each bar's width in pixels beside its duration in seconds.
_SCRIPT = """
(function(){var out=[];document.querySelectorAll('.bar').forEach(function(b){
out.push({kind:b.dataset.kind,seconds:parseFloat(b.dataset.seconds),span:parseFloat(b.dataset.span),
px:b.getBoundingClientRect().width,track:b.parentNode.getBoundingClientRect().width});});
var m=document.getElementById('measured');m.textContent=JSON.stringify(out);
document.body.setAttribute('data-ready','1');})();
"""


def _e(value: Any) -> str:
    # Every value from the store goes through this: errors, params and metadata are whatever tasks
    # produced, "<script>" included. html.escape also quotes " and ', for attribute values.
    return html.escape("" if value is None else str(value))


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(value, 60)
    return (
        f"{int(minutes)}m{secs:04.1f}s"
        if minutes < 60
        else f"{int(minutes // 60)}h{int(minutes % 60):02d}m"
    )


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width"><title>{_e(title)}</title>'
            f'<style>{_STYLE}</style></head><body>{body}'
            f'<pre id="measured" hidden></pre><script>{_SCRIPT}</script></body></html>\n')


def run_report(store: RunStore, run: RunRecord, now: float | None = None) -> str:
    """The HTML page of one run and, nested, its child runs."""
    return _page(f"{run.routine} run {run.run_id}", _run_section(store, run, now or time.time(), 0))


def _run_section(store: RunStore, run: RunRecord, now: float, depth: int) -> str:
    tasks = store.tasks(run.run_id)
    heading = "h1" if depth == 0 else "h2"
    parts = [
        f'<section class="{"child" if depth else "run"}" data-run-id="{_e(run.run_id)}">',
        f'<{heading}>{_e(run.routine)} '
        f'<span class="st {_e(run.status)}">{_e(run.status)}</span></{heading}>',
        _facts(run, now),
        _gantt(run, tasks, now),
        _task_table(tasks),
        _watermarks(tasks),
        _errors(tasks),
    ]
    children = list(reversed(store.list_runs(parent=run.run_id, limit=1000)))
    if children:
        parts.append(f"<h2>Child runs ({len(children)})</h2>")
        parts.extend(_run_section(store, child, now, depth + 1) for child in children)
    parts.append("</section>")
    return "".join(parts)


def _facts(run: RunRecord, now: float) -> str:
    # A running run shows how long it has taken so far.
    ended = run.ended or (now if run.status == "running" else None)
    rows = [
        ("run id", run.run_id),
        ("routine file", run.routine_file),
        ("started", _clock(run.started)),
        ("ended", _clock(run.ended)),
        ("duration", _seconds(ended - run.started if ended else None)),
        ("where", f"{run.host} (pid {run.pid})"),
        ("parent run", run.parent_run_id),
        ("resumed from", run.resumed_from),
        ("params", json.dumps(run.params, default=str, sort_keys=True) if run.params else None),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v)
    return f"<table class=facts>{cells}</table>"


def _span(run: RunRecord, tasks: list[TaskRecord], now: float) -> tuple[float, float]:
    start = min([run.started, *(t.started for t in tasks if t.started)])
    ends = [run.ended or now, *(t.ended or now for t in tasks if t.started)]
    # A run with nothing to measure (ended as it started) must not divide by zero in _bar.
    return start, max(max(ends) - start, 1e-6)


def _gantt(run: RunRecord, tasks: list[TaskRecord], now: float) -> str:
    if not tasks:
        return "<p class=note>No task was recorded.</p>"
    start, span = _span(run, tasks, now)
    rows = []
    for (step, name), attempts in _by_task(tasks):
        bars, note, previous_end = [], "", None
        for record in attempts:
            if record.attempt == 0:  # skipped without ever starting
                note = f"skipped: {record.error or ''}"
                continue
            # An attempt still running is drawn up to now.
            end = record.ended or now
            if previous_end is not None and record.started > previous_end:
                # The gap between two attempts is the retry delay: drawn hatched, so the row's full
                # length still reads as the time the task took.
                bars.append(
                    _bar("wait", previous_end, record.started, start, span, "waiting to retry")
                )
            title = f"attempt {record.attempt}: {record.status} in {_seconds(end - record.started)}"
            bars.append(_bar(record.status, record.started, end, start, span, title))
            previous_end = end
        label = f"{step}.{name}"
        rows.append(
            f'<div class=row><div class=label title="{_e(label)}">{_e(label)}</div>'
            f'<div class=track>{"".join(bars)}</div><span class=note>{_e(note)}</span></div>'
        )
    axis = f"<div class=note>0 s … {_seconds(span)} (started {_clock(start)})</div>"
    return f"<h2>Timeline</h2><div class=gantt>{''.join(rows)}{axis}</div>"


def _bar(kind: str, begin: float, end: float, origin: float, span: float, title: str) -> str:
    left, width = (begin - origin) / span * 100, (end - begin) / span * 100
    return (
        f'<div class="bar {_e(kind)}" data-kind="{_e(kind)}" data-seconds="{end - begin:.6f}" '
        f'data-span="{span:.6f}" style="left:{left:.4f}%;width:{width:.4f}%" '
        f'title="{_e(title)}"></div>'
    )


def _by_task(tasks: Iterable[TaskRecord]) -> list[tuple[tuple[str, str], list[TaskRecord]]]:
    """Attempts grouped per task, in plan order, with (step, task) for the label."""
    grouped: dict[tuple[int, int], list[TaskRecord]] = {}
    for record in tasks:
        # Grouped by position, not by name: a step may call the same task twice, and each is its own
        # row.
        grouped.setdefault((record.step_index, record.task_index), []).append(record)
    return [
        ((v[0].step, v[0].task), sorted(v, key=lambda r: r.attempt))
        for _, v in sorted(grouped.items())
    ]


def _task_table(tasks: list[TaskRecord]) -> str:
    if not tasks:
        return ""
    head = "".join(
        f"<th>{h}</th>" for h in ("task", "attempt", "status", "duration", *METRICS, "metadata")
    )
    rows = []
    for t in tasks:
        metrics = t.metrics or {}
        numbers = "".join(f"<td class=num>{_e(metrics.get(m))}</td>" for m in METRICS)
        meta = metrics.get("execution_metadata") or {}
        duration = _seconds(t.ended - t.started) if t.ended and t.started else "-"
        rows.append(
            f"<tr><td>{_e(t.step)}.{_e(t.task)}</td><td class=num>{t.attempt or ''}</td>"
            f'<td class="st {_e(t.status)}">{_e(t.status)}</td>'
            f"<td class=num>{duration}</td>{numbers}"
            f"<td>{_e(json.dumps(meta, default=str)) if meta else ''}</td></tr>"
        )
    return f"<h2>Tasks</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _watermarks(tasks: list[TaskRecord]) -> str:
    rows = [
        f"<tr><td>{_e(t.step)}.{_e(t.task)}</td><td>{_e(json.dumps(t.watermark, default=str))}</td>"
        f"<td>{_e(json.dumps(t.next_watermark, default=str))}</td></tr>"
        for t in tasks
        if t.watermark is not None or t.next_watermark is not None
    ]
    if not rows:
        return ""
    return (
        "<h2>Watermarks</h2><table><tr><th>task</th><th>before</th><th>after (proposed)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _errors(tasks: list[TaskRecord]) -> str:
    failed = [
        t for t in tasks if t.status in ("failed", "cancelled", "dead") and (t.error or t.traceback)
    ]
    if not failed:
        return ""
    items = []
    for t in failed:
        trace = (
            f"<details><summary>traceback</summary><pre>{_e(t.traceback)}</pre></details>"
            if t.traceback
            else ""
        )
        items.append(f'<div class=error><b>{_e(t.step)}.{_e(t.task)} attempt {t.attempt}</b>: '
                     f"<code>{_e(t.error_type)}</code> <pre>{_e(t.error)}</pre>{trace}</div>")
    return "<h2>Errors</h2>" + "".join(items)


def history_report(store: RunStore, routine: str, runs: list[RunRecord]) -> str:
    """The HTML page of a routine's last runs: duration trend, success rate, rows per run."""
    # Oldest first for the trend (read left to right); the table below lists newest first.
    ordered = sorted(runs, key=lambda r: r.started)
    finished = [r for r in ordered if r.finished]
    succeeded = sum(r.status == "succeeded" for r in finished)
    rate = f"{succeeded / len(finished):.0%}" if finished else "-"
    durations = [(r.ended - r.started) if r.ended else 0.0 for r in ordered]
    # A run that has not ended counts as 0 s; "or 1.0" keeps a history of such runs from dividing by
    # zero.
    longest = max(durations, default=0.0) or 1.0
    bars = "".join(
        f'<div class="tbar {_e(r.status)}" data-kind="{_e(r.status)}" data-seconds="{d:.6f}" '
        f'data-span="{longest:.6f}" style="height:{d / longest * 100:.3f}%" '
        f'title="{_e(r.run_id)}: {_e(r.status)} in {_seconds(d)}"></div>'
        for r, d in zip(ordered, durations)
    )
    rows = []
    for run, duration in zip(reversed(ordered), reversed(durations)):
        total = _rows(store.tasks(run.run_id))
        rows.append(
            f'<tr><td>{_e(run.run_id)}</td><td class="st {_e(run.status)}">{_e(run.status)}</td>'
            f"<td>{_clock(run.started)}</td>"
            f"<td class=num>{_seconds(duration if run.ended else None)}</td>"
            f"<td class=num>{'' if total is None else total}</td></tr>"
        )
    body = (
        f"<h1>{_e(routine)}: last {len(ordered)} runs</h1>"
        "<table><tr><th>success rate</th>"
        f"<td>{rate} ({succeeded} of {len(finished)} finished)</td></tr></table>"
        f"<h2>Duration trend (oldest left)</h2><div class=trend>{bars}</div>"
        "<h2>Runs</h2><table><tr><th>run id</th><th>status</th><th>started</th><th>duration</th>"
        f"<th>rows</th></tr>{''.join(rows)}</table>"
    )
    return _page(f"{routine}: history", body)


def _rows(tasks: list[TaskRecord]) -> int | None:
    """Rows a run reported: the sum of its succeeded tasks' ``total_rows``."""
    # Succeeded attempts only: a failed attempt's count was not the rows the run ended with.
    values = [t.metrics.get("total_rows") for t in tasks if t.status == "succeeded" and t.metrics]
    # Only integer counts are summed: a plugin's metrics may leave total_rows unset or give it
    # another type.
    rows = [v for v in values if isinstance(v, int)]
    return sum(rows) if rows else None
