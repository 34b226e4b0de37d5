"""A hostile machine: a damaged, locked, read-only, full or vanishing orchestrator home. Each gives
one line and exit 2 (the environment must be fixed), never a traceback, and no task runs without a
record to hold its claim (issue 7, items 6 and 10). Undecodable names reach logs escaped.

Full and read-only disks are real: a small tmpfs mounted for the test (as root), else a file size
limit (full) or a folder without write permission (read-only) when not root.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

FUNCTIONS = '''
import os, sys, time

def mark(marker):
    open(marker, "a").write("ran\\n")

def fill_then_talk(target, context=None):
    """Fill the disk, then print and log until the run store has no room for the run's log."""
    sys.stderr.write("FILLING\\n")
    try:
        with open(target, "wb") as handle:
            while True:
                handle.write(b"x" * 65536)
    except OSError:
        pass
    for i in range(300):
        print("line", i, "y" * 400)
        context.logger.info("log %d %s", i, "z" * 400)

def stubborn(seconds):
    """Ignores cancellation: the run stays alive this long after being asked to stop."""
    sys.stderr.write("STUBBORN\\n")
    sys.stderr.flush()
    time.sleep(float(seconds))

def undecodable(context=None):
    name = os.fsdecode(b"landing/\\xff-report.csv")
    context.logger.info("staged %s", name)
    print("printed", name, "and", "\\ud800")
