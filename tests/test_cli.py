"""The `orchestrate` CLI run as a user runs it: a subprocess, with a plugin package installed for real."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env, install_package


def echo_routine(**step):
    entry = {"name": "hello", "executor": "echo", "params": {"prefix": ">"}, "tasks": [{"task": "say", "args": {"text": "hi"}}]}
    entry.update(step)
    return {"routine_name": "cli", "executors": [entry]}


def test_version_and_help_do_not_import_boto3(cli):
    code = "import sys; from orchestrator.cli import main; rc = main(%r); print('boto3' in sys.modules, rc, file=sys.stderr)"
    for argv in (["--version"], ["--help"]):
        proc = subprocess.run([sys.executable, "-c", code % argv], capture_output=True, text=True)
        assert "orchestrate" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom orchestrator.cli import main\nrc = main(['plugins'])\nprint('boto3' in sys.modules)"],
                          capture_output=True, text=True)
    assert proc.stdout.strip().endswith("False"), proc.stdout + proc.stderr


def test_plugin_package_is_listed_and_runs(cli, write_routine):
    listed = cli("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["executors"]}
    assert rows["echo"]["distribution"] == "orch-testkit" and rows["echo"]["version"] == "1.2.3"
    assert rows["echo"]["tasks"] == ["say", "noop", "remember", "run_routine", "fail"]
    assert rows["sleeper"]["tasks"] == ["sleep", "stubborn"]
    assert rows["staging"]["distribution"] == "lake-orchestrator"
    proc = cli(str(write_routine(echo_routine())))
    assert proc.returncode == 0, proc.stderr
    assert ">hi" in proc.stdout
    assert "hello.say succeeded" in proc.stderr


def test_plain_run_is_the_run_command(cli, write_routine):
    path = str(write_routine(echo_routine()))
    assert cli("run", path, "--quiet").returncode == 0
    assert cli(path, "--quiet").returncode == 0


def test_json_output_is_exactly_one_document(cli, write_routine):
    proc = cli(str(write_routine(echo_routine())), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (task,) = doc["tasks"]
    assert (doc["status"], task["status"], task["attempts"]) == ("succeeded", "succeeded", 1)
    assert task["metrics"]["total_rows"] == 2 and task["metrics"]["execution_metadata"] == {"text": "hi"}
    assert ">hi" in proc.stderr, "what tasks print goes to stderr in --json mode"
    assert "RAW-FD-1" in proc.stderr and "FROM-SUBPROCESS" in proc.stderr, "even below sys.stdout"


def test_failed_task_exits_1_and_masks_secret_in_error(cli, write_routine):
    doc = echo_routine(params={"password": "${env.DB_PASSWORD}"}, tasks=[{"task": "fail", "args": {"message": "bad"}}])
    proc = cli(str(write_routine(doc)), "--json", env={"DB_PASSWORD": "hunter2-secret"})
    assert proc.returncode == 1
    (task,) = json.loads(proc.stdout)["tasks"]
    assert task["status"] == "failed" and task["error"] == "bad ****"
    assert "hunter2-secret" not in proc.stdout + proc.stderr


def test_param_override(cli, write_routine):
    doc = echo_routine(tasks=[{"task": "say", "args": {"text": "${params.word}"}}])
    doc["params"] = {"word": "default"}
    proc = cli(str(write_routine(doc)), "--json", "--param", "word=override")
    assert json.loads(proc.stdout)["tasks"][0]["metrics"]["execution_metadata"]["text"] == "override"


def test_misspelled_param_is_refused_with_a_suggestion(cli, write_routine, orchestrator_home):
    doc = echo_routine(tasks=[{"task": "say", "args": {"text": "${params.word} ${params.other}"}}])
    doc["params"] = {"word": "default"}
    path = str(write_routine(doc))
    proc = cli("run", path, "--param", "wrod=override", "-p", "other=x")
    assert proc.returncode == 2, proc.stderr
    assert "unknown param 'wrod'; did you mean 'word'?" in proc.stderr and "Traceback" not in proc.stderr
    assert not (orchestrator_home / "runs.sqlite").exists() or "wrod" not in cli("runs").stdout
    referenced_only = cli("validate", path, "-p", "other=x")  # referenced but not declared: a legal override
    assert referenced_only.returncode == 0, referenced_only.stderr


def test_plan_shows_steps_with_masked_secrets(cli, write_routine):
    doc = echo_routine(params={"prefix": "p", "password": "${env.DB_PASSWORD}"})
    proc = cli("plan", str(write_routine(doc)), env={"DB_PASSWORD": "hunter2-secret"})
    assert proc.returncode == 0, proc.stderr
    assert "1. hello [echo]" in proc.stdout and "- say" in proc.stdout
    assert "hunter2-secret" not in proc.stdout and "****" in proc.stdout


BAD_INPUTS = {
    "unknown_executor": (echo_routine(executor="ecko"), "executors[0].executor: unknown executor 'ecko'; did you mean 'echo'"),
    "unknown_task": (echo_routine(tasks=["shout"]), "executors[0].tasks[0]: unknown task 'shout'"),
    "unknown_param": (echo_routine(params={"prefx": 1}), "executors[0].params.prefx: unknown param 'prefx'"),
    "bad_arg": (echo_routine(tasks=[{"task": "say", "args": {"txt": "x"}}]), "executors[0].tasks[0].args.txt: unknown argument"),
    "unknown_substitution": (echo_routine(params={"prefix": "${params.missing}"}), "executors[0].params.prefix: unknown param ${params.missing}"),
    "cycle": ({"routine_name": "c", "executors": [
        {"name": "a", "executor": "echo", "tasks": ["noop"], "depends_on": ["b"]},
        {"name": "b", "executor": "echo", "tasks": ["noop"], "depends_on": ["a"]}]}, "dependency cycle"),
    "json_syntax": ('{"routine_name": "x", "executors": [', "invalid JSON at line 1"),
}


@pytest.mark.parametrize("command", ["run", "validate", "plan"])
@pytest.mark.parametrize("doc, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exits_2_with_path_and_no_traceback(cli, write_routine, command, doc, expected):
    path = write_routine(doc)
    proc = cli(command, str(path))
    assert proc.returncode == 2
    assert f"{path}: " in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_verbose_shows_traceback(cli, write_routine):
    proc = cli("validate", str(write_routine(echo_routine(executor="nope"))), "--verbose")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_missing_file_is_a_usage_error(cli, tmp_path):
    proc = cli("validate", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "cannot read routine" in proc.stderr


def test_help_command(cli):
    proc = cli("help", "run")
    assert proc.returncode == 0 and "--max-parallel" in proc.stdout
    assert cli("help", "nosuch").returncode == 2


def test_schema_validates_routines_and_carries_executor_params(cli, write_routine):
    import jsonschema

    proc = cli("schema")
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(echo_routine()))
    errors = list(validator.iter_errors(echo_routine(params={"prefix": 5})))
    assert errors, "executor params are checked through the exported schema"
    assert "params_staging" in schema["$defs"]
    # Byte for byte the same whatever the string hashing: a committed schema file (an editor's
    # $schema) must not change when nothing did.
    seeded = {cli("schema", env={"PYTHONHASHSEED": str(seed)}).stdout for seed in range(4)}
    assert seeded == {proc.stdout}


def test_sigint_cancels_cleanly(plugin_site, orchestrator_home, write_routine, tmp_path):
    marker = tmp_path / "cancelled.txt"
    doc = {"routine_name": "long", "executors": [
        {"name": "nap", "executor": "sleeper", "params": {"marker": str(marker)}, "tasks": ["sleep"]},
        {"name": "never", "executor": "echo", "tasks": ["say"]}]}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(write_routine(doc)), "--json"],
                            env=cli_env(plugin_site, orchestrator_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(proc, "SLEEPING")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    tasks = {t["step"]: t["status"] for t in json.loads(out)["tasks"]}
    assert tasks == {"nap": "cancelled", "never": "skipped"}
    assert marker.read_text().startswith("cancelled"), "the executor's cancel() was called"


def test_sigterm_behaves_like_ctrl_c(plugin_site, orchestrator_home, write_routine):
    doc = {"routine_name": "long", "executors": [{"name": "nap", "executor": "sleeper", "tasks": ["sleep"]}]}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(write_routine(doc)), "--json"],
                            env=cli_env(plugin_site, orchestrator_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(proc, "SLEEPING")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130 and json.loads(out)["status"] == "cancelled"


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if text in line:
            return
    raise AssertionError(f"{text!r} never printed")


def test_conflicting_plugins_name_both_distributions(tmp_path, plugin_site, orchestrator_home, write_routine):
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "pyproject.toml").write_text((Path(__file__).parent / "plugin_pkg/pyproject.toml").read_text())
    (clash / "setup.cfg").write_text("[metadata]\nname = orch-clash\nversion = 0.9\n[options]\npy_modules = orch_clash\n"
                                     "[options.entry_points]\norchestrator =\n    clash = orch_clash\n")
    (clash / "orch_clash.py").write_text(
        "from orchestrator import Executor, hookimpl, task\n"
        "class OtherEcho(Executor):\n    name = 'echo'\n    @task\n    def say(self): pass\n"
        "@hookimpl\ndef register_executors():\n    return [OtherEcho]\n")
    site = tmp_path / "clash-site"
    install_package(clash, site)
    env = cli_env(plugin_site, orchestrator_home, {})
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(write_routine(echo_routine()))],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "orch-testkit 1.2.3" in proc.stderr and "orch-clash 0.9" in proc.stderr
    listed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plugins"], env=env, capture_output=True, text=True)
    assert listed.returncode == 2 and "conflict: executor name 'echo'" in listed.stderr


def test_json_mode_reports_bad_input_as_one_document(cli, write_routine):
    path = write_routine(echo_routine(executor="ekho"))
    proc = cli("run", str(path), "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["status"] == "invalid"
    assert doc["problems"] == [{"file": str(path), "path": "executors[0].executor",
                                "message": "unknown executor 'ekho'; did you mean 'echo' or 'Echo'?",
                                "code": "", "subject": ""}]
