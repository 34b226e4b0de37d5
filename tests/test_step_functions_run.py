"""A compiled routine at run time: the one-step Lambda path in-process against moto (DynamoDB run
store), executions on the moto server's Step Functions, and ``orchestrate run --on step-functions``.

moto (5.2) executes: Pass, Choice, Wait, Parallel, Fail/Succeed, Catch, intrinsic functions and
``aws-sdk:`` integrations (here Glue's StartCrawler/GetCrawler loop) and ``lambda:invoke`` (its
Lambda echoes the payload; it never runs our handler). It does not execute the ``.sync``
integrations (Athena, Glue job runs, ECS): those are checked by definition only. Its
``$$.Execution.StartTime`` is a datetime object, not a string, so tests pass ``run_date``.
"""
from __future__ import annotations

import io
import json
import os
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lambda_fixtures import FakeContext
from orchestrator import load_routine
from orchestrator.aws_lambda.one_step import StepFailed
from orchestrator.aws_lambda.runner import InvalidEvent, LambdaRunner
from orchestrator.stepfunctions.compile import compile_routine

ROLE = "arn:aws:iam::123456789012:role/states"

CODE = '''
import pathlib
def write(out, text):
    pathlib.Path(out).write_text(text)
def boom():
    raise RuntimeError("the data is bad")
'''


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Lambda package root holding the routine, as the generate target lays it out."""
    root = tmp_path / "task"
    folder = root / "routines" / "r"
    folder.mkdir(parents=True)
    (folder / "code.py").write_text(CODE)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(root))
    return root


def write_routine(root: Path, out: Path) -> dict[str, Any]:
    doc = {"routine_name": "sfn_steps", "params": {"greeting": "hello"}, "executors": [
        {"name": "first", "executor": "python", "params": {"path": "code.py"}, "tasks": [
            {"task": "call", "args": {"function": "write",
                                      "kwargs": {"out": str(out / "a.txt"), "text": "${params.greeting} ${run.date}"}}},
            {"task": "call", "args": {"function": "write",
                                      "kwargs": {"out": str(out / "b.txt"), "text": "${run.id}"}}}]},
        {"name": "second", "executor": "python", "params": {"path": "code.py"},
         "tasks": [{"task": "call", "args": {"function": "boom"}}]}]}
    (root / "routines" / "r" / "routine.json").write_text(json.dumps(doc))
    return doc


def test_one_step_of_an_execution_runs_and_is_recorded_in_the_dynamodb_store(
        package: Path, tmp_path: Path, dynamo_store: Any, lambda_registry: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_routine(package, tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_STORE", f"dynamodb://{dynamo_store.table}")
    monkeypatch.setenv("ORCHESTRATOR_ROUTINE_VERSION", "v7")
    runner = LambdaRunner(lambda_registry)
    arn = "arn:aws:states:us-east-1:123456789012:execution:machine:exec-123"
    base = {"routine": "routines/r/routine.json", "version": "v7", "execution": "exec-123",
            "execution_arn": arn}
    # the second task alone, as the state machine asks when the first ran natively
    summary = runner.handle({**base, "step": "first", "tasks": [1], "params": {"greeting": "hi"},
                             "run_date": "2024-05-06"}, FakeContext(60))
    assert summary["tasks"] == [{"task": "call", "index": 1, "status": "succeeded", "attempts": 1}]
    assert (tmp_path / "b.txt").read_text() == "exec-123" and not (tmp_path / "a.txt").exists()
    runner.handle({**base, "step": "first", "tasks": [0], "params": {"greeting": "hi"},
                   "run_date": "2024-05-06"}, FakeContext(60))
    assert (tmp_path / "a.txt").read_text() == "hi 2024-05-06"
    run = dynamo_store.get_run("exec-123")
    # the execution's ARN is the run's host: `orchestrate cancel exec-123` stops that execution
    assert (run.routine, run.status, run.host, run.pid) == ("sfn_steps", "running",
                                                            f"external:{arn}", None)
    tasks = sorted(dynamo_store.tasks("exec-123"), key=lambda t: t.task_index)
    assert [(t.step, t.task_index, t.status) for t in tasks] == [("first", 0, "succeeded"),
                                                                ("first", 1, "succeeded")]
    with pytest.raises(StepFailed, match="step second task call failed.*the data is bad"):
        runner.handle({**base, "step": "second", "params": {}, "run_date": "2024-05-06"},
                      FakeContext(60))
    failed = [t for t in dynamo_store.tasks("exec-123") if t.step == "second"]
    assert [(t.status, t.error_type) for t in failed] == [("failed", "RuntimeError")]
    runner.handle({**base, "finish": "failed", "failure": {"step": "second"}}, FakeContext(60))
    assert dynamo_store.get_run("exec-123").status == "failed"
    assert "execution failed" in dynamo_store.logs("exec-123")[-1].message


def test_a_step_event_for_another_version_or_routine_source_is_refused(
        package: Path, tmp_path: Path, lambda_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    write_routine(package, tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_ROUTINE_VERSION", "v7")
    runner = LambdaRunner(lambda_registry)
    event = {"routine": "routines/r/routine.json", "version": "v6", "execution": "e", "step": "first"}
    with pytest.raises(InvalidEvent, match="version v6 .* version v7"):
        runner.handle(event, FakeContext(60))
    with pytest.raises(InvalidEvent, match="packaged with the function"):
        runner.handle({**event, "version": "v7", "routine": {"routine_name": "x", "executors": []}},
                      FakeContext(60))
    with pytest.raises(InvalidEvent, match="task positions"):
        runner.handle({**event, "version": "v7", "tasks": [5]}, FakeContext(60))
    assert not (tmp_path / "a.txt").exists()


# ---------------------------------------------------------------------- on moto's Step Functions

@pytest.fixture
def states(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's Step Functions, executing machines; its service integrations call this same server."""
    import boto3

    from conftest import use_moto

    use_moto(moto_server, monkeypatch)
    port = moto_server.rsplit(":", 1)[1]
    monkeypatch.setenv("MOTO_PORT", port)  # where moto's integrations send their calls
    for body in ({"stepfunctions": {"execute_state_machine": True}},
                 {"lambda": {"use_docker": False}}):
        urllib.request.urlopen(urllib.request.Request(
            f"{moto_server}/moto-api/config", data=json.dumps(body).encode(), method="POST")).close()
    yield boto3.client("stepfunctions")
    for body in ({"stepfunctions": {"execute_state_machine": False}},  # moto's defaults again
                 {"lambda": {"use_docker": True}}):
        urllib.request.urlopen(urllib.request.Request(
            f"{moto_server}/moto-api/config", data=json.dumps(body).encode(), method="POST")).close()


