"""What the staging tests share: sample CSVs, a context, landing and reading folders, an executor,
and journals owned by processes that are dead or alive."""
from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from executors.staging.journal import Journal, Owner
from executors.staging.executor import StagingExecutor
from orchestrator.executor import Context
from orchestrator.runs.store import process_start

ROUTINE = Path(__file__).resolve().parents[1] / "routines" / "test_routine"
MAPPER = {"column1": "name", "column2": "age", "column3": "job"}
CSV = b"column1,column2,column3\nAlice,34,engineer\nBob,45,plumber\n"
RENAMED = b"name,age,job\nAlice,34,engineer\nBob,45,plumber\n"


def context(tmp_path: Path, task: str = "transfer", event: threading.Event | None = None) -> Context:
    return Context(run_id="r1", run_date="2026-11-22", routine_name="test", step="stage", task=task,
                   home=tmp_path / "home", cancel_event=event)


def land(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def staging(tmp_path: Path, **params: object) -> StagingExecutor:
    base = {"parent_directory": str(tmp_path / "landing"), "dump_directory": str(tmp_path / "dump"),
            "archive_directory": str(tmp_path / "archive")}
    return StagingExecutor(**{**base, **params})


def run(executor: StagingExecutor, tmp_path: Path) -> tuple:
    return executor.transfer(context(tmp_path)), executor.post_staging(context(tmp_path, "post_staging"))


def journal_owned_by(tmp_path: Path, pid: int, started: int | None, host: str | None = None,
                     run_id: str = "other") -> Journal:
    """A journal in the staging state folder, as the process ``pid`` (started at ``started``)
    writes it."""
    journal = Journal(context(tmp_path).state_dir("staging"), run_id)
    journal.owner = Owner(run_id, host or socket.gethostname(), pid, started)
    return journal


def dead_journal(tmp_path: Path, run_id: str = "dead") -> Journal:
    """A journal whose writer was killed (its pid may be reused since: the start time tells)."""
    child = subprocess.Popen(["sleep", "60"])
    started = process_start(child.pid)
    child.kill()
    child.wait()
    return journal_owned_by(tmp_path, child.pid, started, run_id=run_id)
