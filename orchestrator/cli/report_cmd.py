"""``orchestrate report``: a run, or a routine's last runs, as one HTML file."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..outcome import ExitCode


def cmd_report(args: argparse.Namespace) -> int:
    from ..runs.control import look_up, reap
    from ..runs.store import open_store
    from .report import history_report, run_report

    store = open_store()
    if args.history:
        routine = routine_name(args.target)
        runs = reap(store, store.list_runs(routine, limit=args.history))
        if not runs:
            from ..errors import UserError

            raise UserError(f"no runs recorded for routine {routine!r}; see `orchestrate runs`")
        page, default = history_report(store, routine, runs), f"{routine}-history.html"
    else:
        run = look_up(store, args.target)
        page, default = run_report(store, run), f"{run.routine}-{run.run_id[:8]}.html"
    if args.output == "-":
        sys.stdout.write(page)
        return ExitCode.OK
    path = os.path.abspath(args.output or default)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    print(json.dumps({"report": path, "bytes": len(page.encode())}) if args.json else path)
    return ExitCode.OK


def routine_name(target: str) -> str:
    """A routine named directly, or by its file (only its ``routine_name`` is read)."""
    if os.path.isfile(target):
        from ..routine.load import parse_file
        from pathlib import Path

        # Parsed, not validated: a routine whose file is broken today still has a history to show.
        doc = parse_file(Path(target))
        if isinstance(doc, dict) and isinstance(doc.get("routine_name"), str):
            return doc["routine_name"]
    return target