def create_machine(sfn: Any, definition: dict[str, Any], function: str = "unused") -> str:
    text = json.dumps(definition).replace("${OrchestratorFunctionArn}", function)
    return sfn.create_state_machine(name=f"m{time.time_ns()}", definition=text, roleArn=ROLE)["stateMachineArn"]


def finish(sfn: Any, execution: str) -> dict[str, Any]:
    for _ in range(200):
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    raise AssertionError("execution did not end")


def entered(sfn: Any, execution: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def lambda_function() -> str:
    import boto3

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    role = boto3.client("iam").create_role(RoleName=f"fn{time.time_ns()}",
                                           AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    return boto3.client("lambda").create_function(
        FunctionName=f"orchestrator{time.time_ns()}", Runtime="python3.12", Role=role,
        Handler="handler.handler", Code={"ZipFile": buffer.getvalue()})["FunctionArn"]


def test_a_dag_of_lambda_steps_runs_on_moto_to_success(states: Any, package: Path,
                                                       tmp_path: Path) -> None:
    code = package / "routines" / "r" / "code.py"
    step = {"executor": "python", "params": {"path": str(code)},
            "tasks": [{"task": "call", "args": {"function": "boom"}}]}
    doc = {"routine_name": "dag", "executors": [
        {"name": "a", **step}, {"name": "b", "depends_on": ["a"], **step},
        {"name": "c", "depends_on": ["a"], **step, "active": False},
        {"name": "d", "depends_on": ["b", "c"], **step}]}
    result = compile_routine(load_routine(doc), "routines/r/routine.json", "v1", raw=doc)
    arn = create_machine(states, result.definition, lambda_function())
    execution = states.start_execution(stateMachineArn=arn, name="run-1",
                                       input=json.dumps({"run_date": "2024-05-06"}))["executionArn"]
    described = finish(states, execution)
    assert described["status"] == "SUCCEEDED", described
    names = entered(states, execution)
    assert names.index("a.call") < names.index("Parallel: b, c") < names.index("d.call")
    assert {"b.call", "c (inactive)", "Record success"} <= set(names)


def test_a_polling_loop_runs_on_moto_and_a_failure_carries_step_task_and_cause(
        states: Any, moto_server: str) -> None:
    import boto3

    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "demo"})
    glue.create_crawler(Name="people", Role=ROLE, DatabaseName="demo",
                        Targets={"S3Targets": [{"Path": "s3://bucket/people/"}]})
    urllib.request.urlopen(urllib.request.Request(
        f"{moto_server}/moto-api/state-manager/set-transition",
        data=json.dumps({"model_name": "glue::crawl",
                         "transition": {"progression": "immediate"}}).encode(), method="POST")).close()
    try:
        doc = {"routine_name": "crawl", "executors": [{"name": "catalog", "executor": "glue", "tasks": [
            {"task": "run_crawler", "args": {"crawler_name": "people"}}]}]}
        result = compile_routine(load_routine(doc), "routines/r/routine.json", "v1", raw=doc)
        arn = create_machine(states, result.definition)
        execution = states.start_execution(stateMachineArn=arn,
                                           input=json.dumps({"run_date": "2024-05-06"}))["executionArn"]
        described = finish(states, execution)
    finally:
        urllib.request.urlopen(urllib.request.Request(
            f"{moto_server}/moto-api/state-manager/unset-transition",
            data=json.dumps({"model_name": "glue::crawl"}).encode(), method="POST")).close()
    names = entered(states, execution)
    assert {"catalog.run_crawler: Submit", "catalog.run_crawler: Wait",
            "catalog.run_crawler: Describe", "catalog.run_crawler: Why failed"} <= set(names)
    # moto ends a crawl "COMPLETED", which is not one of Glue's statuses (SUCCEEDED, FAILED,
    # CANCELLED): the machine does not take it for success
    assert (described["status"], described["error"]) == ("FAILED", "orchestrator.StepFailed")
    cause = json.loads(described["cause"])
    assert cause["step"] == "catalog" and cause["task"] == "run_crawler"
    assert cause["error"] == "glue-crawler.Failed" and "people" in cause["cause"]


