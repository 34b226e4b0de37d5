"""Routine-level params resolve their own ``${env.X}`` and ``${run.X}`` before any task sees them,
and stay masked wherever they are shown or stored (issue 7, item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inline_executors import inline_registry
from orchestrator.routine.load import load_routine
from orchestrator.errors import RoutineError

SECRET = "hunter2-päss"


def test_routine_params_resolve_env_and_run_refs(write_routine) -> None:
    path = write_routine(
        {
            "routine_name": "r",
            "params": {
                "db_password": "${env.DB_PASSWORD}",
                "bucket": "s3://b/${run.date}/",
                "nested": {"id": "${run.id}"},
                "literal": "$${env.KEPT}",
            },
            "executors": [
                {
                    "executor": "greeter",
                    "params": {
                        "greeting": "${params.db_password}",
                        "api_token": "${params.bucket}",
                    },
                    "tasks": ["say"],
                }
            ],
        }
    )
    routine = load_routine(path, {}, inline_registry(), run_id="run-7", env={"DB_PASSWORD": SECRET})
    assert routine.params["db_password"] == SECRET
    assert routine.params["bucket"] == f"s3://b/{routine.run_date}/"
    assert (
        routine.params["nested"] == {"id": "run-7"} and routine.params["literal"] == "${env.KEPT}"
    )
    (step,) = routine.steps
    assert step.params["greeting"] == SECRET, "the task gets the value, not the reference"
    assert SECRET in routine.secrets
    assert routine.masked(routine.params)["db_password"] == "****"
    assert SECRET not in json.dumps(routine.masked(step.params))


def test_a_secret_env_value_in_a_plain_param_is_masked(write_routine) -> None:
    path = write_routine(
        {
            "routine_name": "r",
            "params": {"dsn": "postgres://app:${env.DB_PASSWORD}@db/x"},
            "executors": [
                {"executor": "greeter", "params": {"greeting": "${params.dsn}"}, "tasks": ["say"]}
            ],
        }
    )
    routine = load_routine(path, {}, inline_registry(), env={"DB_PASSWORD": SECRET})
    assert routine.params["dsn"] == f"postgres://app:{SECRET}@db/x"
    assert routine.masked(routine.params) == {"dsn": "postgres://app:****@db/x"}


def test_overrides_are_values_not_templates(write_routine) -> None:
    path = write_routine(
        {
            "routine_name": "r",
            "params": {"word": "${env.WORD}"},
            "executors": [
                {"executor": "greeter", "params": {"greeting": "${params.word}"}, "tasks": ["say"]}
            ],
        }
    )
    routine = load_routine(
        path, {"word": "${env.OTHER}"}, inline_registry(), env={"WORD": "w", "OTHER": "o"}
    )
    assert routine.steps[0].params["greeting"] == "${env.OTHER}"


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"a": "${env.MISSING}"}, "params.a: environment variable MISSING is not set"),
        (
            {"a": "x", "b": "${params.a}"},
            "params.b: ${params.a}: a param cannot refer to another param",
        ),
        ({"a": ["${run.nope}"]}, "params.a[0]: unknown name ${run.nope}"),
    ],
    ids=["unset_env", "param_to_param", "unknown_run_ref"],
)
def test_bad_references_in_params_are_validation_errors(
    write_routine, params: dict, expected: str
) -> None:
    path = write_routine(
        {
            "routine_name": "r",
            "params": params,
            "executors": [{"executor": "greeter", "params": {"greeting": "hi"}, "tasks": ["say"]}],
        }
    )
    with pytest.raises(RoutineError) as caught:
        load_routine(path, {}, inline_registry(), env={})
    assert expected in [f"{p.path}: {p.message}" for p in caught.value.problems][0]


def test_an_unset_env_variable_is_a_coded_problem(write_routine) -> None:
    """Callers act on the problem's code and subject, not on its wording (the Lambda adapter
    rewrites this one for routines from events)."""
    path = write_routine(
        {
            "routine_name": "r",
            "params": {"db": "${env.NOT_SET_HERE}", "day": "${run.nope}"},
            "executors": [{"executor": "greeter", "params": {"greeting": "hi"}, "tasks": ["say"]}],
        }
    )
    with pytest.raises(RoutineError) as caught:
        load_routine(path, {}, inline_registry(), env={})
    coded = {(p.path, p.code, p.subject) for p in caught.value.problems}
    assert ("params.db", "env-unset", "NOT_SET_HERE") in coded
    assert ("params.day", "", "") in coded


FUNCTIONS = '''
def connect(password, context=None):
    if password.startswith("${"):
        raise ValueError("got the reference, not the value: " + password)
    print("connecting with", password)
    context.logger.info("password is %s", password)
'''


def test_a_task_gets_the_env_value_and_it_is_masked_everywhere(
    tmp_path: Path, orchestrator_home: Path
) -> None:
    (tmp_path / "functions.py").write_text(FUNCTIONS)
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "routine_name": "params",
                "params": {"db_password": "${env.DB_PASSWORD}"},
                "executors": [
                    {
                        "name": "db",
                        "executor": "python",
                        "params": {"path": "functions.py"},
                        "tasks": [
                            {
                                "task": "call",
                                "args": {
                                    "function": "connect",
                                    "kwargs": {"password": "${params.db_password}"},
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )
    env = dict(
        os.environ, ORCHESTRATOR_HOME=str(orchestrator_home), NO_COLOR="1", DB_PASSWORD=SECRET
    )
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "connecting with ****" in proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "show", run_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    logs = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "logs", run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "password is ****" in logs.stdout
    assert json.loads(shown.stdout)["run"]["params"] == {"db_password": "****"}
    stored = b"".join(p.read_bytes() for p in orchestrator_home.glob("runs.sqlite*"))
    for text in (proc.stdout, proc.stderr, shown.stdout, logs.stdout):
        assert SECRET not in text
    assert SECRET.encode() not in stored
