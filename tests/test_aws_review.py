"""Review fixes of the AWS executors: status errors, cost guard, lost records, resume, quoting, splitting, crawlers."""
from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aws_fixtures import HOLD, AthenaSim, AwsEnv, GlueSim, RedshiftSim, run_routine, write_json
from executors.aws.inflight import InFlight, RemoteOps
from executors.aws.outcomes import RemoteJobError
from executors.aws.record import RemoteRecord
from executors.aws.work import RemoteResult, RemoteWork, StopRemote
from executors.aws import tablespec as spec
from orchestrator.executor import Context

OUTPUT = "s3://athena-results/out/"
ROLE = "arn:aws:iam::123456789012:role/glue"


def ctx(home: Path, run_id: str = "run-1", attempt: int = 1, task: str = "run_query", step: str = "s",
        resumed_from: str | None = None, event: threading.Event | None = None) -> Context:
    return Context(run_id=run_id, run_date="2024-01-01", routine_name="review", step=step, task=task, attempt=attempt,
                   home=home, resumed_from=resumed_from, cancel_event=event)


class ProcessDied(BaseException):
    """Stands for kill -9: nothing after it runs in the task (no stop, no record update)."""


def client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class FakeEngine:
    """RemoteOps over a scripted describe, counting submissions and stops."""

    def __init__(self, states: list[Any]) -> None:
        self.states, self.submits, self.stops = list(states), [], []

    def describe(self, remote_id: str) -> dict[str, Any]:
        item = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(item, BaseException):
            raise item
        return {"State": item, "Id": remote_id}

    def ops(self) -> RemoteOps:
        return RemoteOps(engine="athena", what="query", describe=self.describe, state_of=lambda d: d.get("State"),
                         reason_of=lambda d: None, stop=self.stops.append)

    def submit(self, token: str) -> str:
        self.submits.append(token)
        return f"q{len(self.submits)}"


def record(tmp_path: Path, **data: Any) -> RemoteRecord:
    folder = tmp_path / "rec"
    folder.mkdir(exist_ok=True)
    rec = RemoteRecord(folder, "run_query-1.q0", "d", "run-1", "r/s")
    if data:
        rec.save(**data)
    return rec


def run(engine: FakeEngine, rec: RemoteRecord, tmp_path: Path, **kwargs: Any) -> RemoteResult:
    return RemoteWork(engine.ops(), rec, ctx(tmp_path), InFlight()).run(engine.submit, **kwargs)


# ---------------------------------------------------------------------- 1. status errors

def test_transient_status_errors_are_waited_out(tmp_path: Path) -> None:
    engine = FakeEngine(["RUNNING", client_error(500, "InternalServerException"), client_error(400, "ThrottlingException"),
                         "SUCCEEDED"])
    result = run(engine, record(tmp_path), tmp_path)
    assert result.raw_state == "SUCCEEDED" and len(engine.submits) == 1 and engine.stops == []


def test_reattach_keeps_the_record_when_the_status_call_fails_transiently(tmp_path: Path) -> None:
    rec = record(tmp_path, id="q-old", token="t")
    engine = FakeEngine([client_error(503, "ServiceUnavailable"), "SUCCEEDED"])
    with pytest.raises(Exception, match="ServiceUnavailable"):
        run(engine, rec, tmp_path)
    again = record(tmp_path)
    assert engine.submits == [] and again.remote_id == "q-old" and again.generation == 0


def test_reattach_submits_anew_only_when_the_engine_says_the_id_does_not_exist(tmp_path: Path) -> None:
    rec = record(tmp_path, id="q-old", token="t")
    engine = FakeEngine([client_error(400, "InvalidRequestException"), "SUCCEEDED"])
    result = run(engine, rec, tmp_path)
    assert len(engine.submits) == 1 and result.remote_id == "q1" and record(tmp_path).generation == 1


def test_other_wait_failures_stop_the_remote_work_before_raising(tmp_path: Path) -> None:
    engine = FakeEngine(["RUNNING", client_error(400, "AccessDeniedException"), "CANCELLED"])
    with pytest.raises(Exception, match="AccessDenied"):
        run(engine, record(tmp_path), tmp_path)
    assert engine.stops == ["q1"]