'''


@pytest.fixture
def routine(tmp_path: Path) -> Callable[..., Path]:
    """A one-task routine calling ``function`` of FUNCTIONS with ``kwargs``."""
    (tmp_path / "functions.py").write_text(FUNCTIONS)

    def write(function: str, name: str = "env", in_process: bool = False, **kwargs: Any) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps(
                {
                    "routine_name": name,
                    "executors": [
                        {
                            "name": "work",
                            "executor": "python",
                            "params": {"path": "functions.py", "in_process": in_process},
                            "tasks": [
                                {"task": "call", "args": {"function": function, "kwargs": kwargs}}
                            ],
                        }
                    ],
                }
            )
        )
        return path

    return write


def orchestrate(
    home: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, ORCHESTRATOR_HOME=str(home), NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def one_line(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 2, no traceback, and the last stderr line (the error) says all of ``expected``."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr[
        -3000:
    ]
    line = proc.stderr.strip().splitlines()[-1]
    for text in expected:
        assert text in line, line
    return line


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real small file system at ``path`` (root only; the caller falls back otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        raise PermissionError(mounted.stderr.decode(errors="replace"))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Root with the right to mount (not every container has it): tried once, for real."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        try:
            with tmpfs(Path(folder), "size=16k"):
                return True
        except PermissionError:
            return False


def test_damaged_store_is_one_line_and_nothing_runs(
    routine: Callable[..., Path], orchestrator_home: Path, tmp_path: Path
) -> None:
    orchestrator_home.mkdir()
    (orchestrator_home / "runs.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    marker = tmp_path / "marker"
    one_line(
        orchestrate(orchestrator_home, "run", str(routine("mark", marker=str(marker)))),
        "runs.sqlite",
        "move it aside",
    )
    assert not marker.exists(), "a task ran without a run record"
    for command in (["runs"], ["show", "abcd"], ["wait", "abcd"], ["cancel", "abcd"]):
        one_line(orchestrate(orchestrator_home, *command), "runs.sqlite: file is not a database")


def test_store_locked_past_its_timeout_is_one_line(
    routine: Callable[..., Path], orchestrator_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    path = routine("mark", marker=str(marker))
    assert orchestrate(orchestrator_home, "run", str(path)).returncode == 0
    holder = sqlite3.connect(orchestrator_home / "runs.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc = orchestrate(
            orchestrator_home, "run", str(path), env={"ORCHESTRATOR_STORE_TIMEOUT": "0.5"}
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_line(proc, "database is locked", "kept it locked for 0.5s", "ORCHESTRATOR_STORE_TIMEOUT")
    assert marker.read_text() == "ran\n", "the refused run ran nothing"


def test_bad_store_timeout_is_one_line(
    routine: Callable[..., Path], orchestrator_home: Path, tmp_path: Path
) -> None:
    proc = orchestrate(
        orchestrator_home,
        "run",
        str(routine("mark", marker=str(tmp_path / "marker"))),
        env={"ORCHESTRATOR_STORE_TIMEOUT": "soon"},
    )
    one_line(proc, "ORCHESTRATOR_STORE_TIMEOUT='soon': expected seconds, from 0 to 86400")


def test_read_only_home_is_one_line(routine: Callable[..., Path], tmp_path: Path) -> None:
    home = tmp_path / "ro-home"
    marker = tmp_path / "marker"
    path = routine("mark", marker=str(marker))
    if can_mount():
        with tmpfs(home, "ro,size=64k"):
            proc = orchestrate(home, "run", str(path))
    else:
        home.mkdir()
        home.chmod(0o555)
        proc = orchestrate(home, "run", str(path))
    one_line(proc, f"run store {home}/runs.sqlite", f"make {home} writable")
    assert not marker.exists()


def test_home_that_cannot_be_created_is_one_line(
    routine: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    home = tmp_path / "a-file" / "home"
    one_line(
        orchestrate(home, "run", str(routine("mark", marker=str(tmp_path / "marker")))),
        f"orchestrator home {home}: cannot create it",
        "ORCHESTRATOR_HOME",
    )


def fill(path: Path) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(descriptor, b"\0" * 4096)
    os.close(descriptor)


def _limit_file_size() -> None:
    resource.setrlimit(
        resource.RLIMIT_FSIZE, (4096, 4096)
    )  # Python ignores SIGXFSZ: writes get EFBIG


def test_full_disk_before_the_claim_is_one_line(
    routine: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "full" / "home"
    marker = tmp_path / "marker"
    path = routine("mark", marker=str(marker))
    if not can_mount():
        pytest.skip("a full disk needs a small tmpfs (root); the file size limit test stands in")
    with tmpfs(home.parent, "size=128k"):
        fill(home.parent / "filler")
        proc = orchestrate(home, "run", str(path))
    one_line(proc, "database or disk is full", f"the disk of {home} is full", "free space")
    assert not marker.exists()


def test_file_size_limit_is_one_line(routine: Callable[..., Path], tmp_path: Path) -> None:
    """A write the kernel refuses (EFBIG, as with a quota): SQLite says "disk I/O error"."""
    home = tmp_path / "home"
    marker = tmp_path / "marker"
    path = routine("mark", marker=str(marker))
    proc = orchestrate(home, "run", str(path), preexec_fn=_limit_file_size)
    one_line(proc, f"run store {home}/runs.sqlite: disk I/O error", "a file size limit?")
    assert not marker.exists()


def test_disk_full_mid_run_stops_the_run_in_one_line(
    routine: Callable[..., Path], tmp_path: Path
) -> None:
    """The run's log can no longer be written: the run is stopped and ends failed, exit 2."""
    if not can_mount():
        pytest.skip("filling a disk mid-run needs a small tmpfs (root with the right to mount)")
    disk = tmp_path / "small"
    with tmpfs(disk, "size=1m"):
        proc = orchestrate(
            disk / "home", "run", str(routine("fill_then_talk", target=str(disk / "filler")))
        )
        (disk / "filler").unlink()
        shown = orchestrate(disk / "home", "runs", "--json")
    line = one_line(proc, "stopped and failed: the run store failed", "database or disk is full")
    assert line.startswith("run ")
    assert "FILLING" in proc.stderr
    (run,) = json.loads(shown.stdout)
    assert run["status"] in ("failed", "dead"), (
        "never left running, never succeeded (the disk was still full)"
    )


def test_home_deleted_mid_run_is_reclaimed_and_the_run_fails(
    routine: Callable[..., Path], orchestrator_home: Path
) -> None:
    """While the first run is still alive (its task ignores the cancel), a second start is refused;
    the first then ends failed (exit 2) and says why, its record in the re-created store."""
    # In this process: a call in a child process is killed within seconds of the cancel.
    path = routine("stubborn", name="vanishing", in_process=True, seconds=8)
    env = dict(os.environ, ORCHESTRATOR_HOME=str(orchestrator_home), NO_COLOR="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        for line in first.stderr:
            if "STUBBORN" in line:
                break
        shutil.rmtree(orchestrator_home)
        running = _wait_for_running(orchestrator_home, "vanishing")
        second = orchestrate(orchestrator_home, "run", str(path))
        assert first.poll() is None, "the first run is still alive"
        one_line(second, f"already running as run {running['run_id']}")
        rest = first.stderr.read()
        assert first.wait(timeout=60) == 2, rest
    finally:
        if first.poll() is None:
            first.kill()
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1] == (
        f"run {running['run_id']} stopped and failed: the run store "
        f"{orchestrator_home}/runs.sqlite was deleted while the run was going "
        "(was the orchestrator home removed?)"
    )
    shown = json.loads(orchestrate(orchestrator_home, "show", running["run_id"], "--json").stdout)
    assert shown["run"]["status"] == "failed", shown
    logs = orchestrate(orchestrator_home, "logs", running["run_id"]).stdout
    assert "run stopped: the run store" in logs


def _wait_for_running(home: Path, routine_name: str, timeout: float = 30) -> dict[str, Any]:
    """The running record of ``routine_name`` in the store at ``home``, once it is there again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (home / "runs.sqlite").exists():
            proc = orchestrate(
                home, "runs", "--json", "--status", "running", "--routine", routine_name
            )
            if proc.returncode == 0 and (runs := json.loads(proc.stdout)):
                return runs[0]
        time.sleep(0.2)
    raise AssertionError("the run did not re-claim its routine in the re-created store")


def test_record_vanishing_from_the_store_fails_the_run(orchestrator_home: Path) -> None:
    """The same watch for any store: a record that disappears is put back and the run fails."""
    from orchestrator.runs.store import RunRecord, SQLiteStore
    from orchestrator.runs.recorder import RunRecorder

    store = SQLiteStore(orchestrator_home / "runs.sqlite")
    failures: list[str] = []
    recorder = RunRecorder(
        store,
        RunRecord(run_id="r-1", routine="gone"),
        heartbeat_seconds=0.05,
        on_failure=failures.append,
        watch_seconds=0.05,
    )
    recorder.begin()
    store._write("DELETE FROM runs WHERE run_id = ?", ("r-1",))
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.05)
    recorder._stop.set()
    assert failures == ["its record vanished from the run store"]
    assert store.get_run("r-1").status == "running", "the claim is back while the run stops"


def test_undecodable_names_reach_the_log_escaped(
    routine: Callable[..., Path], orchestrator_home: Path
) -> None:
    """Print and log a file name that is not UTF-8 (and a lone surrogate), with strict streams."""
    proc = orchestrate(
        orchestrator_home,
        "run",
        str(routine("undecodable")),
        "--json",
        env={"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Logging error" not in proc.stderr and "Traceback" not in proc.stderr
    assert "printed landing/\\udcff-report.csv and \\ud800" in proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    logs = orchestrate(orchestrator_home, "logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "staged landing/\\udcff-report.csv" in logs.stdout
    assert "printed landing/\\udcff-report.csv and \\ud800" in logs.stdout
