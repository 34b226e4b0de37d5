"""Shared AWS behaviour: state map, backoff, waiting, records, clients, doctor checks, lazy imports."""
from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aws_fixtures import AwsEnv
from executors.aws.clients import AwsClients, DEFAULT_TOTAL_ATTEMPTS, retry_config
from executors.aws.outcomes import RemoteJobError, outcome
from executors.aws.polling import Backoff, DEFAULT_BACKOFF, wait_for
from executors.aws.record import RemoteRecord
from orchestrator.executor import Cancelled, Context


def context(tmp_path: Path, attempt: int = 1, event: threading.Event | None = None, task: str = "run_query") -> Context:
    return Context(run_id="run-1", run_date="2024-01-01", routine_name="r", step="s", task=task, attempt=attempt,
                   cancel_event=event, home=tmp_path)


def test_importing_aws_executors_does_not_load_boto3() -> None:
    code = ("import sys, executors.aws.work, executors.aws.executor, executors.athena, executors.glue,"
            " executors.redshift, executors.aws.tablespec;"
            "print('boto3' in sys.modules, 'botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("engine, raw, ours", [
    ("athena", "SUCCEEDED", "succeeded"), ("athena", "CANCELLED", "cancelled"), ("athena", "RUNNING", None),
    ("glue", "TIMEOUT", "failed"), ("glue", "ERROR", "failed"), ("glue", "STOPPED", "cancelled"), ("glue", "STOPPING", None),
    ("redshift", "FINISHED", "succeeded"), ("redshift", "ABORTED", "cancelled"), ("redshift", "PICKED", None),
])
def test_terminal_state_map(engine: str, raw: str, ours: str | None) -> None:
    assert outcome(engine, raw) == ours


def test_backoff_is_fast_first_then_proportional_and_capped() -> None:
    backoff, rng = Backoff(), random.Random(1)
    assert 0.18 <= backoff.delay(0, rng) <= 0.22
    assert backoff.delay(2.0, rng) <= 0.45
    assert 27 <= backoff.delay(3600, rng) <= 33


def simulated_calls(seconds: float, backoff: Backoff) -> tuple[int, float]:
    """Status calls and detection lag for remote work of ``seconds`` (simulated clock)."""
    t, calls, rng = 0.0, 0, random.Random(7)
    while True:
        calls += 1
        if t >= seconds:
            return calls, t - seconds
        t += backoff.delay(t, rng)


def test_two_second_job_is_seen_within_half_a_second_and_long_jobs_stay_cheap() -> None:
    calls, lag = simulated_calls(2, DEFAULT_BACKOFF)
    assert lag <= 0.5 and calls <= 12
    calls, _ = simulated_calls(1800, DEFAULT_BACKOFF)
    assert calls < 100, "a 30-minute job costs tens of status calls, not hundreds"


def test_wait_for_wakes_up_on_cancel(tmp_path: Path) -> None:
    event = threading.Event()
    threading.Timer(0.3, event.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        wait_for(lambda: 0, lambda v: False, context(tmp_path, event=event), backoff=Backoff(first=5, cap=5))
    assert time.monotonic() - started < 1.0


def test_wait_for_respects_deadline(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError):
        wait_for(lambda: 0, lambda v: False, context(tmp_path), deadline=time.monotonic() + 0.3)


def test_record_survives_attempts_and_tokens_change_per_generation(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    first = RemoteRecord(folder, "run_query-1.q0", "d1", "run-1", "r/s")
    token = first.token()
    first.save(id="abc", token=token)
    again = RemoteRecord(folder, "run_query-1.q0", "d1", "run-1", "r/s")
    assert again.remote_id == "abc" and again.token() == token and len(token) == 36
    assert RemoteRecord(folder, "run_query-1.q0", "other-args", "run-1", "r/s").remote_id is None
    again.next_generation()
    assert again.remote_id is None and again.token() != token


def test_call_key_is_stable_across_attempts_and_distinct_per_call(tmp_path: Path) -> None:
    from executors.athena import AthenaExecutor

    executor = AthenaExecutor(output_location="s3://out/")
    keys = [executor.call_key(context(tmp_path, attempt)) for attempt in (1, 2, 3, 1, 2)]
    assert keys == ["run_query-1", "run_query-1", "run_query-1", "run_query-2", "run_query-2"]


def test_remote_job_error_names_everything() -> None:
    error = RemoteJobError("glue", "job etl run", "jr_1", "FAILED", "OOM")
    assert str(error) == "glue job etl run jr_1 ended FAILED: OOM"


def test_clients_use_standard_retries_and_env_attempts(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    clients = AwsClients()
    client = clients.client("athena")
    assert client is clients.client("athena")
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.endpoint_url == aws.endpoint
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    assert retry_config().retries["total_max_attempts"] == DEFAULT_TOTAL_ATTEMPTS


def test_check_passes_against_reachable_endpoint(aws: AwsEnv) -> None:
    from executors.athena import AthenaExecutor
    from executors.glue import GlueExecutor
    from executors.redshift import RedshiftExecutor

    assert AthenaExecutor(output_location="s3://out/").check() == []
    assert GlueExecutor().check() == []
    assert RedshiftExecutor(database="dev", workgroup_name="wg1").check() == []


def test_check_reports_missing_credentials_and_dead_endpoint(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from executors.glue import GlueExecutor

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert any("no AWS credentials" in p for p in GlueExecutor().check())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    (problem,) = GlueExecutor().check()
    assert "127.0.0.1:9" in problem


def test_doctor_without_a_routine_checks_every_aws_executor_alike(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """Without credentials glue was a PROBLEM while athena and redshift were skipped: now all say so."""
    from orchestrator.doctor import diagnose

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    report = {item["subject"]: item["problems"] for item in diagnose()}
    for name in ("athena", "glue", "redshift"):
        assert any("no AWS credentials" in p for p in report[f"executor {name}"]), report
    assert report["executor python"] == [] and report["executor staging"] == []


def test_staging_check_probes_its_s3_locations(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from executors.staging import StagingExecutor

    aws.client("s3").create_bucket(Bucket="land")
    aws.client("s3").create_bucket(Bucket="dump")
    staging = StagingExecutor(parent_directory="s3://land/in/", dump_directory="s3://dump/out/")
    assert staging.check() == []
    missing = StagingExecutor(parent_directory="s3://land/in/", dump_directory="s3://nobucket/out/").check()
    assert len(missing) == 1 and "s3://nobucket/out/" in missing[0] and "NoSuchBucket" in missing[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    dead = staging.check()
    assert len(dead) == 3 and all("127.0.0.1:9" in p for p in dead), dead  # landing, dump, default archive
    assert StagingExecutor(parent_directory="/tmp/in", dump_directory="/tmp/out").check() == []