def test_status_outage_in_a_real_run_neither_fails_the_attempt_nor_resubmits(aws: AwsEnv, athena_sim: AthenaSim,
                                                                            fault_proxy: Any, tmp_path: Path) -> None:
    """The reviewer's t_ath2: GetQueryExecution answers 500 six times in a row (two full botocore budgets)."""
    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT flaky", hold=4)
    proxy = fault_proxy([(500, "InternalServerException", "boom")] * 6, operation="GetQueryExecution")
    path = athena_routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT flaky"}, "retries": 1,
                                      "retry_delay": 0.1, "timeout": 60}])
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded" and task.attempts == 1, task.error
    assert proxy.faults == [] and len(athena_sim.executions()) == 1


# ---------------------------------------------------------------------- 2. cost guard

def athena_routine(tmp: Path, tasks: list[Any], **params: Any) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "athena_review", "executors": [
        {"name": "lake", "executor": "athena", "params": {"output_location": OUTPUT, "database": "lake", **params},
         "tasks": tasks}]})


def test_cost_guard_is_not_retried(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    aws.set_transition("athena::execution", {"progression": "manual", "times": 1})
    athena_sim.on("SELECT big", scanned=10**9)
    path = athena_routine(tmp_path, [{"task": "run_query", "args": {"sql": "SELECT big"}, "retries": 2, "retry_delay": 0.1}],
                          max_bytes_scanned=1000)
    (task,) = run_routine(path).tasks
    assert task.status == "failed" and task.error_type == "CostGuardExceeded" and task.attempts == 1
    assert len(athena_sim.executions()) == 1


def test_work_stopped_by_a_non_retryable_guard_is_never_submitted_again(tmp_path: Path) -> None:
    from orchestrator.executor import NotRetryable

    engine = FakeEngine(["RUNNING", "CANCELLED"])

    def guard(description: dict[str, Any]) -> None:
        raise StopRemote(NotRetryable("over budget"))

    with pytest.raises(NotRetryable, match="over budget"):
        run(engine, record(tmp_path), tmp_path, on_poll=guard)
    with pytest.raises(NotRetryable, match="over budget"):
        run(engine, record(tmp_path), tmp_path, on_poll=guard)
    assert len(engine.submits) == 1 and engine.stops == ["q1"]


def test_athena_attempt_after_a_cost_guard_stop_raises_the_guard_without_submitting(aws: AwsEnv, athena_sim: AthenaSim,
                                                                                    tmp_path: Path) -> None:
    from executors.athena import AthenaExecutor, CostGuardExceeded

    aws.set_transition("athena::execution", HOLD)
    athena_sim.on("SELECT huge", hold=True, scanned=10**9)
    home = tmp_path / "home"
    for attempt in (1, 2):
        executor = AthenaExecutor(output_location=OUTPUT, database="lake", max_bytes_scanned=1000)
        with pytest.raises(CostGuardExceeded):
            executor.run_query(ctx(home, attempt=attempt), sql="SELECT huge")
    assert len(athena_sim.executions()) == 1


# ---------------------------------------------------------------------- 3. lost or corrupt records

@pytest.mark.parametrize("content", [
    '{"digest": "d", "id": 5, "generation": "x"}', "[1, 2]", '"text"', '{"digest": "d", "generation": true}', '{"dig'])
def test_malformed_record_counts_as_empty_with_a_warning(tmp_path: Path, content: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "k.json").write_text(content)
    caplog.set_level(logging.WARNING)
    rec = RemoteRecord(folder, "k", "d", "run-1")
    assert rec.data == {} and rec.remote_id is None and rec.generation == 0 and len(rec.token()) == 36
    assert "treating it as empty" in caplog.text


def make_job(aws: AwsEnv, name: str = "etl") -> None:
    aws.client("glue").create_job(Name=name, Role=ROLE, Command={"Name": "glueetl", "ScriptLocation": "s3://s/x.py"},
                                  ExecutionProperty={"MaxConcurrentRuns": 5})


@pytest.mark.parametrize("damage", ["missing", "truncated", "not an object"])
def test_glue_finds_its_run_by_token_when_the_record_is_lost(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path,
                                                             damage: str) -> None:
    from executors.glue import GlueExecutor

    make_job(aws)
    aws.set_transition("glue::job_run", HOLD)
    glue_sim.on("etl", hold=True)
    home = tmp_path / "home"
    first = GlueExecutor()
    first._job_ops = _dies_on_describe(first._job_ops)  # type: ignore[method-assign]
    with pytest.raises(ProcessDied):
        first.run_job(ctx(home, task="run_job"), job_name="etl", follow_logs=False)
    (path,) = (home / "state").rglob("run_job-1.run.json")
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_text(path.read_text()[:20])
    else:
        path.write_text("[]")
    glue_sim.on("etl", state="SUCCEEDED")
    metrics = GlueExecutor().run_job(ctx(home, task="run_job", attempt=2), job_name="etl", follow_logs=False)
    assert len(glue_sim.runs("etl")) == 1
    assert metrics.execution_metadata["reattached"] is True


def _dies_on_describe(make_ops: Any) -> Any:
    def ops(*args: Any) -> RemoteOps:
        real = make_ops(*args)

        def describe(remote_id: str) -> Any:
            raise ProcessDied()

        real.describe = describe
        return real

    return ops


# ---------------------------------------------------------------------- 4. resume

@pytest.mark.parametrize("when", ["still running", "already succeeded"])
def test_resume_reattaches_to_work_of_the_run_that_died(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path, when: str) -> None:
    from executors.athena import AthenaExecutor

    if when == "still running":
        aws.set_transition("athena::execution", HOLD)
        athena_sim.on("SELECT long", hold=3)
    home = tmp_path / "home"
    old = AthenaExecutor(output_location=OUTPUT, database="lake")
    if when == "still running":
        old._describe = lambda query_id: (_ for _ in ()).throw(ProcessDied())  # type: ignore[method-assign]
    else:
        old._guard = lambda info: (_ for _ in ()).throw(ProcessDied())  # type: ignore[method-assign]
    with pytest.raises(ProcessDied):
        old.run_query(ctx(home, run_id="old"), sql="SELECT long")
    (execution,) = athena_sim.executions()
    assert execution.status in (("QUEUED", "RUNNING") if when == "still running" else ("SUCCEEDED",))
    new = AthenaExecutor(output_location=OUTPUT, database="lake")
    metrics = new.run_query(ctx(home, run_id="new", resumed_from="old"), sql="SELECT long")
    (query,) = metrics.execution_metadata["queries"]
    assert len(athena_sim.executions()) == 1 and query["id"] == execution.id and query["reattached"] is True
    again = AthenaExecutor(output_location=OUTPUT, database="lake")
    assert again.run_query(ctx(home, run_id="new", attempt=2, resumed_from="old"), sql="SELECT long")
    assert len(athena_sim.executions()) == 1


def test_resume_submits_anew_when_the_old_work_failed(aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path) -> None:
    from executors.athena import AthenaExecutor

    athena_sim.on("SELECT bad", state="FAILED", reason="boom")
    home = tmp_path / "home"
    with pytest.raises(RemoteJobError):
        AthenaExecutor(output_location=OUTPUT, database="lake").run_query(ctx(home, run_id="old"), sql="SELECT bad")
    with pytest.raises(RemoteJobError):
        AthenaExecutor(output_location=OUTPUT, database="lake").run_query(ctx(home, run_id="new", resumed_from="old"),
                                                                          sql="SELECT bad")
    assert len(athena_sim.executions()) == 2


# ---------------------------------------------------------------------- 5. Redshift literals and roles

def redshift_routine(tmp: Path, tasks: list[Any]) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "rs_review", "executors": [
        {"name": "dw", "executor": "redshift", "params": {"database": "dev", "workgroup_name": "wg1"}, "tasks": tasks}]})


