"""Kill -9 a staging run at several moments, rerun it, and check nothing is lost or duplicated."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executors.staging.executor import StagingExecutor
from orchestrator.executor import Context

ROUTINE = Path(__file__).resolve().parents[1] / "routines" / "test_routine"
MAPPER = {"column1": "name", "column2": "age", "column3": "job"}
HEADER, RENAMED_HEADER = b"column1,column2,column3\n", b"name,age,job\n"

CHILD = """
import sys, json
from orchestrator.executor import Context
from executors.staging.executor import StagingExecutor
params, home = json.loads(sys.argv[1]), sys.argv[2]
ex = StagingExecutor(**params)
ctx = lambda task: Context(run_id="crash", run_date="2026-11-22", routine_name="crash", step="stage",
                           task=task, home=__import__("pathlib").Path(home))
print("go", flush=True)
ex.transfer(ctx("transfer"))
ex.post_staging(ctx("post_staging"))
print("done", flush=True)
"""


def landed_files(landing: Path) -> dict[str, bytes]:
    files = {f"batch{i % 7}/f{i:04d}.csv": HEADER + f"name{i},{i},job{i}\n".encode() * (1 + i % 5)
             for i in range(2000)}
    files["big.csv"] = HEADER + b"Carol,29,teacher,with a longer line of text to pad it out\n" * 200_000
    for rel, data in files.items():
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_bytes(data)
    return files


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} \
        if folder.exists() else {}


def kill_when(child: subprocess.Popen, folder: Path | None, threshold: float) -> bool:
    """SIGKILL the child once ``folder`` holds ``threshold`` files (or after ``threshold`` seconds)."""
    deadline = time.monotonic() + (threshold if folder is None else 30)
    while child.poll() is None and time.monotonic() < deadline:
        if folder is not None and folder.exists() and sum(1 for _ in folder.rglob("*.csv")) >= threshold:
            break
        time.sleep(0.001)
    if child.poll() is not None:
        return False
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return True


def assert_nothing_lost(files: dict[str, bytes], landing: Path, archive: Path, dump: Path) -> None:
    """Every original is in landing or archive, intact; every visible dump file is complete and correct."""
    left, archived = tree(landing), tree(archive)
    for rel, data in files.items():
        assert left.get(rel) == data or archived.get(rel) == data, rel
    for rel, data in tree(dump).items():
        if not rel.rsplit("/", 1)[-1].startswith("."):
            assert data == RENAMED_HEADER + files[rel][len(HEADER):], rel


@pytest.mark.slow
def test_killed_runs_then_rerun_stage_everything_exactly_once(tmp_path: Path) -> None:
    landing, dump, archive, home = (tmp_path / n for n in ("landing", "dump", "archive", "home"))
    files = landed_files(landing)
    params = {"parent_directory": str(landing), "dump_directory": str(dump), "archive_directory": str(archive),
              "transform": f"{ROUTINE}/transforms.py:rename_columns", "transform_args": {"mapper": MAPPER}}
    env = {**os.environ, "PYTHONPATH": str(ROUTINE.parents[1])}
    rng = random.Random(20261122)
    kill_points = [(dump, 1), (dump, rng.randint(100, 1500)), (dump, 1990), (archive, 1),
                   (archive, rng.randint(100, 1500)), (archive, 1990), (None, rng.uniform(0, 0.1))]
    killed_mid_run = 0
    for folder, threshold in kill_points:
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(params), str(home)],
                                 stdout=subprocess.PIPE, env=env, text=True)
        assert child.stdout.readline().strip() == "go"
        killed_mid_run += kill_when(child, folder, threshold)
        assert_nothing_lost(files, landing, archive, dump)
        if folder is archive:
            shutil.rmtree(archive)
            landed_files(landing)
    assert killed_mid_run >= 5

    ctx = {task: Context(run_id="rerun", run_date="2026-11-22", routine_name="crash", step="stage", task=task,
                         home=home) for task in ("transfer", "post_staging")}
    ex = StagingExecutor(**params)
    ex.transfer(ctx["transfer"])
    ex.post_staging(ctx["post_staging"])

    assert tree(landing) == {}
    assert tree(archive) == files
    assert tree(dump) == {rel: RENAMED_HEADER + data[len(HEADER):] for rel, data in files.items()}
    assert [p for p in dump.rglob(".*")] == []
