"""``orchestrate metadata SOURCE``: catalog and profile a source without writing a routine.

It writes a one-step routine (``metadata`` executor: extract, profile, publish if asked) into the
orchestrator home and runs it like any routine, so the run is recorded, resumable and masked the
same way; then prints a summary read back from the target. A password in the source URL and the
API token travel as ``${env.…}`` secrets, never in the routine file or the run store.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Any

EXIT_OK, EXIT_USAGE = 0, 2
PASSWORD_VAR, TOKEN_VAR = "ORCHESTRATOR_METADATA_PASSWORD", "ORCHESTRATOR_API_TOKEN"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "metadata",
        parents=[common],
        help="catalog and profile a database or files (extract + profile [+ publish])",
    )
    parser.add_argument(
        "source", help="SQLAlchemy URL, local file or folder, s3://bucket/prefix or glue://DATABASE"
    )
    parser.add_argument("--target", metavar="URL", help="SQLAlchemy URL of the metadata store "
                        "(default: SQLite in the orchestrator home)")
    parser.add_argument(
        "--publish",
        metavar="URL",
        help=f"POST the result to this API (bearer token from ${TOKEN_VAR})",
    )
    parser.add_argument(
        "--mode",
        choices=("estimate", "sample", "exact"),
        default="estimate",
        help="estimate: database statistics or a sample (default); exact: a full scan",
    )
    parser.add_argument(
        "--include", action="append", metavar="GLOB", help="only schema.table (or file) matching"
    )
    parser.add_argument(
        "--exclude", action="append", metavar="GLOB", help="skip schema.table (or file) matching"
    )


def cmd_metadata(args: argparse.Namespace) -> int:
    from ..routine.load import load_routine
    from ..engine import RunOptions, plan
    from ..errors import RoutineError, UserError
    from ..runs.control import TrackedRun
    from ..registry import Registry
    from ..runs.store import open_store

    routine_path, env = _write_routine(args)
    registry = Registry()
    try:
        routine = load_routine(routine_path, {}, registry, env=env)
    except RoutineError as exc:
        # The user wrote no routine: paths into the generated one would mean nothing to them, so
        # each problem names only the param (source, mode, target...) against the source given.
        raise UserError("\n".join(f"{args.source}: {p.path.rsplit('.', 1)[-1]}: {p.message}"
                                  for p in exc.problems)) from None
    # With --json, stdout holds one document, written at the end.
    listeners = [] if args.json else [_renderer(args)]
    # Every metadata command runs a routine named "metadata": without allow_concurrent, profiling
    # one source would refuse to start while another is being profiled.
    options = RunOptions(max_parallel=1, allow_concurrent=True)
    tracked = TrackedRun(open_store(registry), plan(routine), listeners, options)
    tracked.claim()
    result = tracked.execute()
    failed = next((t for t in result.tasks if t.status == "failed"), None)
    cls: Any = registry.resolve("metadata").cls  # run_summary is the metadata executor's own
    # A failed run's target may hold a partial result: nothing is read back from it.
    summary = cls.run_summary(routine.steps[0].params, result.run_id) if failed is None else None
    if summary is not None:
        summary["run_id"] = result.run_id
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "error": failed.error if failed else None,
                    **(summary or {}),
                },
                default=str,
            )
        )
    elif failed is not None:
        print(f"{failed.task} failed: {failed.error}", file=sys.stderr)
    elif summary is not None:
        print(render_summary(summary))
    return result.exit_code


def _renderer(args: argparse.Namespace) -> Any:
    from .render import PlainRenderer

    # Progress on stderr, so stdout holds only the summary.
    return PlainRenderer(sys.stderr, quiet=not args.verbose)


def _write_routine(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The routine file (under the home, named by its content) and the environment it sees."""
    from ..home import home_dir

    # A copy that only this load sees: the password reaches the routine as ${env.X} without being
    # written to the file or the run store, or set in this process's environment for its children.
    env = dict(os.environ)
    source, password = _split_password(args.source)
    params: dict[str, Any] = {"source": source, "mode": args.mode}
    if password:
        env[PASSWORD_VAR] = password
        params["password"] = "${env.%s}" % PASSWORD_VAR
    for key in ("target", "include", "exclude"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    tasks = ["extract", "profile"]
    if args.publish:
        params["api_url"] = args.publish
        # Referenced only when set: ${env.X} of an unset variable is a validation error, and
        # publishing without a token is allowed.
        if env.get(TOKEN_VAR):
            params["api_token"] = "${env.%s}" % TOKEN_VAR
        tasks.append("publish")
    doc = {"routine_name": "metadata", "executors": [
        {"name": "metadata", "executor": "metadata", "params": params, "tasks": tasks}]}
    text = json.dumps(doc, indent=2)
    folder = home_dir() / "metadata" / "routines"
    folder.mkdir(parents=True, exist_ok=True)
    # Named by content (a file name, not a security check): the same command writes the same file
    # again instead of leaving one more behind per call.
    path = folder / f"{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"
    path.write_text(text)
    return str(path), env


def _split_password(url: str) -> tuple[str, str | None]:
    """``scheme://user:secret@host/db`` → (``scheme://user@host/db``, ``secret``)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    if "://" not in url:
        return url, None
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    # The last "@" ends the user info: an unencoded "@" in a password must not split the host.
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{host}" if parts.username else host
    # The URL carries the password percent-encoded (p%40ss); the driver is given it as typed.
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def render_summary(summary: dict[str, Any]) -> str:
    """Tables with row counts, then each column's type and figures; ``~`` marks an estimate."""
    lines = [f"{summary['source']} -> {summary['target']}  (run {summary['run_id']})"]
    columns: dict[str, list[dict[str, Any]]] = {}
    for column in summary["columns"]:
        columns.setdefault(column["table_name"], []).append(column)
    for table in summary["tables"]:
        rows = table["row_count"]
        exact = "" if table.get("row_count_exact") else "~"
        lines.append(
            f"\n{table['table_name']}  {exact}{rows if rows is not None else '?'} rows, "
            f"{table['column_count']} columns"
            + (f"  [{table['profile_note']}]" if table.get("profile_note") else "")
        )
        for c in columns.get(table["table_name"], []):
            lines.append("  " + _column_line(c))
    return "\n".join(lines)


def _column_line(c: dict[str, Any]) -> str:
    parts = [f"{c['column_name']:<24} {str(c['data_type'])[:24]:<24}"]
    if c.get("null_share") is not None:
        parts.append(f"nulls {c['null_share'] * 100:5.1f}%")
    if c.get("distinct_count") is not None:
        parts.append(f"distinct {'~' if c.get('distinct_approx') else ''}{c['distinct_count']}")
    if c.get("min_value") is not None:
        parts.append(f"range {str(c['min_value'])[:20]} .. {str(c['max_value'])[:20]}")
    if c.get("mean") is not None:
        parts.append(f"mean {c['mean']:.4g}")
    if c.get("sensitive"):
        parts.append("(sensitive: values hidden)")
    return "  ".join(parts)
