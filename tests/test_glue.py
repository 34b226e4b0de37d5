"""Glue executor against a real moto server over HTTP, run through the real engine."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aws_fixtures import HOLD, AwsEnv, GlueSim, run_routine, write_json

ROLE = "arn:aws:iam::123456789012:role/glue"


def routine(tmp: Path, tasks: list[Any]) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "glue_test", "executors": [
        {"name": "etl", "executor": "glue", "tasks": tasks}]})


def make_job(aws: AwsEnv, name: str = "etl", concurrency: int = 1) -> None:
    aws.client("glue").create_job(Name=name, Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://s/x.py"},
                                  ExecutionProperty={"MaxConcurrentRuns": concurrency})


def test_job_succeeds_and_its_logs_reach_our_log(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    make_job(aws)
    glue_sim.on("etl", logs=["reading s3://landing/", "wrote 42 rows"], error_logs=["WARN spark thing"])
    caplog.set_level(logging.INFO)
    path = routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl", "arguments": {"--day": "2024-01-01"},
                                                           "worker_type": "G.1X", "number_of_workers": 2}}])
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded", task.error
    (run,) = glue_sim.runs("etl")
    meta = task.metrics.execution_metadata
    assert meta["run_id"] == run.job_run_id and meta["raw_state"] == "SUCCEEDED" and meta["log_lines"] == 3
    assert run.arguments["--day"] == "2024-01-01" and len(run.arguments["--orchestrator_run_token"]) == 36
    assert run.worker_type == "G.1X" and run.number_of_workers == 2
    assert f"[glue {run.job_run_id} output] wrote 42 rows" in caplog.text
    assert f"[glue {run.job_run_id} error] WARN spark thing" in caplog.text


def test_missing_log_groups_are_tolerated(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_job(aws)
    (task,) = run_routine(routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl"}}])).tasks
    assert task.status == "succeeded", task.error
    assert task.metrics.execution_metadata["log_lines"] == 0


def test_failed_run_carries_glue_error_message(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_job(aws)
    glue_sim.on("etl", state="FAILED", error="AnalysisException: Path does not exist: s3://landing/x")
    (task,) = run_routine(routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl"}}])).tasks
    (run,) = glue_sim.runs("etl")
    assert task.status == "failed" and task.error_type == "RemoteJobError"
    assert run.job_run_id in task.error and "job etl run" in task.error and "ended FAILED" in task.error
    assert "Path does not exist" in task.error


@pytest.mark.parametrize("state, status", [("TIMEOUT", "failed"), ("ERROR", "failed"), ("STOPPED", "cancelled")])
def test_terminal_state_map(state: str, status: str, aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_job(aws)
    glue_sim.on("etl", state=state, error="why")
    (task,) = run_routine(routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl"}}])).tasks
    assert task.status == status and state in task.error


def test_status_errors_past_the_retry_budget_are_waited_out(aws: AwsEnv, glue_sim: GlueSim, fault_proxy: Any,
                                                            tmp_path: Path) -> None:
    """GetJobRun throttled past botocore's budget while the run goes on: the same attempt keeps waiting."""
    make_job(aws)
    aws.set_transition("glue::job_run", HOLD)
    glue_sim.on("etl", hold=True)
    proxy = fault_proxy([(400, "ThrottlingException", "Rate exceeded")] * 3, operation="GetJobRun")

    def release() -> None:
        while sum(t.endswith(".GetJobRun") for t in proxy.seen) < 6:
            time.sleep(0.05)
        glue_sim.on("etl", state="SUCCEEDED")

    threading.Thread(target=release, daemon=True).start()
    path = routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl"}, "retries": 2, "retry_delay": 0.1}])
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded" and task.attempts == 1, task.error
    assert len(glue_sim.runs("etl")) == 1 and proxy.faults == []
    assert sum("StartJobRun" in t for t in proxy.seen) == 1


