"""Redshift Data API executor against a real moto server over HTTP, run through the real engine."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aws_fixtures import AwsEnv, RedshiftSim, run_routine, write_json

PARAMS = {"database": "dev", "cluster_identifier": "analytics", "db_user": "loader"}
ROLE = "arn:aws:iam::123456789012:role/redshift"


def routine(tmp: Path, tasks: list[Any], **params: Any) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "rs_test", "executors": [
        {"name": "dw", "executor": "redshift", "params": {**PARAMS, **params}, "tasks": tasks}]})


def test_statements_run_in_order_with_rows_and_long_polling(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    redshift_sim.on("DELETE", rows=3, after=2)
    redshift_sim.on("INSERT", rows=10)
    path = routine(tmp_path, [{"task": "run_sql", "args": {"sql": "DELETE FROM t WHERE d = 1; INSERT INTO t SELECT * FROM s"}}])
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded", task.error
    statements = task.metrics.execution_metadata["statements"]
    assert [s["result_rows"] for s in statements] == [3, 10] and task.metrics.total_rows == 13
    assert [s.query_string for s in redshift_sim.statements()] == ["DELETE FROM t WHERE d = 1", "INSERT INTO t SELECT * FROM s"]
    first = redshift_sim.statements()[0]
    assert (first.cluster_identifier, first.db_user, first.database) == ("analytics", "loader", "dev")
    assert set(redshift_sim.wait_seconds) == {10}


def test_transaction_uses_one_batch(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    path = routine(tmp_path, [{"task": "run_sql", "args": {"sql": "BEGIN_WORK_A; STEP_B", "transaction": True}}],
                   cluster_identifier=None, db_user=None, workgroup_name="serverless-wg")
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded", task.error
    (batch,) = redshift_sim.batches.values()
    assert batch == ["BEGIN_WORK_A", "STEP_B"] and len(redshift_sim.statements()) == 1
    assert len(task.metrics.execution_metadata["statements"][0]["sub_statements"]) == 2


def test_failure_carries_redshift_error(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    redshift_sim.on("COPY", status="FAILED", error="ERROR: Load into table 'orders' failed. Check 'stl_load_errors'")
    tasks = [{"task": "copy_from_s3", "args": {"table": "public.orders", "s3_path": "s3://landing/orders/", "iam_role": ROLE,
                                               "options": ["IGNOREHEADER 1"]}}]
    (task,) = run_routine(routine(tmp_path, tasks)).tasks
    (statement,) = redshift_sim.statements()
    assert statement.query_string == ("COPY \"public\".\"orders\" FROM 's3://landing/orders/' IAM_ROLE "
                                      f"'{ROLE}' FORMAT AS CSV IGNOREHEADER 1")
    assert task.status == "failed" and statement.id in task.error and "ended FAILED" in task.error
    assert "stl_load_errors" in task.error


def test_copy_rows_are_inserts(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    redshift_sim.on("COPY", rows=1234)
    tasks = [{"task": "copy_from_s3", "args": {"table": "orders", "s3_path": "s3://landing/orders/", "iam_role": ROLE,
                                               "format": "parquet"}}]
    (task,) = run_routine(routine(tmp_path, tasks)).tasks
    assert task.status == "succeeded" and task.metrics.inserts == 1234


def test_timeout_cancels_statement(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    # The statement is held RUNNING forever: only the timeout can end this run. 5 s leaves a loaded
    # machine time to import boto3 and submit before the deadline (1 s did not, under load).
    redshift_sim.on("VACUUM", hold=True)
    (task,) = run_routine(routine(tmp_path, [{"task": "run_sql", "args": {"sql": "VACUUM big"}, "timeout": 5}])).tasks
    assert task.status == "failed" and "timed out after 5s" in task.error
    assert redshift_sim.statements()[0].status == "ABORTED"


def test_status_errors_past_the_retry_budget_are_waited_out(aws: AwsEnv, redshift_sim: RedshiftSim, fault_proxy: Any,
                                                            tmp_path: Path) -> None:
    redshift_sim.on("INSERT", rows=5, after=3)
    proxy = fault_proxy([(500, "InternalServerException", "boom")] * 3, match="DescribeStatement")
    path = routine(tmp_path, [{"task": "run_sql", "args": {"sql": "INSERT INTO t SELECT 1"}, "retries": 1, "retry_delay": 0.1}])
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded" and task.attempts == 1, task.error
    assert len(redshift_sim.statements()) == 1 and task.metrics.total_rows == 5 and proxy.faults == []
    assert sum("ExecuteStatement" in t for t in proxy.seen) == 1


def test_create_table_from_spec(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    tasks = [{"task": "create_table", "args": {"table": "public.people", "distkey": "id", "sortkey": ["id"],
                                               "columns": [{"name": "id", "type": "bigint"}, {"name": "name", "type": "varchar(256)"}]}}]
    (task,) = run_routine(routine(tmp_path, tasks)).tasks
    assert task.status == "succeeded", task.error
    assert redshift_sim.statements()[0].query_string == (
        'CREATE TABLE IF NOT EXISTS "public"."people" (\n  "id" BIGINT,\n  "name" VARCHAR(256)\n) DISTKEY("id") SORTKEY("id")')


def test_validate_rejects_bad_params_and_specs(tmp_path: Path) -> None:
    doc = {"routine_name": "bad", "executors": [
        {"name": "dw", "executor": "redshift", "params": {"database": "dev", "cluster_identifier": "c"},
         "tasks": [{"task": "create_table", "args": {"table": "t", "columns": [{"name": "a", "type": "intger"}]}}]}]}
    path = write_json(tmp_path / "bad.json", doc)
    result = subprocess.run([str(Path(sys.executable).with_name("orchestrate")), "validate", str(path)],
                            capture_output=True, text=True, env=dict(os.environ), timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "executors[0].params.db_user: a provisioned cluster needs db_user or secret_arn" in out
    assert "unknown column type 'intger'" in out


def test_copy_and_unload_options_cannot_end_the_statement(tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/loader"
    doc = {"routine_name": "opts", "executors": [
        {"name": "dw", "executor": "redshift", "params": {"database": "dev", "workgroup_name": "wg1"},
         "tasks": [{"task": "copy_from_s3", "args": {"table": "t", "s3_path": "s3://bkt/p/", "iam_role": role,
                                                     "options": ["DELIMITER ';'", "IGNOREHEADER 1; DROP TABLE x"]}},
                   {"task": "unload_to_s3", "args": {"sql": "SELECT 1", "s3_path": "s3://bkt/u/", "iam_role": role,
                                                     "options": ["ALLOWOVERWRITE /* x */"]}}]}]}
    path = write_json(tmp_path / "opts.json", doc)
    result = subprocess.run([str(Path(sys.executable).with_name("orchestrate")), "validate", str(path)],
                            capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == ["executors[0].tasks[0].args.options[1]",
                                                      "executors[0].tasks[1].args.options[0]"], lines
