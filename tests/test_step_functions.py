"""Routines compiled to Step Functions state machines: valid ASL (asl-validator from the npm
registry, run with the machine's Node.js), the mapping of the issue, refusals naming the step,
the SAM template, and executions on the moto server."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator import load_routine
from orchestrator.errors import UserError
from orchestrator.stepfunctions.compile import CompileError, compile_routine
from orchestrator.stepfunctions.template import build_template, task_resources

ROOT = Path(__file__).resolve().parents[1]
ATHENA = {"output_location": "s3://results/", "database": "demo"}


@pytest.fixture(scope="session")
def asl_validator() -> str:
    script = ROOT / "tools" / "asl-validator" / "install.sh"
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot install asl-validator: {exc}")
    if done.returncode != 0:
        pytest.skip("cannot install asl-validator from the npm registry (node/npm missing or the "
                    f"registry unreachable): {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1]


def validate(validator: str, definition: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "definition.asl.json"
    path.write_text(json.dumps(definition))
    done = subprocess.run([validator, "--json-path", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def compiled(doc: dict[str, Any], **kw: Any) -> Any:
    return compile_routine(load_routine(doc), "routines/r/routine.json", "v1", raw=doc, **kw)


def query(name: str, sql: str = "SELECT 1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "executor": "athena", "params": ATHENA,
            "tasks": [{"task": "run_query", "args": {"sql": sql}}], **extra}


def all_states(states: dict[str, Any]) -> dict[str, Any]:
    found = dict(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            found.update(all_states(branch["States"]))
        if "ItemProcessor" in state:
            found.update(all_states(state["ItemProcessor"]["States"]))
    return found


def test_the_validator_rejects_a_broken_definition(asl_validator: str, tmp_path: Path) -> None:
    """Guards the checks below: a validator that accepts anything would make them pass too."""
    broken = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Missing"}}}
    with pytest.raises(AssertionError, match="MISSING_TRANSITION_TARGET"):
        validate(asl_validator, broken, tmp_path)


@pytest.mark.parametrize("routine", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("routines/*/*")
                                           if p.suffix in (".json", ".yaml") and "sample" not in p.name))
def test_every_routine_in_routines_compiles_to_valid_asl(routine: str, asl_validator: str,
                                                         tmp_path: Path) -> None:
    loaded = load_routine(ROOT / routine)
    result = compile_routine(loaded, f"routines/{routine}", "v1")
    validate(asl_validator, result.definition, tmp_path)
    assert result.definition["StartAt"] in result.definition["States"]


def test_aws_demo_uses_native_integrations_and_the_lambda_for_the_rest() -> None:
    result = compile_routine(load_routine(ROOT / "routines/aws_demo/routine.yaml"),
                             "routines/aws_demo/routine.yaml", "v1")
    assert result.native_tasks == {"enrich.run_job": "arn:aws:states:::glue:startJobRun.sync",
                                   "load_warehouse.copy_from_s3": "loop"}
    # the query runs under max_bytes_scanned, which only our code enforces while it runs
    assert result.lambda_steps == ["stage_people", "catalog", "query", "load_warehouse"]
    job = result.definition["States"]["enrich.run_job"]
    assert job["Parameters"] == {"JobName": "demo_enrich", "Arguments": {"--run_date.$": "$.run.date"}}
    assert job["TimeoutSeconds"] == 3600
    assert job["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 1,
                             "BackoffRate": 2}]
    copy = all_states(result.definition["States"])["load_warehouse.copy_from_s3: Submit"]
    assert copy["Resource"] == "arn:aws:states:::aws-sdk:redshiftdata:executeStatement"
    # the SQL is put together by a JSONata state that escapes the values (see the COPY test)
    assert copy["Parameters"]["Sql.$"] == "$.copy.sql"


def test_depends_on_becomes_parallel_layers(asl_validator: str, tmp_path: Path) -> None:
    doc = {"routine_name": "dag", "executors": [
        query("a"), query("b", depends_on=["a"]), query("c", depends_on=["a"]),
        query("d", depends_on=["b", "c"])]}
    result = compiled(doc)
    states = result.definition["States"]
    parallel = states["Parallel: b, c"]
    assert [b["StartAt"] for b in parallel["Branches"]] == ["b.run_query", "c.run_query"]
    assert states["a.run_query"]["Next"] == "Parallel: b, c"
    assert parallel["Next"] == "d.run_query" and parallel["ResultPath"] is None
    branch_fail = parallel["Branches"][0]["States"]["b failed"]
    assert branch_fail == {"Type": "Fail", "Error": "orchestrator.StepFailed",
                           "CausePath": "States.JsonToString($.failure)"}
    validate(asl_validator, result.definition, tmp_path)


def test_retries_timeout_and_the_catch_into_one_fail_state() -> None:
    step = query("q")
    step["tasks"][0].update(retries=3, retry_delay=2.5, timeout=59.5)
    states = compiled({"routine_name": "r", "executors": [step]}).definition["States"]
    task = states["q.run_query"]
    assert task["Resource"] == "arn:aws:states:::athena:startQueryExecution.sync"
    assert task["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 3, "MaxAttempts": 3,
                              "BackoffRate": 2}]
    assert task["TimeoutSeconds"] == 60
    catcher = states[task["Catch"][0]["Next"]]
    assert catcher["Parameters"]["step"] == "q" and catcher["Parameters"]["task"] == "run_query"
    assert catcher["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"
    assert sum(s["Type"] == "Fail" for s in states.values()) == 1


def test_references_become_paths_of_the_execution_input() -> None:
    doc = {"routine_name": "r", "params": {"table": "people", "limit": 5},
           "executors": [query("q", "SELECT * FROM ${params.table} WHERE dt = '${run.date}' -- {x}")]}
    result = compiled(doc)
    params = result.definition["States"]["q.run_query"]["Parameters"]
    assert params["QueryString.$"] == ("States.Format('SELECT * FROM {} WHERE dt = \\'{}\\' -- "
                                       "\\{x\\}', $.params.table, $.run.date)")
    assert result.definition["States"]["Routine defaults"]["Result"] == {"table": "people", "limit": 5}
    start = result.definition["States"]["Start run"]["Parameters"]
    assert start["params.$"] == "States.JsonMerge($.defaults, $.params, false)"
    assert start["run"]["id.$"] == "$$.Execution.Name"


def test_inactive_steps_and_routines_become_pass_states() -> None:
    states = compiled({"routine_name": "r", "executors": [query("a", active=False), query("b")]}
                      ).definition["States"]
    assert states["a (inactive)"]["Type"] == "Pass" and "inactive" in states["a (inactive)"]["Comment"]
    assert states["a (inactive)"]["Next"] == "b.run_query"
    states = compiled({"routine_name": "r", "active": False, "executors": [query("a")]}
                      ).definition["States"]
    assert "a.run_query" not in states and states["Routine inactive"]["Type"] == "Pass"


def test_a_task_with_no_state_machine_path_is_refused_naming_the_step(tmp_path: Path) -> None:
    doc = {"routine_name": "r", "executors": [
        query("fine"), {"name": "build_image", "executor": "docker", "params": {"image": "alpine"},
                        "tasks": ["run"]}]}
    with pytest.raises(CompileError) as caught:
        compiled(doc)
    assert "step build_image task run" in str(caught.value) and "ecs" in str(caught.value)
    assert isinstance(caught.value, UserError)  # the CLI's exit code 2


def test_a_secret_is_never_written_into_the_definition() -> None:
    doc = {"routine_name": "r", "params": {"db_password": "hunter2-long"},
           "executors": [query("q", "SELECT '${params.db_password}'")]}
    # a native state would carry it in the definition or the execution's input: the Lambda runs
    # the task, and reads the secret from the routine it is packaged with
    result = compiled(doc)
    assert result.native_tasks == {} and result.lambda_steps == ["q"]
    assert "hunter2" not in result.text()
    # and a secret default never reaches the defaults written into the machine
    doc["executors"] = [query("q")]
    text = json.dumps(compiled(doc).definition)
    assert "hunter2" not in text and "db_password" not in text


def test_500_steps_chain_and_dag_are_valid(asl_validator: str, tmp_path: Path) -> None:
    chain = {"routine_name": "chain", "executors": [query(f"q{i}") for i in range(500)]}
    validate(asl_validator, compiled(chain).definition, tmp_path)
    dag = {"routine_name": "dag", "executors": [
        query(f"q{i}", depends_on=[f"q{i // 10 - 1}"] if i >= 10 else []) for i in range(500)]}
    result = compiled(dag)
    validate(asl_validator, result.definition, tmp_path)
    assert len(all_states(result.definition["States"])) > 1000


def test_a_definition_over_the_size_limit_is_refused() -> None:
    big = "SELECT '" + "x" * 200_000 + "'"
    doc = {"routine_name": "r", "executors": [query(f"q{i}", big) for i in range(6)]}
    with pytest.raises(CompileError, match="over Step Functions' limit of 1,048,576"):
        compiled(doc)


def test_long_step_names_give_unique_state_names_of_at_most_80_characters() -> None:
    long = "s" * 120
    doc = {"routine_name": "r", "executors": [query(long + "a"), query(long + "b")]}
    names = list(all_states(compiled(doc).definition["States"]))
    assert all(len(n) <= 80 for n in names) and len(set(names)) == len(names)


def machine_template(doc: dict[str, Any] | str, **kw: Any) -> dict[str, Any]:
    """The SAM template as the target builds it: the executors' statements through the hook."""
    from orchestrator.registry import Registry
    from orchestrator.stepfunctions.role import executor_statements

    routine = load_routine(ROOT / doc if isinstance(doc, str) else doc)
    raw = None if isinstance(doc, str) else doc
    result = compile_routine(routine, "routines/r/routine.json", "v1", raw=raw)
    statements, _ = executor_statements(routine, Registry(), result.native_tasks)
    function = {"Handler": "orchestrator.aws_lambda.handler", "Runtime": "python3.12",
                "CodeUri": "function.zip", "Policies": []} if result.uses_lambda else None
    return build_template(result.definition, label="r@v1", definition_file="definition.asl.json",
                          function=function, executor_statements=statements,
                          batches=result.uses_batches, **kw)


