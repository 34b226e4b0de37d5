"""Athena executor against a real moto server over HTTP, run through the real engine."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from aws_fixtures import HOLD, AwsEnv, AthenaSim, run_routine, write_json

OUTPUT = "s3://athena-results/out/"
ORCHESTRATE = str(Path(sys.executable).with_name("orchestrate"))


def routine(tmp: Path, tasks: list[Any], **params: Any) -> Path:
    doc = {"routine_name": "athena_test", "executors": [
        {"name": "lake", "executor": "athena", "params": {"output_location": OUTPUT, "database": "lake", **params},
         "tasks": tasks}]}
    return write_json(tmp / "routine.json", doc)


def only(result: Any) -> Any:
    assert len(result.tasks) == 1
    return result.tasks[0]


def test_query_succeeds_with_metadata_and_rows(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    aws.client("s3").create_bucket(Bucket="athena-results")
    results = {"account_id": "123456789012", "region": "us-east-1", "results": [{
        "rows": [{"Data": [{"VarCharValue": "name"}]}, {"Data": [{"VarCharValue": "ada"}]}, {"Data": [{"VarCharValue": "bob"}]}],
        "column_info": [{"CatalogName": "c", "SchemaName": "s", "TableName": "t", "Name": "name", "Label": "name",
                         "Type": "varchar", "Precision": 0, "Scale": 0, "Nullable": "NULLABLE", "CaseSensitive": True}]}]}
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"{aws.endpoint}/moto-api/static/athena/query-results",
                                                  data=json.dumps(results).encode(), method="POST")).close()
    athena_sim.on("SELECT name", scanned=1234)
    path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT name FROM people", "result_rows": 1}}])
    task = only(run_routine(path))
    assert task.status == "succeeded", task.error
    (query,) = task.metrics.execution_metadata["queries"]
    execution = athena_sim.executions("SELECT name")[0]
    assert query["id"] == execution.id and query["raw_state"] == "SUCCEEDED"
    assert query["bytes_scanned"] == 1234 and task.metrics.execution_metadata["bytes_scanned"] == 1234
    assert query["output_location"].startswith(OUTPUT) and query["rows"] == [{"name": "ada"}]
    assert query["rows_truncated"] is True
    assert execution.context == {"Database": "lake", "Catalog": "AwsDataCatalog"}


def test_several_statements_and_update_count(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    athena_sim.on("INSERT INTO a", update_count=7)
    athena_sim.on("INSERT INTO b", update_count=5)
    sql = "INSERT INTO a SELECT 1; -- comment; still comment\nINSERT INTO b SELECT ';'"
    task = only(run_routine(routine(tmp_path, [{"task": "run_query", "args": {"sql": sql}}])))
    assert task.status == "succeeded", task.error
    assert [q["update_count"] for q in task.metrics.execution_metadata["queries"]] == [7, 5]
    assert task.metrics.inserts == 12 and task.metrics.total_rows == 12
    assert [e.query for e in athena_sim.executions()] == ["INSERT INTO a SELECT 1", "-- comment; still comment\nINSERT INTO b SELECT ';'"]


def test_failure_names_query_and_reason_and_stops_the_script(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    athena_sim.on("SELECT broken", state="FAILED", reason="COLUMN_NOT_FOUND: line 1:8: Column 'broken' cannot be resolved")
    sql = "SELECT broken FROM t; SELECT 2"
    task = only(run_routine(routine(tmp_path, [{"task": "run_query", "args": {"sql": sql}}])))
    (execution,) = athena_sim.executions()
    assert task.status == "failed" and task.error_type == "RemoteJobError"
    assert execution.id in task.error and "FAILED" in task.error and "Column 'broken' cannot be resolved" in task.error
    assert "SELECT broken" in task.error


def test_execution_parameters_and_deterministic_token(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    tokens: list[str] = []
    import boto3

    original = boto3.session.Session.client

    def client(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        made.meta.events.register("before-parameter-build.athena.StartQueryExecution",
                                  lambda params, **_: tokens.append(params["ClientRequestToken"]))
        return made

    boto3.session.Session.client = client  # type: ignore[method-assign]
    try:
        path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT * FROM t WHERE d = ?", "parameters": ["'2024-01-01'"]}}])
        assert only(run_routine(path)).status == "succeeded"
    finally:
        boto3.session.Session.client = original  # type: ignore[method-assign]
    assert athena_sim.executions()[0].execution_parameters == ["'2024-01-01'"]
    (token,) = tokens
    assert 32 <= len(token) <= 128 and str(uuid.UUID(token)) == token


def test_cost_guard_fails_finished_query(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    athena_sim.on("SELECT big", scanned=5_000_000)
    path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT big FROM t"}}], max_bytes_scanned=1_000_000)
    task = only(run_routine(path))
    assert task.status == "failed" and task.error_type == "CostGuardExceeded"
    assert "5000000" in task.error and "max_bytes_scanned=1000000" in task.error


def test_cost_guard_stops_running_query(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT huge", hold=True, scanned=9_000_000)
    path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT huge FROM t"}}], max_bytes_scanned=1_000_000)
    task = only(run_routine(path))
    assert task.status == "failed" and task.error_type == "CostGuardExceeded" and "stopped" in task.error
    assert athena_sim.executions()[0].status == "CANCELLED"


def test_retry_reattaches_to_succeeded_query(aws: AwsEnv, athena_sim: AthenaSim, fault_proxy: Any, tmp_path: Path) -> None:
    """Attempt 1 loses GetQueryResults (3 × 500, all retries spent) after the query succeeded: attempt 2 must not resubmit."""
    proxy = fault_proxy([(500, "InternalServerException", "boom")] * 3, match="GetQueryResults")
    path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT 1", "result_rows": 5}, "retries": 1, "retry_delay": 0.1}])
    task = only(run_routine(path))
    assert task.status == "succeeded" and task.attempts == 2, task.error
    assert len(athena_sim.executions()) == 1
    assert task.metrics.execution_metadata["queries"][0]["reattached"] is True
    assert sum("StartQueryExecution" in t for t in proxy.seen) == 1


def test_status_errors_past_the_retry_budget_are_waited_out(aws: AwsEnv, athena_sim: AthenaSim, fault_proxy: Any,
                                                            tmp_path: Path) -> None:
    """GetQueryExecution throttled past botocore's budget: the same attempt keeps polling; nothing is resubmitted."""
    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT slow", hold=6)
    faults = [(400, "ThrottlingException", "Rate exceeded")] * 3 + [(500, "InternalServerException", "boom")] * 3
    proxy = fault_proxy(faults, match="GetQueryExecution")
    path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT slow"}, "retries": 1, "retry_delay": 0.1}])
    task = only(run_routine(path))
    assert task.status == "succeeded" and task.attempts == 1, task.error
    assert proxy.faults == [] and len(athena_sim.executions()) == 1
    assert sum("StartQueryExecution" in t for t in proxy.seen) == 1