def test_redshift_literals_escape_backslashes(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/loader"
    tasks = [{"task": "copy_from_s3", "args": {"table": "t", "s3_path": "s3://bkt/a\\' x", "iam_role": role}},
             {"task": "unload_to_s3", "args": {"sql": "select * from t where name like 'a\\_%'", "s3_path": "s3://bkt/out/",
                                               "iam_role": role}}]
    result = run_routine(redshift_routine(tmp_path, tasks))
    assert [t.status for t in result.tasks] == ["succeeded"] * 2, [t.error for t in result.tasks]
    copy, unload = (s.query_string for s in redshift_sim.statements())
    assert copy == f"COPY \"t\" FROM 's3://bkt/a\\\\'' x' IAM_ROLE '{role}' FORMAT AS CSV"
    assert unload == f"UNLOAD ('select * from t where name like ''a\\\\_%''') TO 's3://bkt/out/' IAM_ROLE '{role}' FORMAT AS PARQUET"


@pytest.mark.parametrize("role, ok", [
    ("arn:aws:iam::123456789012:role/redshift", True), ("arn:aws-cn:iam::123456789012:role/path/r+=,.@-_", True),
    ("arn:aws:iam::1:role/r", False), ("arn:aws:iam::123456789012:role/r' IGNOREHEADER 1 --", False),
    ("arn:aws:iam::123456789012:role/r\n", False), ("arn:aws:iam::123456789012:user/r", False), (None, False)])
def test_iam_role_is_validated(role: Any, ok: bool) -> None:
    from executors.redshift import RedshiftExecutor

    args = {"table": "t", "s3_path": "s3://bkt/x/", "iam_role": role}
    problems = dict(RedshiftExecutor.validate_args("copy_from_s3", args, {}))
    assert ("iam_role" not in problems) is ok, problems
    problems = dict(RedshiftExecutor.validate_args("unload_to_s3", {**args, "sql": "select 1"}, {}))
    assert ("iam_role" not in problems) is ok, problems


def test_hive_and_trino_literals_stay_as_they_were() -> None:
    assert spec.hive_literal("it's a\\b") == "'it\\'s a\\\\b'"
    assert spec.quote_literal("it's a\\b") == "'it''s a\\b'"
    assert spec.redshift_literal("it's a\\b") == "'it''s a\\\\b'"


# ---------------------------------------------------------------------- 6. splitting

@pytest.mark.parametrize("sql, dialect, expected", [
    ("CREATE PROCEDURE p() AS $$ BEGIN INSERT INTO t VALUES (1); END; $$ LANGUAGE plpgsql; SELECT 1", "redshift",
     ["CREATE PROCEDURE p() AS $$ BEGIN INSERT INTO t VALUES (1); END; $$ LANGUAGE plpgsql", "SELECT 1"]),
    ("CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$ ; $body$ LANGUAGE sql; SELECT 2", "redshift",
     ["CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$ ; $body$ LANGUAGE sql", "SELECT 2"]),
    ("SELECT a$b$c FROM t; SELECT 2", "redshift", ["SELECT a$b$c FROM t", "SELECT 2"]),
    ("INSERT INTO t VALUES ('it\\'s; fine'); SELECT 2", "redshift", ["INSERT INTO t VALUES ('it\\'s; fine')", "SELECT 2"]),
    ("CREATE EXTERNAL TABLE t (a int) COMMENT 'it\\'s; fine' LOCATION 's3://b/x/'; MSCK REPAIR TABLE t", "hive",
     ["CREATE EXTERNAL TABLE t (a int) COMMENT 'it\\'s; fine' LOCATION 's3://b/x/'", "MSCK REPAIR TABLE t"]),
    ("ALTER TABLE t ADD PARTITION (dt = 'a\\'b;c'); SELECT 1", "hive", ["ALTER TABLE t ADD PARTITION (dt = 'a\\'b;c')", "SELECT 1"]),
    ("SELECT 'C:\\'; SELECT 2", "hive", ["SELECT 'C:\\'", "SELECT 2"]),
    ("SELECT 'a;b' ; SELECT \"x;y\" FROM t -- c;d\n; /* e;f */ SELECT 2", "hive",
     ["SELECT 'a;b'", 'SELECT "x;y" FROM t -- c;d', "/* e;f */ SELECT 2"]),
])
def test_split_statements_keeps_quoted_bodies_whole(sql: str, dialect: Any, expected: list[str]) -> None:
    assert spec.split_statements(sql, dialect) == expected


def test_redshift_run_sql_keeps_a_procedure_whole(aws: AwsEnv, redshift_sim: RedshiftSim, tmp_path: Path) -> None:
    sql = "CREATE PROCEDURE p() AS $$ BEGIN INSERT INTO t VALUES (1); END; $$ LANGUAGE plpgsql"
    (task,) = run_routine(redshift_routine(tmp_path, [{"task": "run_sql", "args": {"sql": sql}}])).tasks
    assert task.status == "succeeded", task.error
    assert [s.query_string for s in redshift_sim.statements()] == [sql]


# ---------------------------------------------------------------------- 7, 8. crawlers

def make_crawler(aws: AwsEnv) -> None:
    aws.client("glue").create_crawler(Name="people", Role=ROLE, DatabaseName="lake",
                                      Targets={"S3Targets": [{"Path": "s3://lake/people/"}]})


def glue_routine(tmp: Path, tasks: list[Any]) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "glue_review", "executors": [
        {"name": "etl", "executor": "glue", "tasks": tasks}]})


