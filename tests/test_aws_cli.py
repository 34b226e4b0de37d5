"""The real CLI in a subprocess, talking to the test's moto server: signals and timeouts stop remote work."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from aws_fixtures import HOLD, AwsEnv, AthenaSim, GlueSim, write_json

ORCHESTRATE = str(Path(sys.executable).with_name("orchestrate"))
pytestmark = pytest.mark.slow


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([ORCHESTRATE, "run", str(path), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def wait_until(condition: Callable[[], bool], seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def athena_routine(tmp: Path, sql: str, **task: Any) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "cli_athena", "executors": [
        {"name": "lake", "executor": "athena", "params": {"output_location": "s3://results/"},
         "tasks": [{"task": "run_query", "args": {"sql": sql}, **task}]}]})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_cancels_long_athena_query(sig: int, aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT long", hold=True)
    process = start(athena_routine(tmp_path, "SELECT long FROM big"))
    try:
        wait_until(lambda: any(e.status == "RUNNING" for e in athena_sim.executions()))
        time.sleep(0.3)
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    doc = json.loads(out)
    (execution,) = athena_sim.executions()
    assert process.returncode == 130, err
    assert doc["status"] == "cancelled" and doc["tasks"][0]["status"] == "cancelled"
    assert execution.id in doc["tasks"][0]["error"]
    assert execution.status == "CANCELLED"


def test_timeout_cancels_athena_query_via_cli(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT long", hold=True)
    process = start(athena_routine(tmp_path, "SELECT long FROM big", timeout=2))
    out, err = process.communicate(timeout=40)
    doc = json.loads(out)
    assert process.returncode == 1, err
    assert doc["tasks"][0]["status"] == "failed" and "timed out after 2s" in doc["tasks"][0]["error"]
    assert athena_sim.executions()[0].status == "CANCELLED"


def test_sigint_stops_glue_job_run(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    aws.client("glue").create_job(Name="etl", Role="arn:aws:iam::123456789012:role/glue", Command={"Name": "glueetl"})
    aws.set_transition("glue::job_run", HOLD)
    glue_sim.on("etl", hold=True)
    path = write_json(tmp_path / "routine.json", {"routine_name": "cli_glue", "executors": [
        {"name": "etl", "executor": "glue", "tasks": [{"task": "run_job", "args": {"job_name": "etl"}}]}]})
    process = start(path)
    try:
        wait_until(lambda: "etl" in glue_sim.backend.jobs and any(r.status == "RUNNING" for r in glue_sim.runs("etl")))
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    (run,) = glue_sim.runs("etl")
    assert process.returncode == 130, err
    assert json.loads(out)["tasks"][0]["status"] == "cancelled"
    assert run.status == "STOPPED" and glue_sim.stop_calls == [[run.job_run_id]]