def test_throttling_and_5xx_are_retried(aws: AwsEnv, athena_sim: AthenaSim, fault_proxy: Any, tmp_path: Path) -> None:
    proxy = fault_proxy([(400, "ThrottlingException", "Rate exceeded"), (503, "ServiceUnavailable", "down")],
                        match="StartQueryExecution")
    task = only(run_routine(routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT 1"}}])))
    assert task.status == "succeeded" and task.attempts == 1, task.error
    assert sum("StartQueryExecution" in t for t in proxy.seen) == 3
    assert len(athena_sim.executions()) == 1


def test_timeout_cancels_query(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT forever", hold=True)
    path = routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT forever"}, "timeout": 1}])
    started = time.monotonic()
    task = only(run_routine(path))
    assert time.monotonic() - started < 8
    assert task.status == "failed" and "timed out after 1s" in task.error
    assert athena_sim.executions()[0].status == "CANCELLED"


def test_ddl_tasks_render_from_spec(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    tasks = [
        {"task": "create_table", "args": {"table": "people", "location": "s3://lake/people/", "format": "csv",
                                          "skip_header": True, "columns": [{"name": "name", "type": "string"},
                                                                           {"name": "age", "type": "int"}],
                                          "partition_keys": [{"name": "dt", "type": "string"}]}},
        {"task": "repair_table", "args": {"table": "people", "partitions": [{"values": {"dt": "2024-01-01"}}]}},
        {"task": "repair_table", "args": {"table": "people"}},
        {"task": "create_table_as", "args": {"table": "adults", "sql": "SELECT * FROM people WHERE age > 17",
                                             "location": "s3://lake/adults/"}},
        {"task": "drop_table", "args": {"table": "adults"}},
    ]
    result = run_routine(routine(tmp_path, tasks))
    assert [t.status for t in result.tasks] == ["succeeded"] * 5, [t.error for t in result.tasks]
    queries = [e.query for e in athena_sim.executions()]
    assert queries[0].startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `lake`.`people` (\n  `name` string,\n  `age` int\n)")
    assert "PARTITIONED BY (`dt` string)" in queries[0] and "'skip.header.line.count'='1'" in queries[0]
    assert queries[1] == "ALTER TABLE `lake`.`people` ADD IF NOT EXISTS PARTITION (`dt` = '2024-01-01')"
    assert queries[2] == "MSCK REPAIR TABLE `lake`.`people`"
    assert queries[3].startswith('CREATE TABLE "lake"."adults" WITH (format = \'PARQUET\', external_location = \'s3://lake/adults/\') AS')
    assert queries[4] == "DROP TABLE IF EXISTS `lake`.`adults`"


def test_second_call_of_same_task_is_not_mistaken_for_a_retry(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    tasks = [{"task": "repair_table", "args": {"table": "people"}}, {"task": "repair_table", "args": {"table": "people"}}]
    result = run_routine(routine(tmp_path, tasks))
    assert [t.status for t in result.tasks] == ["succeeded", "succeeded"]
    assert len(athena_sim.executions()) == 2
    assert all(not t.metrics.execution_metadata["queries"][0]["reattached"] for t in result.tasks)


def validate(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORCHESTRATE, "validate", str(path)], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("tasks, params, expected", [
    ([{"task": "create_table", "args": {"table": "t", "location": "s3://b/t/", "columns": [{"name": "a", "type": "strng"}]}}],
     {}, "executors[0].tasks[0].args.columns[0].type: unknown column type 'strng'"),
    ([{"task": "create_table", "args": {"table": "t; DROP", "location": "s3://b/t/", "columns": [{"name": "a", "type": "int"}]}}],
     {}, "executors[0].tasks[0].args.table: illegal identifier 't; DROP'"),
    ([{"task": "run_query", "args": {"sql": "SELECT 1", "sql_file": "q.sql"}}], {}, "executors[0].tasks[0].args.sql: give exactly one of sql and sql_file"),
    (["drop_table"], {"output_location": None}, "output_location"),
], ids=["unknown-type", "illegal-identifier", "sql-and-sql-file", "missing-output-location"])
def test_bad_specs_rejected_at_validate_time(tasks: list[Any], params: dict[str, Any], expected: str, tmp_path: Path) -> None:
    doc = {"routine_name": "bad", "executors": [{"name": "lake", "executor": "athena",
                                                  "params": {"output_location": OUTPUT}, "tasks": tasks}]}
    for key, value in params.items():
        if value is None:
            del doc["executors"][0]["params"][key]
    path = write_json(tmp_path / "bad.json", doc)
    import os
    result = validate(path, dict(os.environ))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stdout + result.stderr