def test_stopping_crawler_is_not_joined_but_crawled_again(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_crawler(aws)
    glue = aws.client("glue")
    glue.start_crawler(Name="people")
    glue.stop_crawler(Name="people")
    crawler = glue_sim.backend.crawlers["people"]
    assert glue.get_crawler(Name="people")["Crawler"]["State"] == "STOPPING"

    def engine() -> None:
        time.sleep(1.0)
        crawler.crawls[-1].status = "STOPPED"
        while len(crawler.crawls) < 2:
            time.sleep(0.05)
        time.sleep(0.5)
        crawler.crawls[-1].status = "COMPLETED"

    threading.Thread(target=engine, daemon=True).start()
    (task,) = run_routine(glue_routine(tmp_path, [{"task": "run_crawler", "args": {"crawler_name": "people"},
                                                   "timeout": 20}])).tasks
    assert task.status == "succeeded", task.error
    assert task.metrics.execution_metadata["joined_running_crawl"] is False
    assert [c.status for c in crawler.crawls] == ["STOPPED", "COMPLETED"]


def test_crawl_completion_does_not_compare_clocks(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.glue.models import FakeCrawler

    make_crawler(aws)
    aws.set_transition("glue::crawl", {"progression": "immediate"})
    original = FakeCrawler.start_crawler

    def start(self: Any) -> None:
        original(self)
        self.crawls[-1].start_time -= datetime.timedelta(seconds=60)  # the engine's clock is a minute behind ours

    monkeypatch.setattr(FakeCrawler, "start_crawler", start)
    started = time.monotonic()
    (task,) = run_routine(glue_routine(tmp_path, [{"task": "run_crawler", "args": {"crawler_name": "people", "max_wait": 8}}])).tasks
    assert task.status == "succeeded", task.error
    assert time.monotonic() - started < 5


def test_crawler_wait_timeout_names_the_crawler(aws: AwsEnv, glue_sim: GlueSim, tmp_path: Path) -> None:
    make_crawler(aws)
    (task,) = run_routine(glue_routine(tmp_path, [{"task": "run_crawler", "args": {"crawler_name": "people", "max_wait": 1}}])).tasks
    assert task.status == "failed" and task.error_type == "TimeoutError"
    assert "crawler people" in task.error


# ---------------------------------------------------------------------- 9. identifiers, locations, types

@pytest.mark.parametrize("check", [
    lambda: spec.identifier_problem("abc\n"), lambda: spec.qualified_problem("db.t\n"), lambda: spec.qualified_problem("db\n.t"),
    lambda: spec.s3_problem("s3://bkt/x\n"), lambda: spec.s3_problem("s3://bkt\n"),
    lambda: spec.type_problem("max", "redshift"), lambda: spec.type_problem("MAX", "redshift"),
    lambda: spec.type_problem("decimal(max)", "redshift"), lambda: spec.type_problem("varchar(max, 2)", "redshift"),
    lambda: spec.type_problem("decimal(10 2)", "hive"), lambda: spec.type_problem("decimal(10,2,)", "hive"),
    lambda: spec.type_problem("decimal(,10)", "hive"),
], ids=["ident", "qualified-table", "qualified-schema", "s3-newline", "s3-bucket-newline", "max", "MAX", "decimal-max",
        "varchar-max-2", "decimal-space", "decimal-trailing-comma", "decimal-leading-comma"])
def test_invalid_names_locations_and_types_are_rejected(check: Any) -> None:
    assert check() is not None


@pytest.mark.parametrize("text, dialect", [
    ("varchar(max)", "redshift"), ("VARCHAR(256)", "redshift"), ("decimal(10,2)", "redshift"), ("decimal(10, 2)", "hive"),
    ("decimal", "hive"), ("decimal(10)", "hive"), ("array<struct<a:decimal(3,1),b:string>>", "hive")])
def test_valid_types_still_pass(text: str, dialect: Any) -> None:
    assert spec.type_problem(text, dialect) is None


def test_workgroup_and_table_names_reject_a_trailing_newline() -> None:
    from executors.athena import AthenaExecutor
    from executors.dynamodb_store import DynamoDBStore
    from orchestrator.errors import UserError

    problems = dict(AthenaExecutor.validate_params({"output_location": OUTPUT, "workgroup": "primary\n"}))
    assert "workgroup" in problems
    with pytest.raises(UserError):
        DynamoDBStore("runs\n")