def test_lost_start_reply_does_not_start_a_second_run(aws: AwsEnv, glue_sim: GlueSim, fault_proxy: Any, tmp_path: Path) -> None:
    make_job(aws, concurrency=5)
    proxy = fault_proxy([(500, "InternalServiceException", "reply lost")], match="StartJobRun", after=True)
    (task,) = run_routine(routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl"}}])).tasks
    assert task.status == "succeeded", task.error
    assert proxy.faults == [] and sum("StartJobRun" in t for t in proxy.seen) == 1
    assert len(glue_sim.runs("etl")) == 1


def test_timeout_stops_the_run(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_job(aws)
    aws.set_transition("glue::job_run", HOLD)
    glue_sim.on("etl", hold=True)
    started = time.monotonic()
    (task,) = run_routine(routine(tmp_path, [{"task": "run_job", "args": {"job_name": "etl"}, "timeout": 1}])).tasks
    (run,) = glue_sim.runs("etl")
    assert time.monotonic() - started < 8
    assert task.status == "failed" and "timed out after 1s" in task.error
    assert run.status == "STOPPED" and glue_sim.stop_calls == [[run.job_run_id]]


def make_crawler(aws: AwsEnv) -> None:
    aws.client("glue").create_crawler(Name="people", Role=ROLE, DatabaseName="lake",
                                      Targets={"S3Targets": [{"Path": "s3://lake/people/"}]})


def test_crawler_runs_to_completion(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_crawler(aws)
    aws.set_transition("glue::crawl", {"progression": "immediate"})
    (task,) = run_routine(routine(tmp_path, [{"task": "run_crawler", "args": {"crawler_name": "people"}}])).tasks
    assert task.status == "succeeded", task.error
    assert task.metrics.execution_metadata["raw_state"] == "SUCCEEDED"
    assert task.metrics.execution_metadata["joined_running_crawl"] is False
    assert len(glue_sim.backend.crawlers["people"].crawls) == 1


def test_crawler_already_running_is_waited_for(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_crawler(aws)
    aws.client("glue").start_crawler(Name="people")
    crawler = glue_sim.backend.crawlers["people"]
    seen_running = threading.Event()
    original_get = glue_sim.backend.get_crawler

    def get_crawler(name: str) -> Any:
        found = original_get(name)
        seen_running.set()  # the executor has looked at the running crawl: now it may finish
        return found

    glue_sim.backend.get_crawler = get_crawler  # type: ignore[method-assign]

    def finish() -> None:
        # Not a fixed sleep: on a loaded machine the executor may look later than any fixed time,
        # find the crawl finished and start a second one (which then never ends).
        if seen_running.wait(60):
            time.sleep(0.3)
            crawler.crawls[-1].status = "COMPLETED"

    threading.Thread(target=finish, daemon=True).start()
    steps = [{"task": "run_crawler", "args": {"crawler_name": "people"}, "timeout": 120}]
    (task,) = run_routine(routine(tmp_path, steps)).tasks
    assert task.status == "succeeded", task.error
    assert task.metrics.execution_metadata["joined_running_crawl"] is True
    assert len(crawler.crawls) == 1


def test_crawler_failure_has_reason(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_crawler(aws)
    aws.set_transition("glue::crawl", {"progression": "immediate"})

    original = glue_sim.backend.crawlers["people"].start_crawler

    def start() -> None:
        original()
        glue_sim.backend.crawlers["people"].crawls[-1]._error = "Insufficient Lake Formation permission(s)"

    glue_sim.backend.crawlers["people"].start_crawler = start
    (task,) = run_routine(routine(tmp_path, [{"task": "run_crawler", "args": {"crawler_name": "people"}}])).tasks
    assert task.status == "failed" and "crawler people ended FAILED" in task.error
    assert "Lake Formation" in task.error


def test_catalog_database_and_table_from_spec(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    table = {"database": "lake", "table": "people", "location": "s3://lake/people/", "format": "csv", "skip_header": True,
             "columns": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}
    wider = dict(table, columns=table["columns"] + [{"name": "tags", "type": "array<string>"}])
    tasks = [{"task": "create_database", "args": {"database": "lake"}},
             {"task": "create_database", "args": {"database": "lake"}},
             {"task": "create_table", "args": table},
             {"task": "create_table", "args": wider}]
    result = run_routine(routine(tmp_path, tasks))
    assert [t.status for t in result.tasks] == ["succeeded"] * 4, [t.error for t in result.tasks]
    assert [t.metrics.execution_metadata.get("created", t.metrics.execution_metadata.get("action")) for t in result.tasks] == [
        True, False, "created", "updated"]
    got = aws.client("glue").get_table(DatabaseName="lake", Name="people")["Table"]
    assert [c["Type"] for c in got["StorageDescriptor"]["Columns"]] == ["string", "int", "array<string>"]
    assert got["StorageDescriptor"]["SerdeInfo"]["Parameters"]["field.delim"] == ","
    assert got["Parameters"]["skip.header.line.count"] == "1"
