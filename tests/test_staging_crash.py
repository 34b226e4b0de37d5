"""Kill -9 staging runs at several moments, rerun, and check nothing is lost, doubled or corrupted.

Five trials in all, one or two per configuration (bench/bench_staging_kill.py runs many more)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import aws_fixtures  # noqa: F401  (puts bench/ on sys.path)
from bench_staging_kill import Scene, landed_files, run_trials


def assert_trials_held(scene: Scene, points: list[tuple[str, float]], min_killed: int) -> None:
    report = run_trials(scene, points)
    assert report.problems.ok, report.problems
    assert report.final_rc == 0, report.final_error
    assert report.final.ok, report.final
    assert report.killed >= min_killed  # the kills did land inside runs


@pytest.mark.slow
def test_local_runs_killed_in_transfer_and_archive_then_rerun(tmp_path: Path) -> None:
    scene = Scene("local", "archive", True, tmp_path, landed_files(600, big=2 * 2**20))
    rng = random.Random(20261122)
    points = [("dump", rng.randint(100, 500)), ("archive", rng.randint(20, 200))]
    assert_trials_held(scene, points, min_killed=1)  # archiving is fast: the kill may come late


@pytest.mark.slow
def test_local_runs_killed_while_deleting_then_rerun(tmp_path: Path) -> None:
    scene = Scene("local", "delete", False, tmp_path, landed_files(600))
    assert_trials_held(scene, [("landing_gone", 300)], min_killed=1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["delete", "archive"])
def test_s3_runs_killed_mid_copy_or_mid_archive_then_rerun(
    s3: Any, tmp_path: Path, moto_server: str, mode: str
) -> None:
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    scene = Scene("s3", mode, mode == "archive", tmp_path, landed_files(60), s3, env)
    point = ("archive", 10) if mode == "archive" else ("dump", 20)  # mid archive copies, mid copies
    assert_trials_held(scene, [point], min_killed=1)
