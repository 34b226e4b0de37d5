"""What the staging tests share: sample CSVs, a context, landing and reading folders, an executor."""
from __future__ import annotations

import threading
from pathlib import Path

from executors.staging.executor import StagingExecutor
from orchestrator.executor import Context

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