def test_orchestrate_run_on_step_functions_follows_the_execution(
        states: Any, tmp_path: Path, cli: Any, moto_server: str) -> None:
    doc = {"routine_name": "remote", "params": {"day": "x"}, "executors": [
        {"name": "q", "executor": "athena", "active": False,
         "params": {"output_location": "s3://results/"},
         "tasks": [{"task": "run_query", "args": {"sql": "SELECT '${params.day}'"}}]}]}
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(doc))
    result = compile_routine(load_routine(path), "routines/r/remote.json", "v1")
    arn = create_machine(states, result.definition)
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    done = cli("run", str(path), "--on", "step-functions", "--state-machine", arn, "-p", "day=y",
               env=env)
    assert done.returncode == 0, done.stderr
    assert "started execution arn:aws:states:" in done.stdout and "succeeded" in done.stdout
    assert "skipped   q (inactive)" in done.stdout
    execution = states.list_executions(stateMachineArn=arn)["executions"][0]
    given = json.loads(states.describe_execution(executionArn=execution["executionArn"])["input"])
    assert given["params"] == {"day": "y"} and len(given["run_date"]) == 10
    refused = cli("run", str(path), "--on", "step-functions", env=env)
    assert refused.returncode == 2 and "--state-machine" in refused.stderr