def role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    machine = template["Resources"]["RoutineStateMachine"]["Properties"]
    return [s for p in machine["Policies"] if isinstance(p, dict) for s in p["Statement"]]


def granted(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [s["Resource"] for s in statements if action in s["Action"]]


def cfn_lint(template: dict[str, Any], tmp_path: Path) -> None:
    import sys

    import yaml

    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    (tmp_path / "definition.asl.json").write_text("{}")
    command = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(command), str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_machine_role_is_least_privilege_and_passes_cfn_lint(tmp_path: Path) -> None:
    template = machine_template("routines/aws_demo/routine.yaml", schedule="rate(1 day)")
    statements = role_statements(template)
    assert all("*" not in action for s in statements for action in s["Action"])
    # the Glue job and the Redshift cluster the routine names, nothing else
    job = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:job/demo_enrich"
    assert granted(statements, "glue:StartJobRun") == [{"Fn::Sub": job}]
    assert len(granted(statements, "redshift-data:ExecuteStatement")) == 1
    assert not granted(statements, "athena:StartQueryExecution")  # the query runs in the Lambda
    assert granted(statements, "lambda:InvokeFunction") == [[
        {"Fn::GetAtt": ["RoutineFunction", "Arn"]}, {"Fn::Sub": "${RoutineFunction.Arn}:*"}]]
    machine = template["Resources"]["RoutineStateMachine"]["Properties"]
    assert "CloudWatchLogsFullAccess" not in machine["Policies"]
    assert machine["DefinitionSubstitutions"]["OrchestratorFunctionArn"] == {
        "Fn::GetAtt": ["RoutineFunction", "Arn"]}
    assert machine["Events"]["Schedule"]["Properties"]["Schedule"] == "rate(1 day)"
    cfn_lint(template, tmp_path)


def test_the_role_of_native_athena_ecs_and_a_distributed_map(tmp_path: Path) -> None:
    doc = {"routine_name": "r", "executors": [
        query("q", params={"output_location": "s3://results/athena/", "database": "demo",
                           "workgroup": "etl"}),
        {"name": "box", "executor": "ecs", "params": {
            "cluster": "jobs",
            "task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/nightly:3",
            "subnets": ["subnet-1"]}, "tasks": ["run"]},
        {"name": "stage", "executor": "staging", "params": {
            "parent_directory": "s3://landing/in/", "dump_directory": "s3://dump/out/",
            "archive_or_delete": "delete"}, "tasks": ["transfer", "post_staging"]}]}
    template = machine_template(doc)
    statements = role_statements(template)
    assert all("*" not in action for s in statements for action in s["Action"])
    workgroup = "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/etl"
    assert granted(statements, "athena:StartQueryExecution") == [{"Fn::Sub": workgroup}]
    assert {"Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:"
                       "task-definition/nightly:*"} in granted(statements, "ecs:RunTask")
    rule = granted(statements, "events:PutRule")
    assert rule == granted(statements, "events:PutTargets")
    assert rule == granted(statements, "events:DescribeRule")
    assert rule == [{"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:"
                                "rule/StepFunctionsGetEventsForECSTaskRule"}]
    # the map: list the landing prefix only, start child executions of this machine only
    listing = [s for s in statements if s["Action"] == ["s3:ListBucket"]
               and s["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::landing"}]
    assert listing and listing[0]["Condition"] == {"StringLike": {"s3:prefix": ["in/*"]}}
    assert granted(statements, "states:StartExecution") == [{"Fn::Sub": (
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
        "${AWS::StackName}")}]
    machine = template["Resources"]["RoutineStateMachine"]["Properties"]
    assert machine["Name"] == {"Ref": "AWS::StackName"}
    bucket = machine["DefinitionSubstitutions"]["OrchestratorBatchBucket"]
    assert bucket == {"Ref": "BatchStateBucket"}
    function = template["Resources"]["RoutineFunction"]["Properties"]
    assert function["Environment"]["Variables"]["ORCHESTRATOR_BATCH_STATE"] == {
        "Fn::Sub": "s3://${BatchStateBucket}/manifests/"}
    # the staging step's own buckets are the function's business, not the machine's
    assert not granted(statements, "s3:DeleteObject")
    cfn_lint(template, tmp_path)


def test_generate_step_functions_target_end_to_end(asl_validator: str, tmp_path: Path) -> None:
    """`orchestrate generate --target step-functions` through the CLI: a valid definition and a
    template; a routine with a docker step is refused at generate time, naming the step."""
    import sys

    routine = tmp_path / "routine.json"
    routine.write_text(json.dumps({"routine_name": "sfn", "executors": [
        query("first"), query("second", depends_on=["first"])]}))
    env = dict(__import__("os").environ, ORCHESTRATOR_HOME=str(tmp_path / "home"))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "generate", str(routine),
                           "--target", "step-functions", "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    definition = json.loads((out / "definition.asl.json").read_text())
    validate(asl_validator, definition, tmp_path)
    assert "AWS::Serverless::StateMachine" in (out / "template.yaml").read_text()
    docker = tmp_path / "docker.json"
    docker.write_text(json.dumps({"routine_name": "d", "executors": [
        {"name": "box", "executor": "docker", "params": {"image": "x:1"},
         "tasks": [{"task": "run", "args": {"command": ["true"]}}]}]}))
    refused = subprocess.run([sys.executable, "-m", "orchestrator.cli", "generate", str(docker),
                              "--target", "step-functions", "-o", str(tmp_path / "d")],
                             capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode == 2 and "box" in refused.stderr, refused.stderr


def test_a_redshift_loop_cancels_its_statement_when_it_times_out(asl_validator: str,
                                                                 tmp_path: Path) -> None:
    """By definition only: moto's Step Functions has no ``redshiftdata`` SDK service."""
    doc = {"routine_name": "r", "executors": [{"name": "load", "executor": "redshift", "params": {
        "database": "dev", "workgroup_name": "wg1"}, "tasks": [
        {"task": "run_sql", "args": {"sql": "SELECT 1"}, "timeout": 60}]}]}
    result = compiled(doc)
    states = all_states(result.definition["States"])
    check = states["load.run_sql: Timed out?"]["Choices"][0]
    assert check["Next"] == "load.run_sql: Stop"
    stop = states["load.run_sql: Stop"]
    assert stop["Resource"] == "arn:aws:states:::aws-sdk:redshiftdata:cancelStatement"
    assert stop["Parameters"] == {"Id.$": "$.poll.id"}
    assert stop["Next"] == stop["Catch"][0]["Next"] == "load.run_sql: Timed out"
    assert states["load.run_sql: Timed out"]["Error"] == "redshift.Timeout"
    assert result.definition["States"]["load.run_sql"]["Parameters"]["timeout"] == 60
    validate(asl_validator, result.definition, tmp_path)


JSONATA_EVAL = """
const path = require('path');
const jsonata = require(path.join(process.argv[1], 'node_modules', 'jsonata'));
const [expression, input] = JSON.parse(require('fs').readFileSync(0, 'utf8'));
jsonata(expression.slice(2, -2)).evaluate({}, {states: {input}})
    .then(v => process.stdout.write(JSON.stringify(v)));
"""


def jsonata(validator: str, expression: str, state_input: dict[str, Any]) -> Any:
    """Evaluate with the reference JSONata implementation (the one asl-validator depends on):
    moto cannot run JSONata states (it needs a JVM bridge), so this is how the expression runs."""
    node_dir = Path(validator).parents[2]
    done = subprocess.run(["node", "-e", JSONATA_EVAL, str(node_dir)], capture_output=True,
                          text=True, input=json.dumps([expression, state_input]), timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("raw", ["s3://bucket/in/", "s3://b/x' IAM_ROLE 'arn:aws:iam::1:role/evil",
                                 "s3://b/a\\'; DROP TABLE people; --", 'o"dd\n', "12"])
def test_a_copy_path_from_the_execution_input_is_escaped_like_the_local_executor(
        raw: str, asl_validator: str, tmp_path: Path) -> None:
    """A ``${params.X}`` in COPY's s3_path is never pasted into the SQL as it is: a JSONata state
    doubles backslashes and quotes, exactly as ``redshift_literal`` does when it runs here."""
    from executors.redshift import _copy_sql

    args = {"table": "public.people", "s3_path": "${params.raw}dt=${run.date}/",
            "iam_role": "arn:aws:iam::123456789012:role/load", "options": ["IGNOREHEADER 1"]}
    doc = {"routine_name": "r", "params": {"raw": "s3://default/"}, "executors": [
        {"name": "load", "executor": "redshift",
         "params": {"database": "dev", "workgroup_name": "wg"},
         "tasks": [{"task": "copy_from_s3", "args": args}]}]}
    result = compiled(doc)
    states = all_states(result.definition["States"])
    quote = states["load.copy_from_s3: Quote values"]
    assert quote["QueryLanguage"] == "JSONata" and quote["Next"] == "load.copy_from_s3: Submit"
    assert "${" not in json.dumps(states["load.copy_from_s3: Submit"])
    output = jsonata(asl_validator, quote["Output"],
                     {"params": {"raw": raw}, "run": {"date": "2024-05-06"}, "timeout": 5})
    expected = _copy_sql("public.people", f"{raw}dt=2024-05-06/", args["iam_role"], "csv",
                         ["IGNOREHEADER 1"])
    assert output["copy"]["sql"] == expected
    assert output["params"] == {"raw": raw}  # the rest of the input goes on
    validate(asl_validator, result.definition, tmp_path)


def test_a_copy_with_a_reference_outside_s3_path_runs_in_the_lambda() -> None:
    """Table names, roles and options are checked at run time, not escaped: the Lambda runs them."""
    doc = {"routine_name": "r", "params": {"opt": "IGNOREHEADER 1"}, "executors": [
        {"name": "load", "executor": "redshift",
         "params": {"database": "dev", "workgroup_name": "wg"},
         "tasks": [{"task": "copy_from_s3", "args": {
             "table": "people", "s3_path": "s3://bucket/in/",
             "iam_role": "arn:aws:iam::123456789012:role/load",
             "options": ["${params.opt}"]}}]}]}
    result = compiled(doc)
    assert result.lambda_steps == ["load"] and result.native_tasks == {}
