"""``orchestrate check``: which routines are late against their ``expect:``, with alerts sent."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..outcome import ExitCode
from .routine_arg import load


def cmd_check(args: argparse.Namespace) -> int:
    from ..alerts.lateness import check_routine
    from ..alerts.senders import all_senders
    from ..errors import UserError
    from ..runs.store import open_store

    store = open_store()
    files = args.routines or known_routine_files(store)
    results, unreadable = [], []
    for path in files:
        try:
            routine = load(argparse.Namespace(param=[], run_id=None), path)
        except UserError as exc:
            # A routine that cannot be read cannot be judged either: it is listed, and fails the
            # exit code below, rather than passing as "not late".
            unreadable.append({"routine_file": path, "error": str(exc).splitlines()[0]})
            continue
        results.append(check_routine(store, routine, all_senders).to_dict())
    if args.json:
        print(json.dumps({"routines": results, "unreadable": unreadable}, indent=2))
    else:
        for item in results:
            print(f"{'LATE' if item['late'] else 'ok':5} {item['routine']}")
            for breach in item["breaches"]:
                print(f"      - {breach['text']}")
            for sent in item["notified"]:
                print(
                    f"      notified {sent['target']}"
                    if sent["ok"]
                    else f"      notification to {sent['target']} " f"failed: {sent['error']}"
                )
        for item in unreadable:
            print(f"ERROR {item['routine_file']}: {item['error']}")
    late = any(item["late"] for item in results)
    return ExitCode.FAILED if late or unreadable else ExitCode.OK


def known_routine_files(store: Any) -> list[str]:
    """The file each routine in the store last ran from, one per routine name, that still exists."""
    files: dict[str, str] = {}
    for run in store.list_runs(limit=100_000):
        # list_runs answers newest first, so the first file seen per routine is the one it last ran
        # from; a file moved or deleted since cannot be read for its expect: block.
        if run.routine not in files and run.routine_file and os.path.isfile(run.routine_file):
            files[run.routine] = run.routine_file
    return sorted(files.values())
