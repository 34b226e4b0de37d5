"""Concurrent runs of one routine (``--allow-concurrent``): crash recovery undoes only what dead
runs left, never a live run's temp file, multipart upload or journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from executors.staging.locations import is_private, private_name
from orchestrator.runs.store import process_start
from staging_helpers import CSV, context, dead_journal, journal_owned_by, land, run, staging, tree

HOLD = '''
import os, shutil, time

def hold(source, destination, release=None):
    """Copy, stopping after the first bytes until ``release`` exists (when given)."""
    destination.write(source.read(8))
    if release:
        open(release + ".waiting", "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    shutil.copyfileobj(source, destination)
'''

RUN_A = """
import json, pathlib, sys
from executors.staging import s3store as _s3store
_s3store.SINGLE_PUT_LIMIT = 1  # every S3 write a multipart upload, in flight while held
from orchestrator.executor import Context
from executors.staging.executor import StagingExecutor
params, home = json.loads(sys.argv[1]), pathlib.Path(sys.argv[2])
ex = StagingExecutor(**params)
ctx = lambda task: Context(run_id="A", run_date="2026-11-22", routine_name="test", step="stage",
                           task=task, home=home)
ex.transfer(ctx("transfer"))
ex.post_staging(ctx("post_staging"))
print("done", flush=True)
"""


def wait_for(path: Path, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def uploads(s3: Any) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket="lake").get("Uploads", [])]


@pytest.mark.parametrize("dump", ["local", "s3"])
def test_a_second_run_leaves_the_first_runs_write_in_flight_alone(
    tmp_path: Path, dump: str, request: pytest.FixtureRequest
) -> None:
    """Run A is held in the middle of writing a.csv (a temp file, or a multipart upload); run B
    stages the same folder meanwhile, recovery included. A then finishes and succeeds."""
    s3 = request.getfixturevalue("s3") if dump == "s3" else None
    if s3 is not None:
        s3.create_bucket(Bucket="lake")
    land(tmp_path / "landing", {"a.csv": CSV})
    (tmp_path / "hold.py").write_text(HOLD)
    release = tmp_path / "release"
    params = {
        "parent_directory": str(tmp_path / "landing"),
        "archive_or_delete": "delete",
        "dump_directory": str(tmp_path / "dump") if s3 is None else "s3://lake/raw/",
        "transform": f"{tmp_path}/hold.py:hold",
    }
    run_a = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUN_A,
            json.dumps({**params, "transform_args": {"release": str(release)}}),
            str(tmp_path / "home"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        wait_for(Path(f"{release}.waiting"), run_a)
        journals = set(context(tmp_path).state_dir("staging").glob("journal-*"))
        in_flight = (
            [p for p in (tmp_path / "dump").iterdir() if is_private(p.name)]
            if s3 is None
            else uploads(s3)
        )
        assert len(journals) == 1 and len(in_flight) == 1

        run(staging(tmp_path, **params), tmp_path)  # run B, in this process

        assert journals <= set(context(tmp_path).state_dir("staging").glob("journal-*"))
        if s3 is None:
            assert all(p.exists() for p in in_flight)
        else:
            assert uploads(s3) == in_flight
    finally:
        release.touch()
        out, err = run_a.communicate(timeout=60)
    assert run_a.returncode == 0 and out.strip() == "done", err
    if s3 is None:
        assert tree(tmp_path / "dump") == {"a.csv": CSV}
    else:
        assert (
            s3.get_object(Bucket="lake", Key="raw/a.csv")["Body"].read() == CSV
            and uploads(s3) == []
        )
    assert tree(tmp_path / "landing") == {}
    assert list(context(tmp_path).state_dir("staging").glob("journal-*")) == []


def test_recovery_undoes_only_what_dead_runs_left(tmp_path: Path) -> None:
    """Alive: a running process with its start time. Dead: killed, or its pid reused by another
    process (here: this one, with another start time). Another host's journal cannot be judged."""
    dump = tmp_path / "dump"
    temps = {
        name: dump / private_name("partial", f"{name}.csv")
        for name in ("live", "host", "dead", "reused")
    }
    land(dump, {p.name: b"half" for p in temps.values()})
    live = subprocess.Popen(["sleep", "60"])
    try:
        journal_owned_by(tmp_path, live.pid, process_start(live.pid), run_id="live").begin(
            str(temps["live"])
        )
        journal_owned_by(tmp_path, 1, None, host="elsewhere", run_id="host").begin(
            str(temps["host"])
        )
        dead_journal(tmp_path, run_id="dead").begin(str(temps["dead"]))
        me = process_start(os.getpid())
        journal_owned_by(tmp_path, os.getpid(), (me or 0) + 1, run_id="reused").begin(
            str(temps["reused"])
        )
        land(tmp_path / "landing", {"a.csv": CSV})
        run(staging(tmp_path), tmp_path)
        assert {n: p.exists() for n, p in temps.items()} == {
            "live": True,
            "host": True,
            "dead": False,
            "reused": False,
        }
        left = sorted(
            p.name.split("-")[1] for p in context(tmp_path).state_dir("staging").glob("journal-*")
        )
        assert left == ["host", "live"]
        assert tree(dump) == {
            "a.csv": CSV,
            temps["live"].name: b"half",
            temps["host"].name: b"half",
        }
    finally:
        live.kill()
        live.wait()
    run(staging(tmp_path), tmp_path)  # the live run died meanwhile: its leftover goes now
    assert not temps["live"].exists() and temps["host"].exists()


def test_a_dead_runs_multipart_upload_is_aborted_by_its_id(s3: Any, tmp_path: Path) -> None:
    """Exactly the upload the dead run journaled; another upload to the same key is not its own."""
    s3.create_bucket(Bucket="lake")
    dead = s3.create_multipart_upload(Bucket="lake", Key="raw/a.csv")["UploadId"]
    other = s3.create_multipart_upload(Bucket="lake", Key="raw/a.csv")["UploadId"]
    journal = dead_journal(tmp_path)
    journal.begin("s3://lake/raw/a.csv")
    journal.upload("s3://lake/raw/a.csv", dead)
    land(tmp_path / "landing", {"b.csv": CSV})
    run(staging(tmp_path, dump_directory="s3://lake/raw/"), tmp_path)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="lake").get("Uploads", [])] == [
        other
    ]


def test_a_journal_still_without_its_owner_line_is_left_until_it_is_old(tmp_path: Path) -> None:
    """A writer creates its journal, then writes the owner line: in between it must not be taken
    for a dead run's (deleting it would send the live run's records into an unlinked file)."""
    folder = context(tmp_path).state_dir("staging")
    young, old = folder / "journal-young-0000.jsonl", folder / "journal-old-0000.jsonl"
    young.touch()
    old.touch()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    land(tmp_path / "landing", {"a.csv": CSV})
    run(staging(tmp_path), tmp_path)
    assert young.exists() and not old.exists()
