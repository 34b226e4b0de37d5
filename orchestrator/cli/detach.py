"""``orchestrate run --detach``: the run goes on in a background process; its ``--param`` values
reach it through a private file, never its command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from ..outcome import ExitCode


def detach(args: argparse.Namespace, run_id: str) -> int:
    """Start the run in a background process; return once it has claimed the routine (or failed
    to)."""
    import subprocess
    import time

    from ..home import home_dir
    from ..runs.store import open_store

    # What the child prints before its run is recorded (a refused claim, a crash) lands here, and is
    # shown below if it exits before claiming.
    log_path = home_dir() / "logs" / f"{run_id}.out"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        args.routine,
        "--run-id",
        run_id,
        # No one watches the background process's console: its log file needs the failures only, and
        # the run's full record is in the store.
        "--quiet",
        "--max-parallel",
        str(args.max_parallel),
    ]
    params_file = write_private_params(args.param) if args.param else None
    if params_file is not None:  # a command line is readable by every user (ps, /proc/PID/cmdline)
        cmd += ["--params-file", str(params_file)]
    if args.allow_concurrent:
        cmd.append("--allow-concurrent")
    if args.only:
        cmd.append("--only=" + ",".join(args.only))
    if args.start:
        cmd.append(f"--from={args.start}")
    try:
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A session of its own: Ctrl-C in this terminal, or closing it (SIGHUP), must not
                # reach the run that was meant to outlive it.
                start_new_session=True,
                # Unbuffered, so the log file has each line as it is written, and nothing is lost in
                # a buffer if the run is killed.
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        store = open_store()
        # Return only once the child has claimed the routine: the run id printed then can be given
        # to wait, logs or cancel at once, and a child refused (a busy routine, a bad routine) is
        # reported here with its output and exit code instead of vanishing in the background.
        while store.get_run(run_id) is None:
            if child.poll() is not None:
                sys.stderr.write(log_path.read_text())
                # A child that exited 0 without recording a run did not run it either.
                return child.returncode or ExitCode.FAILED
            time.sleep(0.05)
    finally:
        if params_file is not None:  # read and removed by the child before it claims the run
            params_file.unlink(missing_ok=True)
    print(json.dumps({"run_id": run_id, "pid": child.pid}) if args.json else run_id)
    return ExitCode.OK


def write_private_params(pairs: list[str]) -> Any:
    """``--param`` values in a new file only this user can read (0600), for a detached run."""
    import tempfile
    from pathlib import Path

    from ..home import home_dir

    folder = home_dir() / "detach"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="run-", suffix=".params", dir=folder)  # created 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(pairs, handle)
    return Path(name)


def read_private_params(path: str | None) -> list[str]:
    """The ``--param`` values a detaching parent wrote to ``path``; removed once read."""
    if not path:
        return []
    from ..errors import UserError

    try:
        with open(path, encoding="utf-8") as handle:
            pairs = json.load(handle)
    except (OSError, ValueError) as exc:
        message = f"--params-file {path}: cannot read the detached run's params: {exc}"
        raise UserError(message) from None
    finally:
        # Removed even when it could not be read: the secret values it may hold must not stay on
        # disk.
        with contextlib.suppress(OSError):
            os.unlink(path)
    if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
        raise UserError(f"--params-file {path}: expected a JSON list of KEY=VALUE strings")
    return pairs