def test_cancel_and_wait_of_an_execution_arn(states: Any, cli: Any) -> None:
    waiting = {"StartAt": "Long", "States": {"Long": {"Type": "Wait", "Seconds": 600, "End": True}}}
    arn = create_machine(states, waiting)
    execution = states.start_execution(stateMachineArn=arn)["executionArn"]
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    timed_out = cli("wait", execution, "--timeout", "1", env=env)
    assert timed_out.returncode == 3, timed_out.stderr
    cancelled = cli("cancel", execution, env=env)
    assert cancelled.returncode == 0 and "aborted" in cancelled.stdout, cancelled.stderr
    assert states.describe_execution(executionArn=execution)["status"] == "ABORTED"
    waited = cli("wait", execution, env=env)
    assert waited.returncode == 130 and "aborted" in waited.stdout


def test_a_crawler_loop_past_its_timeout_stops_the_crawl_before_failing(states: Any) -> None:
    """moto's crawler stays RUNNING under GetCrawler: the loop reaches the task's timeout, stops
    the crawl (StopCrawler), then fails with the timeout."""
    import boto3

    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "slow"})
    glue.create_crawler(Name="slow", Role=ROLE, DatabaseName="slow",
                        Targets={"S3Targets": [{"Path": "s3://bucket/slow/"}]})
    doc = {"routine_name": "slow", "executors": [{"name": "load", "executor": "glue", "tasks": [
        {"task": "run_crawler", "args": {"crawler_name": "slow"}, "timeout": 2}]}]}
    result = compile_routine(load_routine(doc), "routines/r/routine.json", "v1", raw=doc)
    arn = create_machine(states, result.definition)
    execution = states.start_execution(stateMachineArn=arn,
                                       input=json.dumps({"run_date": "2024-05-06"}))["executionArn"]
    described = finish(states, execution)
    names = entered(states, execution)
    assert names.index("load.run_crawler: Stop") < names.index("load.run_crawler: Timed out")
    cause = json.loads(described["cause"])
    assert (described["status"], cause["error"]) == ("FAILED", "glue-crawler.Timeout"), described
    assert "still running when the task timed out" in cause["cause"]
    assert glue.get_crawler(Name="slow")["Crawler"]["State"] == "STOPPING"  # was RUNNING


def test_cancel_and_wait_of_a_run_id_stop_its_execution(states: Any, tmp_path: Path,
                                                       cli: Any) -> None:
    """The run is recorded under its execution's ARN, so ``cancel RUN_ID`` is StopExecution."""
    waiting = {"StartAt": "Long", "States": {"Long": {"Type": "Wait", "Seconds": 600, "End": True}}}
    arn = create_machine(states, waiting)
    path = tmp_path / "remote.json"
    path.write_text(json.dumps({"routine_name": "remote", "executors": [
        {"name": "q", "executor": "athena", "params": {"output_location": "s3://results/"},
         "tasks": [{"task": "run_query", "args": {"sql": "SELECT 1"}}]}]}))
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    started = cli("run", str(path), "--on", "step-functions", "--state-machine", arn, "--detach",
                  env=env)
    assert started.returncode == 0, started.stderr
    execution = started.stdout.strip()
    run_id = execution.rsplit(":", 1)[1]
    shown = cli("show", run_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    record = record.get("run", record)
    assert (record["status"], record["host"]) == ("running", f"external:{execution}")
    timed_out = cli("wait", run_id, "--timeout", "1", env=env)
    assert timed_out.returncode == 3, timed_out.stderr
    cancelled = cli("cancel", run_id, env=env)
    assert cancelled.returncode == 0 and "aborted" in cancelled.stdout, cancelled.stderr
    assert states.describe_execution(executionArn=execution)["status"] == "ABORTED"
    listed = cli("runs", "--json", env=env)
    listed_runs = [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)]
    assert listed_runs == [(run_id, "cancelled")]
    waited = cli("wait", run_id, env=env)
    assert waited.returncode == 130 and "aborted" in waited.stdout
