"""Command-line rough edges a first-day user hit (issue 9, item 7): each one pinned down."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

from test_cli import echo_routine  # noqa: I001
from test_cli import wait_for_line
from test_runs import sleeper_routine, start


def test_flags_before_the_routine_still_mean_run(cli, write_routine):
    path = str(write_routine(echo_routine()))
    quiet = cli("-q", path)
    assert quiet.returncode == 0, quiet.stderr
    as_json = cli("--json", path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["status"] == "succeeded"


def test_a_mistyped_command_gets_a_suggestion(cli, write_routine):
    proc = cli("runn", str(write_routine(echo_routine())))
    assert proc.returncode == 2
    assert "unknown command 'runn'; did you mean 'run'" in proc.stderr
    assert "unrecognized arguments" not in proc.stderr


def test_a_closed_pipe_is_not_a_traceback(cli, plugin_site, orchestrator_home):
    from conftest import cli_env

    shell = f"{sys.executable} -m orchestrator.cli plugins | head -c 1 >/dev/null"
    for _ in range(3):  # the race between head leaving and our writes: try it a few times
        proc = subprocess.run(["sh", "-c", shell], env=cli_env(plugin_site, orchestrator_home),
                              capture_output=True, text=True, timeout=60)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_wait_timeout_has_its_own_exit_code(cli, plugin_site, orchestrator_home, write_routine):
    path = str(write_routine(sleeper_routine(first=False)))
    first = start(plugin_site, orchestrator_home, "run", path, "--json")
    try:
        wait_for_line(first, "SLEEPING")
        run_id = json.loads(cli("runs", "--json", "--status", "running").stdout)[0]["run_id"]
        waited = cli("wait", run_id, "--timeout", "0.5")
        assert waited.returncode == 3, waited.stderr
        assert "still running" in waited.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=20)


def test_an_unterminated_reference_is_a_validation_error(cli, write_routine):
    doc = echo_routine(tasks=[{"task": "say", "args": {"text": "${params.word"}}])
    doc["params"] = {"word": "x"}
    proc = cli("validate", str(write_routine(doc)))
    assert proc.returncode == 2
    assert "executors[0].tasks[0].args.text: unterminated ${" in proc.stderr


def test_validate_json_lists_each_problem(cli, write_routine):
    doc = echo_routine(executor="ecko", tasks=[{"task": "say", "args": {"text": "${params.nope}"}}])
    proc = cli("validate", str(write_routine(doc)), "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert isinstance(doc["errors"], list) and len(doc["errors"]) == len(doc["problems"]) >= 1
    assert all("\n" not in line for line in doc["errors"])


def test_plan_json_promises_no_run_id(cli, write_routine):
    proc = cli("plan", str(write_routine(echo_routine())), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert "run_id" not in plan and plan["steps"][0]["step"] == "hello"
