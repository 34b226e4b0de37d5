"""``orchestrate backfill ROUTINE --param run_date=2026-11-01..2026-11-07``: one recorded run per
date.

Every date's routine is validated before the first run. Dates that already have a succeeded run
(same routine, same value of the param) are skipped, so running the same backfill again resumes
it. Dates run in order, one at a time in this process; ``--max-parallel N`` runs N at once, each
in its own ``orchestrate run`` process (runs capture their process's output, so they cannot share
one).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..errors import UserError
from ..outcome import ExitCode, Status

# About 27 years of days. Every date's routine is validated before the first run, so a typo in a
# year (2062 for 2026) is refused at once rather than validated thousands of times first.
MAX_DATES = 10_000


def date_range(pairs: list[str]) -> tuple[str, list[str], list[str]]:
    """The one ``KEY=A..B`` param as (key, dates), and the other ``--param`` pairs unchanged."""
    # The dates are the one value holding "..": two such --param are refused, not one guessed.
    ranged = [p for p in pairs if "=" in p and ".." in p.partition("=")[2]]
    if len(ranged) != 1:
        raise UserError("backfill needs exactly one --param KEY=FIRST..LAST (dates as YYYY-MM-DD), "
                        "e.g. --param run_date=2026-11-01..2026-11-07")
    key, _, text = ranged[0].partition("=")
    first, _, last = text.partition("..")
    try:
        start, end = dt.date.fromisoformat(first.strip()), dt.date.fromisoformat(last.strip())
    except ValueError:
        raise UserError(f"--param {ranged[0]}: give dates as YYYY-MM-DD..YYYY-MM-DD") from None
    if end < start:
        raise UserError(f"--param {ranged[0]}: the last date is before the first")
    days = (end - start).days + 1
    if days > MAX_DATES:
        raise UserError(f"--param {ranged[0]}: {days} dates; at most {MAX_DATES} in one backfill")
    dates = [(start + dt.timedelta(days=n)).isoformat() for n in range(days)]
    return key.strip(), dates, [p for p in pairs if p is not ranged[0]]


def cmd_backfill(args: argparse.Namespace) -> int:
    from .routine_arg import load
    from .run_cmd import renderer

    return backfill(args, load, renderer)


def backfill(
    args: argparse.Namespace, load: Callable[..., Any], renderer: Callable[..., Any]
) -> int:
    from ..engine import plan
    from ..runs.store import open_store
    from ..selection import excluded_steps

    key, dates, others = date_range(args.param)
    routines = {}
    for date in dates:  # everything is checked before the first run
        # run_id None: each date's run gets an id of its own.
        routines[date] = load(argparse.Namespace(param=[*others, f"{key}={date}"], run_id=None),
                              args.routine, resolve=True)  # run here: ${secret.X} read now
    name = routines[dates[0]].name
    excluded_steps(plan(routines[dates[0]]), args.only, args.start)  # checked before any run
    store = open_store()
    done = {} if args.rerun else succeeded_dates(store, name, key, set(dates))
    todo = [d for d in dates if d not in done]
    report: dict[str, dict[str, Any]] = {d: {"date": d, "status": "skipped", "run_id": done[d],
                                             "reason": "already succeeded"} for d in done}
    from .reserved_stdout import stdout_reserved

    with (stdout_reserved() if args.json else contextlib.nullcontext(sys.stdout)) as stdout:
        if args.max_parallel > 1:
            with ThreadPoolExecutor(args.max_parallel) as pool:
                for date, outcome in zip(
                    todo, pool.map(lambda d: run_in_child(args, key, d, others), todo)
                ):
                    report[date] = outcome
        else:
            for date in todo:
                report[date] = run_here(args, date, plan(routines[date]), renderer)
                # Ctrl-C or SIGTERM cancelled this date's run: the dates after it are not started,
                # and the summary lists only what ran or was skipped.
                if report[date]["status"] == Status.CANCELLED:
                    break
        return summarise(args, name, key, [report[d] for d in dates if d in report], stdout)


def succeeded_dates(store: Any, routine: str, key: str, dates: set[str]) -> dict[str, str]:
    """Date -> the run that already succeeded for it."""
    found: dict[str, str] = {}
    # list_runs answers newest first, so each date keeps its latest succeeded run; values are
    # compared as text, as the dates are.
    for run in store.list_runs(routine, status=Status.SUCCEEDED, limit=100_000):
        value = str((run.params or {}).get(key))
        if value in dates and value not in found:
            found[value] = run.run_id
    return found


def run_here(args: argparse.Namespace, date: str, the_plan: Any,
             renderer: Callable[..., Any]) -> dict[str, Any]:
    from ..engine import RunOptions
    from ..runs.control import TrackedRun
    from ..runs.store import open_store
    from .signals import cancel_on_signals

    # Each run's own renderer stays quiet and never writes JSON: the backfill prints one summary
    # (with --json, one document) for all dates.
    quiet = argparse.Namespace(**{**vars(args), "json": False, "quiet": True})
    options = RunOptions(only=tuple(args.only), start=args.start)  # --max-parallel is for dates
    tracked = TrackedRun(open_store(), the_plan, [renderer(quiet)], options)
    tracked.claim()
    with cancel_on_signals(tracked):
        result = tracked.execute()
    return {"date": date, "status": str(result.status), "run_id": result.run_id}


def run_in_child(
    args: argparse.Namespace, key: str, date: str, others: list[str]
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        args.routine,
        "--json",
        # The dates are runs of the same routine, at the same time: without this each child would
        # find the routine claimed by its siblings.
        "--allow-concurrent",
        f"--param={key}={date}",
        *(f"--param={p}" for p in others),
    ]
    if args.only:
        cmd.append("--only=" + ",".join(args.only))
    if args.start:
        cmd.append(f"--from={args.start}")
    # No stdin: a child must never sit waiting for input from a terminal the user cannot see it use.
    child = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        result = json.loads(child.stdout)
        return {"date": date, "status": result["status"], "run_id": result["run_id"]}
    # No JSON document: the child failed before its run could report (a usage error, a busy store, a
    # crash); the end of its stderr says why.
    except (ValueError, KeyError):
        return {
            "date": date,
            "status": Status.FAILED,
            "run_id": None,
            "reason": child.stderr.strip()[-500:],
        }


def summarise(
    args: argparse.Namespace, routine: str, key: str, rows: list[dict[str, Any]], stdout: Any
) -> int:
    if args.json:
        print(
            json.dumps({"routine": routine, "param": key, "dates": rows}, indent=2, default=str),
            file=stdout,
        )
    else:
        for row in rows:
            extra = f" ({row['reason']})" if row.get("reason") else ""
            print(f"{row['date']}  {row['status']:9}  {row['run_id'] or '-'}{extra}", file=stdout)
    statuses = {str(r["status"]) for r in rows}
    # An interruption outranks failures: the exit code says the backfill did not finish.
    if Status.CANCELLED in statuses:
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED if statuses - {Status.SUCCEEDED, Status.SKIPPED} else ExitCode.OK
