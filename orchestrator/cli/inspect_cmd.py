"""``orchestrate runs``, ``show`` and ``logs``: what the run store recorded."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..outcome import ExitCode


def cmd_runs(args: argparse.Namespace) -> int:
    from ..runs.control import reap
    from ..runs.store import open_store

    store = open_store()
    # reap marks runs whose process died as dead first, so the list never shows a dead run as
    # running.
    runs = reap(store, store.list_runs(args.routine, args.status, limit=args.limit))
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return ExitCode.OK
    from .views import runs_table

    print(runs_table(runs, late_routines(store, runs), args.routine, args.status))
    return ExitCode.OK


def late_routines(store: Any, runs: list[Any]) -> dict[str, str]:
    """Routine name -> why it is late, for the routines listed whose file has an ``expect:``."""
    from pathlib import Path

    from ..errors import UserError
    from ..freshness import breaches, expectation
    from ..routine.load import parse_file

    late, seen = {}, set()
    for run in runs:
        # Runs come newest first: each routine is judged by the file its newest run came from, once.
        if run.routine in seen or not run.routine_file or not os.path.isfile(run.routine_file):
            continue
        seen.add(run.routine)
        try:
            # Parsed, not loaded: only expect: is needed, and a routine that no longer validates (or
            # needs env vars this shell lacks) can still be late.
            doc = parse_file(Path(run.routine_file))
        except UserError:
            continue
        expect = expectation(doc.get("expect") if isinstance(doc, dict) else None, lambda *_: None)
        found = breaches(expect, store.list_runs(run.routine, limit=200)) if expect else []
        if found:
            late[run.routine] = "; ".join(b.text for b in found)
    return late


def cmd_show(args: argparse.Namespace) -> int:
    from ..runs.control import look_up
    from ..runs.store import open_store
    from .views import details_json, run_details, show_run

    store = open_store()
    details = run_details(store, look_up(store, args.run_id))
    if args.json:
        print(json.dumps(details_json(details), indent=2, default=str))
    else:
        print(show_run(details))
    return ExitCode.OK


def cmd_logs(args: argparse.Namespace) -> int:
    from ..runs.control import look_up
    from ..runs.store import open_store
    from .follow import print_logs

    store = open_store()
    print_logs(store, look_up(store, args.run_id), args.tail, args.follow, args.json)
    return ExitCode.OK
