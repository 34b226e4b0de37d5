"""``${secret.NAME}`` (Secrets Manager) and ``${ssm.NAME}`` (SSM Parameter Store) in routines: read
when the routine is loaded to run, by the Lambda step in a state machine, never written into the
definition. Secrets Manager, SSM and DynamoDB are the moto server's, reached by real boto3 clients.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambda_fixtures import FakeContext
from orchestrator import load_routine
from orchestrator.aws_lambda.runner import LambdaRunner
from orchestrator.errors import RoutineError
from orchestrator.stepfunctions.compile import compile_routine

PASSWORD = "pw-8c41d0e2-do-not-leak"
TOKEN = "tok-77aa19c3-do-not-leak"
CODE = '''
import pathlib
def write(out, text):
    pathlib.Path(out).write_text(text)
'''


@pytest.fixture
def kept_secrets(lambda_aws: Any) -> None:
    import boto3

    boto3.client("secretsmanager").create_secret(
        Name="prod/db", SecretString=json.dumps({"username": "etl", "password": PASSWORD}))
    boto3.client("ssm").put_parameter(Name="/team/api/token", Value=TOKEN, Type="SecureString")


def routine_doc(out: Path, code: Path) -> dict[str, Any]:
    return {"routine_name": "secretive", "params": {"api_token": "${ssm./team/api/token}",
                                                    "label": "nightly"},
            "executors": [
                {"name": "write", "executor": "python", "params": {"path": str(code)}, "tasks": [
                    {"task": "call", "args": {"function": "write", "kwargs": {
                        "out": str(out), "text": "${params.label} ${secret.prod/db#password} "
                                                 "${params.api_token}"}}}]},
                {"name": "query", "executor": "athena",
                 "params": {"output_location": "s3://results/", "database": "demo"},
                 "tasks": [{"task": "run_query",
                            "args": {"sql": "SELECT '${secret.prod/db#username}'"}}]}]}


def test_references_are_kept_until_a_run_loads_the_routine(kept_secrets: None,
                                                            tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text(CODE)
    doc = routine_doc(tmp_path / "out.txt", code)
    kept = load_routine(doc)  # validate, plan, generate: nothing is read
    kwargs = kept.steps[0].tasks[0].args["kwargs"]
    assert kwargs["text"] == "nightly ${secret.prod/db#password} ${ssm./team/api/token}"
    assert PASSWORD not in kept.secrets
    resolved = load_routine(doc, resolve_secrets=True)
    assert resolved.steps[0].tasks[0].args["kwargs"]["text"] == f"nightly {PASSWORD} {TOKEN}"
    assert {PASSWORD, TOKEN} <= resolved.secrets
    assert PASSWORD not in json.dumps(resolved.masked(resolved.steps[0].tasks[0].args))
    doc["executors"][0]["tasks"][0]["args"]["kwargs"]["text"] = "${secret.prod/missing}"
    with pytest.raises(RoutineError, match=r"cannot read \$\{secret.prod/missing\}: "
                                           "ResourceNotFoundException"):
        load_routine(doc, resolve_secrets=True)


def test_the_lambda_step_reads_the_secret_the_definition_only_references(
        kept_secrets: None, tmp_path: Path, dynamo_store: Any, lambda_registry: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "task"
    folder = package / "routines" / "r"
    folder.mkdir(parents=True)
    (folder / "code.py").write_text(CODE)
    out = tmp_path / "out.txt"
    doc = routine_doc(out, folder / "code.py")
    (folder / "routine.json").write_text(json.dumps(doc))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(package))
    monkeypatch.setenv("ORCHESTRATOR_STORE", f"dynamodb://{dynamo_store.table}")

    result = compile_routine(load_routine(folder / "routine.json"), "routines/r/routine.json", "v1")
    text = result.text()
    assert PASSWORD not in text and TOKEN not in text and "${ssm." not in text
    # a native Athena state would need the value in the definition: the query runs in the Lambda
    assert result.native_tasks == {} and result.lambda_steps == ["write", "query"]
    defaults = result.definition["States"]["Routine defaults"]["Result"]
    assert defaults == {"label": "nightly"}  # the token's reference stays with the routine

    step = next(s for s in result.definition["States"].values()
                if s.get("Parameters", {}).get("Payload", {}).get("step") == "write")
    event = {k: v for k, v in step["Parameters"]["Payload"].items() if not k.endswith(".$")}
    event.update(execution="exec-secret", params=defaults, run_date="2024-05-06")
    summary = LambdaRunner(lambda_registry).handle(event, FakeContext(60))
    assert summary["tasks"][0]["status"] == "succeeded"
    assert out.read_text() == f"nightly {PASSWORD} {TOKEN}"  # resolved at run time, in the Lambda
    recorded = json.dumps([dynamo_store.get_run("exec-secret").to_dict(),
                           [t.__dict__ for t in dynamo_store.tasks("exec-secret")],
                           [r.message for r in dynamo_store.logs("exec-secret")]], default=str)
    assert PASSWORD not in recorded and TOKEN not in recorded
