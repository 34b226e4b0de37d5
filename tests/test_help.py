"""Every task argument is discoverable: `help EXECUTOR[.TASK]` and the JSON Schema (issue 9, item 4)."""
from __future__ import annotations

import json

import jsonschema

from orchestrator.executor import Executor, TaskMetrics, task


def test_help_executor_lists_params_and_tasks(cli):
    proc = cli("help", "athena")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "output_location  (string; required)" in out
    assert 'workgroup  (string; default "primary")' in out
    for name in ("run_query", "create_table", "repair_table", "drop_table"):
        assert f"\n  {name}\n" in out
    assert "Run each statement in order" in out


def test_help_task_lists_each_argument_with_type_default_and_description(cli):
    out = cli("help", "athena.run_query").stdout
    assert "sql  (string | null; optional)" in out and "One or several statements separated by ;" in out
    assert "result_rows  (integer; default 0)" in out
    by_class = cli("help", "AthenaExecutor.create_table").stdout
    assert "format  (one of: csv, json, parquet; default \"parquet\")" in by_class


def test_help_suggests_the_closest_executor_or_task(cli):
    typo = cli("help", "athena.run_qery")
    assert typo.returncode == 2 and "did you mean 'run_query'" in typo.stderr
    unknown = cli("help", "athen")
    assert unknown.returncode == 2 and "did you mean 'athena'" in unknown.stderr
    assert cli("help", "run").returncode == 0  # commands still come first


def test_schema_checks_each_tasks_args(cli, write_routine):
    schema = json.loads(cli("schema").stdout)
    good = {"routine_name": "r", "executors": [
        {"name": "q", "executor": "athena", "params": {"output_location": "s3://r/"},
         "tasks": [{"task": "run_query", "args": {"sql": "SELECT 1", "result_rows": 5}}]}]}
    jsonschema.validate(good, schema)
    for bad_task in ({"task": "run_query", "args": {"sqll": "SELECT 1"}},       # misspelled arg
                     {"task": "run_query", "args": {"result_rows": "five"}},   # wrong type
                     {"task": "run_qery"}):                                    # unknown task
        bad = json.loads(json.dumps(good))
        bad["executors"][0]["tasks"] = [bad_task]
        assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad)), bad_task
    seed_form = {"routine_name": "r", "executors": {"AthenaExecutor": {
        "params": {"output_location": "s3://r/"}, "tasks": [{"task": "drop_table", "args": {"tabel": "x"}}]}}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(seed_form))


def test_task_schemas_come_from_signatures_and_docstrings():
    from orchestrator.routine.introspect import task_schemas

    class Greeter(Executor):
        @task
        def greet(self, context, name: str, times: int = 2, **extra) -> TaskMetrics:
            """Say hello.

            More text that is not the summary."""
            return TaskMetrics()

    schema = task_schemas(Greeter)["greet"]
    assert schema["description"] == "Say hello."
    assert schema["required"] == ["name"] and schema["properties"]["times"] == {"type": "integer", "default": 2}
    assert schema["additionalProperties"] is True and "context" not in schema["properties"]


def test_tuple_annotations_give_their_json_shapes() -> None:
    from jsonschema import Draft202012Validator

    from orchestrator.routine.introspect import type_schema

    many, pair = type_schema(tuple[int, ...]), type_schema(tuple[int, str])
    assert Draft202012Validator(many).is_valid([1, 2, 3])
    assert not Draft202012Validator(many).is_valid([1, "x"]), "tuple[int, ...] holds only ints"
    assert Draft202012Validator(pair).is_valid([1, "x"])
    assert not Draft202012Validator(pair).is_valid(["x", 1]), "each position has its own type"
    assert not Draft202012Validator(pair).is_valid([1, "x", 2]), "a pair has two items"
    assert not Draft202012Validator(type_schema(list[int])).is_valid(["x"])
