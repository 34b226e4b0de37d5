"""Routine loading: both forms, JSON and YAML, substitution, paths, and every validation rule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from inline_executors import inline_registry
from orchestrator.routine.load import load_routine
from orchestrator.errors import RoutineError


def load(path: Path, params: dict | None = None, env: dict | None = None):
    return load_routine(path, params or {}, inline_registry(), env=env if env is not None else {})


def problems(path: Path, params: dict | None = None, env: dict | None = None) -> list[str]:
    with pytest.raises(RoutineError) as caught:
        load(path, params, env)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def greeter(**overrides):
    entry = {"name": "greet", "executor": "greeter", "params": {"greeting": "hi"}, "tasks": ["say"]}
    entry.update(overrides)
    return entry


def test_dict_form_keeps_seed_shape(write_routine):
    path = write_routine({"routine_name": "seed", "executors": {
        "Greeter": {"params": {"greeting": "hi", "times": 2}, "tasks": ["say", {"task": "count", "args": {"n": 3}}]}}})
    routine = load(path)
    (step,) = routine.steps
    assert (step.name, step.executor.class_name, step.params["times"]) == ("Greeter", "Greeter", 2)
    assert [c.task for c in step.tasks] == ["say", "count"]
    assert step.tasks[1].args["n"] == 3
    assert routine.explicit_dependencies is False


def test_list_form_with_names_dependencies_retries(write_routine):
    path = write_routine({"routine_name": "r", "executors": [
        greeter(name="a"),
        greeter(name="b", depends_on=["a"], active=False,
                tasks=[{"task": "say", "args": {"who": "x"}, "retries": 2, "retry_delay": 0.5, "timeout": 9}]),
    ]})
    routine = load(path)
    a, b = routine.steps
    assert b.depends_on == ("a",) and b.active is False
    call = b.tasks[0]
    assert (call.retries, call.retry_delay, call.timeout, call.args) == (2, 0.5, 9, {"who": "x"})
    assert call.wants_context is True and routine.explicit_dependencies is True


def test_yaml_equals_json(write_routine):
    doc = {"routine_name": "r", "executors": [greeter()]}
    from_json = load(write_routine(doc, "r.json"))
    from_yaml = load(write_routine(doc, "r.yaml"))
    assert from_json.steps[0].params == from_yaml.steps[0].params
    assert from_json.hash == from_yaml.hash


def test_substitution_params_env_run_and_overrides(write_routine):
    path = write_routine({"routine_name": "r", "params": {"who": "bob", "times": 2}, "executors": [
        greeter(params={"greeting": "hi ${params.who} on ${run.date} in ${env.PLACE} $${literal}",
                        "times": "${params.times}"},
                tasks=[{"task": "say", "args": {"who": "${run.id}"}}])]})
    routine = load(path, {"who": "ann", "times": "5"}, env={"PLACE": "Oslo"})
    params = routine.steps[0].params
    assert params["greeting"] == f"hi ann on {routine.run_date} in Oslo ${{literal}}"
    assert params["times"] == 5, "a whole-value reference keeps the param's type"
    assert routine.steps[0].tasks[0].args["who"] == routine.run_id


def test_relative_locations_resolve_against_routine_folder(write_routine, tmp_path):
    path = write_routine({"routine_name": "r", "executors": [
        greeter(params={"greeting": "x", "folder": "data/in"},
                tasks=[{"task": "count", "args": {"n": 1, "path": "s3://bucket/key"}}, {"task": "count", "args": {"n": 1}}])]})
    step = load(path).steps[0]
    assert step.params["folder"] == str(tmp_path / "data/in")
    assert step.tasks[0].args["path"] == "s3://bucket/key"
    assert step.params["greeting"] == "x", "plain strings are not paths"


def test_secrets_masked_in_plan(write_routine):
    from orchestrator.engine import plan

    path = write_routine({"routine_name": "r", "executors": [
        greeter(params={"greeting": "token is ${env.MY_TOKEN}", "api_token": "plain-secret"})]})
    routine = load(path, env={"MY_TOKEN": "s3cr3t-value"})
    shown = json.dumps(plan(routine).describe())
    assert "s3cr3t-value" not in shown and "plain-secret" not in shown
    assert "****" in shown


@pytest.mark.parametrize("text, expected", [
    ('{"routine_name": "r",\n "executors": [}', "invalid JSON at line 2, column 16"),
    ("routine_name: r\nexecutors: [a\n  b: c", "invalid YAML at line 3"),
    ('{"routine_name": "r", "routine_name": "s", "executors": []}', "duplicate key 'routine_name'"),
    ("routine_name: r\nexecutors:\n  - executor: a\n    executor: b\n", "invalid YAML at line 4, column 5: duplicate key 'executor'"),
    ("routine_name: r\nexecutors:\n  - executor: a\n    params: {1: x}\n", "invalid YAML at line 4, column 14: key 1 must be a string"),
], ids=["json", "yaml", "json-duplicate", "yaml-duplicate", "yaml-int-key"])
def test_syntax_errors_give_line_and_column(write_routine, text, expected):
    name = "r.json" if text.startswith("{") else "r.yaml"
    (message,) = problems(write_routine(text, name))
    assert expected in message


BAD = {
    "unknown_top_key": ({"routine_name": "r", "executors": [greeter()], "paramz": {}}, "paramz: unknown property 'paramz'; did you mean 'params'?"),
    "tasks_not_list": ({"routine_name": "r", "executors": [greeter(tasks="say")]}, "executors[0].tasks: expected a list"),
    "unknown_executor": ({"routine_name": "r", "executors": [greeter(executor="greter")]}, "executors[0].executor: unknown executor 'greter'; did you mean 'greeter'"),
    "unknown_task": ({"routine_name": "r", "executors": [greeter(tasks=["sya"])]}, "executors[0].tasks[0]: unknown task 'sya'; did you mean 'say'?"),
    "not_a_task": ({"routine_name": "r", "executors": [greeter(tasks=["helper"])]}, "executors[0].tasks[0]: unknown task 'helper'"),
    "missing_param": ({"routine_name": "r", "executors": [greeter(params={})]}, "executors[0].params.greeting: missing required param 'greeting'"),
    "unknown_param": ({"routine_name": "r", "executors": [greeter(params={"greeting": "x", "tims": 1})]}, "executors[0].params.tims: unknown param 'tims'; did you mean 'times'?"),
    "mistyped_param": ({"routine_name": "r", "executors": [greeter(params={"greeting": "x", "times": "2"})]}, "executors[0].params.times: expected an integer"),
    "enum_param": ({"routine_name": "r", "executors": [greeter(params={"greeting": "x", "mode": "LOUD"})]}, "executors[0].params.mode: must be one of 'loud', 'soft'"),
    "unknown_arg": ({"routine_name": "r", "executors": [greeter(tasks=[{"task": "say", "args": {"whom": 1}}])]}, "executors[0].tasks[0].args.whom: unknown argument 'whom'; did you mean 'who'?"),
    "missing_arg": ({"routine_name": "r", "executors": [greeter(tasks=["count"])]}, "executors[0].tasks[0].args.n: missing required argument 'n'"),
    "mistyped_arg": ({"routine_name": "r", "executors": [greeter(tasks=[{"task": "count", "args": {"n": "many"}}])]}, "executors[0].tasks[0].args.n: expected an integer"),
    "unknown_substitution": ({"routine_name": "r", "executors": [greeter(params={"greeting": "${params.nope}"})]}, "executors[0].params.greeting: unknown param ${params.nope}"),
    "bad_scope": ({"routine_name": "r", "executors": [greeter(params={"greeting": "${secrets.x}"})]}, "executors[0].params.greeting: unknown substitution ${secrets.x}"),
    "missing_env": ({"routine_name": "r", "executors": [greeter(params={"greeting": "${env.NOT_SET_X}"})]}, "executors[0].params.greeting: environment variable NOT_SET_X is not set"),
    "missing_dependency": ({"routine_name": "r", "executors": [greeter(depends_on=["ghost"])]}, "executors[0].depends_on[0]: unknown step 'ghost'"),
    "cycle": ({"routine_name": "r", "executors": [greeter(name="a", depends_on=["b"]), greeter(name="b", depends_on=["a"])]}, "dependency cycle: a -> b -> a"),
    "duplicate_name": ({"routine_name": "r", "executors": [greeter(), greeter()]}, "executors[1].name: step name 'greet' is already used at executors[0]"),
    "negative_retries": ({"routine_name": "r", "executors": [greeter(tasks=[{"task": "say", "retries": -1}])]}, "executors[0].tasks[0].retries"),
    "dict_form_path": ({"routine_name": "r", "executors": {"Greeter": {"params": {"greeting": 5}, "tasks": ["say"]}}}, "executors.Greeter.params.greeting: expected a string"),
}


@pytest.mark.parametrize("doc, expected", BAD.values(), ids=BAD.keys())
def test_each_validation_rule_names_the_json_path(write_routine, doc, expected):
    found = problems(write_routine(doc))
    assert any(expected in line for line in found), found


def test_all_problems_reported_at_once(write_routine):
    path = write_routine({"routine_name": "r", "executors": [
        greeter(executor="nope"),
        greeter(name="b", params={"greeting": 1}, tasks=["sya"], depends_on=["ghost"])]})
    found = problems(path)
    assert len(found) == 4, found
    assert [line.split(":")[0] for line in found] == [
        "executors[0].executor", "executors[1].params.greeting", "executors[1].tasks[0]", "executors[1].depends_on[0]"]


def test_problem_line_format_names_file(write_routine):
    path = write_routine({"routine_name": "r", "executors": [greeter(params={})]})
    with pytest.raises(RoutineError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: executors[0].params.greeting: missing required param 'greeting'; add it"


def test_structure_problems_in_one_entry_do_not_hide_the_others(write_routine):
    path = write_routine({"routine_name": "r", "executors": [
        greeter(name="a", extra=1),
        greeter(name="b", executor="greter"),
        greeter(name="c", depends_on=["a"])]})
    found = problems(path)
    assert found[0].startswith("executors[0].extra: unknown property 'extra'")
    assert any(line.startswith("executors[1].executor: unknown executor 'greter'") for line in found), found
    assert len(found) == 2, "a depends_on naming a structurally broken entry is not a second error"


def test_yaml_dates_stay_strings(write_routine):
    routine = load(write_routine("routine_name: r\nparams: {day: 2026-11-21}\nexecutors:\n"
                                 "  - {name: g, executor: greeter, params: {greeting: '${params.day}'}, tasks: [say]}\n", "r.yaml"))
    assert routine.params["day"] == "2026-11-21" and routine.steps[0].params["greeting"] == "2026-11-21"


def test_null_param_inside_a_string_is_an_error(write_routine):
    path = write_routine({"routine_name": "r", "params": {"sub": None},
                          "executors": [greeter(params={"greeting": "dump/${params.sub}"})]})
    assert problems(path) == ["executors[0].params.greeting: ${params.sub} is null and cannot be part of a string; give it a value"]


def test_nested_substitution_is_explained(write_routine):
    path = write_routine({"routine_name": "r", "params": {"a": "b"},
                          "executors": [greeter(params={"greeting": "${params.${params.a}}"})]})
    (message,) = problems(path)
    assert "nested substitution" in message


@pytest.mark.parametrize("name", ["db_pass", "PWD", "passphrase", "DB_PASSWORD", "api_key", "github_token"])
def test_secret_looking_names(name):
    from orchestrator.routine.substitution import SECRET_NAME

    assert SECRET_NAME.search(name)
    assert not SECRET_NAME.search("passenger_count") and not SECRET_NAME.search("compass")


def test_executor_checks_run_even_when_the_schema_found_other_problems(write_routine):
    from inline_executors import Greeter

    path = write_routine({"routine_name": "r", "executors": [greeter(params={"greeting": "x", "times": "two",
                                                                             "mode": "soft"})]})
    original = Greeter.validate_params
    Greeter.validate_params = classmethod(lambda cls, p: [("mode", "soft mode is retired")] if p.get("mode") == "soft" else [])
    try:
        found = problems(path)
    finally:
        Greeter.validate_params = original
    assert found == ["executors[0].params.times: expected an integer, got str 'two'",
                     "executors[0].params.mode: soft mode is retired"]


def test_every_typo_is_reported_in_one_round(write_routine):
    """Four typos in one file took three rounds: unknown keys at any depth, all at once, and a
    structural problem in an entry no longer hides its params' and args' problems."""
    path = write_routine({"routine_name": "r", "paramz": {}, "executors": [
        greeter(dependson=[], params={"greeting": "hi", "greting": 1, "colour": 2},
                tasks=[{"task": "say", "retires": 2, "args": {"loud": True}}])]})
    found = [line.split(";")[0] for line in problems(path)]
    assert sorted(found) == sorted([
        "paramz: unknown property 'paramz'",
        "executors[0].dependson: unknown property 'dependson'",
        "executors[0].tasks[0].retires: unknown property 'retires'",
        "executors[0].params.greting: unknown param 'greting'",
        "executors[0].params.colour: unknown param 'colour'",
        "executors[0].tasks[0].args.loud: unknown argument 'loud'",
    ]), found


def test_malformed_parts_of_an_entry_do_not_stop_the_rest(write_routine):
    path = write_routine({"routine_name": "r", "executors": [
        greeter(params=["not", "a", "mapping"], tasks=["say", {"task": 5}, {"task": "sya"}], depends_on="x")]})
    found = problems(path)
    assert any(line.startswith("executors[0].params: expected an object") for line in found), found
    assert any(line.startswith("executors[0].tasks[2]") and "unknown task 'sya'" in line for line in found), found


def test_identical_task_entries_are_checked_once_and_keep_their_order(write_routine):
    """A step calling the same task with the same args many times pays for one check (issue 8);
    entries that differ only in JSON type (1 and true) are not taken for twins."""
    from inline_executors import Greeter

    count = {"task": "count", "args": {"n": 3}}
    path = write_routine({"routine_name": "r", "executors": [greeter(tasks=[
        "say", count, "say", dict(count), {"task": "count", "args": {"n": 4}}, "say"])]})
    checked: list[tuple[str, dict]] = []
    original = Greeter.validate_args
    Greeter.validate_args = classmethod(lambda cls, name, args, params: checked.append((name, args)) or [])
    try:
        (step,) = load(path).steps
    finally:
        Greeter.validate_args = original
    assert [(c.task, c.args.get("n")) for c in step.tasks] == [
        ("say", None), ("count", 3), ("say", None), ("count", 3), ("count", 4), ("say", None)]
    assert [(name, args.get("n")) for name, args in checked] == [("say", None), ("count", 3),
                                                                  ("count", 4)]
    twins = write_routine({"routine_name": "r", "executors": [greeter(tasks=[
        {"task": "count", "args": {"n": 1}}, {"task": "count", "args": {"n": True}}])]}, "t.json")
    assert [line.split(":")[0] for line in problems(twins)] == ["executors[0].tasks[1].args.n"]


def test_identical_task_entries_with_a_problem_are_each_reported(write_routine):
    path = write_routine({"routine_name": "r", "executors": [greeter(tasks=[
        {"task": "count", "args": {"n": "x"}}, "sya", {"task": "count", "args": {"n": "x"}}, "sya"])]})
    assert sorted(line.split(":")[0] for line in problems(path)) == [
        "executors[0].tasks[0].args.n", "executors[0].tasks[1]", "executors[0].tasks[2].args.n",
        "executors[0].tasks[3]"]
