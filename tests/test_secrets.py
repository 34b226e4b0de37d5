"""Secrets stay masked wherever a message is stored or printed: one test per way they leaked.

Each test runs the real CLI in a subprocess with the built-in ``python`` executor calling a real
file, then looks at everything a user (or another user of the machine) can see: stdout, stderr,
``show``, ``show --json``, ``logs``, the SQLite file and a detached process's command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import cli_env
from test_aws_lambda import json_lines, lam  # noqa: F401  (lam: the Lambda runner fixture)

SECRET = "hunter2-Sekr1t-7731"

CODE = """
import logging, pathlib, sys, time

def flaky(counter, secret):
    path = pathlib.Path(counter)
    tries = int(path.read_text()) if path.exists() else 0
    path.write_text(str(tries + 1))
    if tries == 0:
        raise ConnectionError(f"login failed for {secret}")

def echo_back(db_password):
    raise PermissionError(f"rejected password {db_password}")

def chatty(secret, context):
    try:
        raise ValueError(f"cannot connect with {secret}")
    except ValueError:
        context.logger.exception("query failed")
    sys.stdout.write("split: " + secret[:5])
    sys.stdout.write(secret[5:] + "\\n")
    sys.stderr.write("flushed: " + secret[:7])
    sys.stderr.flush()
    sys.stderr.write(secret[7:] + "\\n")

def hold(db_password, out, release):
    pathlib.Path(out).write_text(db_password)
    limit = time.monotonic() + 30
    while not pathlib.Path(release).exists() and time.monotonic() < limit:
        time.sleep(0.05)
"""


@pytest.fixture
def code(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.py"
    path.write_text(CODE)
    return path


def python_step(code: Path, function: str, kwargs: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {
        "name": "work",
        "executor": "python",
        "params": {"path": str(code)},
        "tasks": [{"task": "call", "args": {"function": function, "kwargs": kwargs}, **task}],
    }


def everything_shown(cli: Callable[..., Any], run_id: str, home: Path) -> str:
    """What ``show``, ``show --json``, ``logs`` print and the run store's bytes, as one text."""
    shown = [cli("show", run_id), cli("show", run_id, "--json"), cli("logs", run_id)]
    for proc in shown:
        assert proc.returncode == 0, proc.stderr
    stored = b"".join(p.read_bytes() for p in home.glob("runs.sqlite*"))
    return "".join(p.stdout + p.stderr for p in shown) + stored.decode("utf-8", "replace")


def last_run_id(cli: Callable[..., Any]) -> str:
    return json.loads(cli("runs", "--json").stdout)[0]["run_id"]


def test_a_retried_attempt_is_stored_and_shown_masked(
    cli, write_routine, code, tmp_path, orchestrator_home
):
    """(a) the attempt that fails and is retried kept ``str(exc)``: stderr, show, the store."""
    doc = {
        "routine_name": "retry",
        "params": {"password": "${env.DB_PASSWORD}"},
        "executors": [
            python_step(
                code,
                "flaky",
                {"counter": str(tmp_path / "n"), "secret": "${params.password}"},
                retries=1,
                retry_delay=0,
            )
        ],
    }
    proc = cli(str(write_routine(doc)), env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stderr
    assert "attempt 1 failed: login failed for ****" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    seen = everything_shown(cli, last_run_id(cli), orchestrator_home)
    assert "login failed for ****" in seen and SECRET not in seen


def test_a_secret_named_task_arg_or_step_param_is_masked_everywhere(
    cli, write_routine, code, orchestrator_home
):
    """(b) a value under a secret-looking name was masked in ``plan`` only; an error echoing it
    leaked."""
    doc = {
        "routine_name": "named",
        "executors": [python_step(code, "echo_back", {"db_password": SECRET})],
    }
    proc = cli(str(write_routine(doc)), "--json")
    assert proc.returncode == 1
    (failed,) = json.loads(proc.stdout)["tasks"]
    assert failed["error"] == "rejected password ****", failed
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET not in everything_shown(cli, json.loads(proc.stdout)["run_id"], orchestrator_home)
    step_param = {
        "routine_name": "param",
        "executors": [
            {
                "name": "greet",
                "executor": "echo",
                "params": {"password": SECRET},
                "tasks": [{"task": "fail", "args": {"message": "no entry for"}}],
            }
        ],
    }
    proc = cli(str(write_routine(step_param, "param.json")), "--json")
    assert (
        proc.returncode == 1 and json.loads(proc.stdout)["tasks"][0]["error"] == "no entry for ****"
    )
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET not in everything_shown(cli, json.loads(proc.stdout)["run_id"], orchestrator_home)


def test_a_logged_traceback_and_split_writes_reach_the_terminal_masked(
    cli, write_routine, code, orchestrator_home
):
    """(d) ``logger.exception`` formatted its traceback after masking; a write split in two was
    masked in halves."""
    doc = {
        "routine_name": "chatty",
        "params": {"api_token": SECRET},
        "executors": [python_step(code, "chatty", {"secret": "${params.api_token}"})],
    }
    proc = cli(str(write_routine(doc)))
    assert proc.returncode == 0, proc.stderr
    assert "ValueError: cannot connect with ****" in proc.stderr, proc.stderr
    assert "split: ****" in proc.stdout and "flushed: ****" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    seen = everything_shown(cli, last_run_id(cli), orchestrator_home)
    assert "split: ****" in seen and SECRET not in seen


def test_detach_passes_params_through_a_private_file_not_the_command_line(
    plugin_site, orchestrator_home, write_routine, code, tmp_path
):
    """(e) ``run --detach`` put ``--param db_password=...`` where ``ps`` shows it to every user."""
    out, release = tmp_path / "got.txt", tmp_path / "release"
    doc = {
        "routine_name": "detached",
        "params": {"db_password": "unset"},
        "executors": [
            python_step(
                code,
                "hold",
                {"db_password": "${params.db_password}", "out": str(out), "release": str(release)},
            )
        ],
    }
    env = cli_env(plugin_site, orchestrator_home)
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            str(write_routine(doc)),
            "--detach",
            "--json",
            "--param",
            f"db_password={SECRET}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    detached = json.loads(started.stdout)
    try:
        deadline = time.monotonic() + 20
        while not out.exists():
            assert time.monotonic() < deadline, "the detached run never called the function"
            time.sleep(0.05)
        cmdline = Path(f"/proc/{detached['pid']}/cmdline").read_bytes()
        assert b"orchestrator.cli" in cmdline and SECRET.encode() not in cmdline, cmdline
        assert out.read_text() == SECRET, "the param still reached the run"
        assert not list(
            orchestrator_home.rglob("*.params")
        ), "the private params file is gone once read"
    finally:
        release.touch()
    waited = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "wait", detached["run_id"], "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(waited.stdout)["status"] == "succeeded", waited.stdout + waited.stderr
    assert json.loads(waited.stdout)["params"] == {"db_password": "****"}


def test_the_private_params_file_is_readable_by_its_owner_only(orchestrator_home):
    from orchestrator.cli.detach import read_private_params, write_private_params

    path = write_private_params([f"db_password={SECRET}", "day=2026-11-21"])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert SECRET in path.read_text()
    assert read_private_params(str(path)) == [f"db_password={SECRET}", "day=2026-11-21"]
    assert not path.exists()


# ---------------------------------------------------------------------- Lambda

LAMBDA_SECRET = 'pässwörd-Ωmega-"42"'
LEAKY = """
import logging, pathlib, sys

def leaky(token, counter):
    path = pathlib.Path(counter)
    tries = int(path.read_text()) if path.exists() else 0
    path.write_text(str(tries + 1))
    if tries == 0:
        raise ConnectionError(f"retrying because of {token}")
    sys.stdout.write("out: " + token[:4])
    sys.stdout.flush()
    sys.stdout.write(token[4:] + "\\n")
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        logging.getLogger("user.code").exception("lookup failed")
    raise PermissionError(f"token {token} was rejected")
"""


def run_leaky(lam: Any, tmp_path: Path, secret: str) -> tuple[Any, str, Any]:
    """Run LEAKY in the Lambda handler with ``secret`` as its token.

    Returns the RunFailed, what the runtime's log handler got and the store's raw items."""
    import io
    import logging

    from lambda_fixtures import write_file
    from orchestrator.aws_lambda.runner import RunFailed
    from test_aws_lambda import python_routine

    code = write_file(Path(lam.functions).parent / "leaky.py", LEAKY)
    runtime_log = io.StringIO()  # stands for the handler the Lambda runtime puts on the root logger
    handler = logging.StreamHandler(runtime_log)
    logging.getLogger().addHandler(handler)
    routine = python_routine(
        str(code),
        "leaky",
        {"token": "${params.api_token}", "counter": str(tmp_path / "n")},
        params={"api_token": "none"},
        retries=1,
        retry_delay=0,
    )
    try:
        with pytest.raises(RunFailed) as failed:
            lam.call({"routine": routine, "params": {"api_token": secret}})
    finally:
        logging.getLogger().removeHandler(handler)
    return (
        failed.value,
        runtime_log.getvalue(),
        lam.store.client.scan(TableName=lam.store.table)["Items"],
    )


def test_lambda_masks_a_secret_before_json_escapes_it(lam, tmp_path, capsys):
    """(c) the JSON lines and the summary were masked after encoding: a non-ASCII or quoted secret
    was escaped first (``\\u00e4``, ``\\"``) and then no longer found."""
    failed, _, items = run_leaky(lam, tmp_path, LAMBDA_SECRET)
    out = capsys.readouterr().out
    assert failed.summary["tasks"][0]["error"] == "token **** was rejected"
    finished = [line for line in json_lines(out) if line["event"] == "task_finished"]
    assert finished[0]["error"] == "token **** was rejected"
    escaped = json.dumps(LAMBDA_SECRET)[1:-1]
    for text in (out, str(failed), json.dumps(items), json.dumps(items, ensure_ascii=False)):
        assert escaped not in text and LAMBDA_SECRET not in text


def test_lambda_masks_retries_tracebacks_and_flushed_pieces(lam, tmp_path, capsys):
    """(a) and (d) in Lambda: the retried attempt's error, a traceback through the runtime's log
    handler and a line flushed in two pieces (each piece was a JSON line of its own)."""
    failed, runtime_log, items = run_leaky(lam, tmp_path, SECRET)
    out = capsys.readouterr()
    lines = json_lines(out.out)
    retry = next(line for line in lines if line["event"] == "task_retrying")
    assert retry["error"] == "retrying because of ****"
    assert retry["traceback"].endswith("ConnectionError: retrying because of ****"), retry
    assert [line["message"] for line in lines if line["event"] == "output"] == ["out: ****"]
    assert "ValueError: bad token ****" in runtime_log
    seen = out.out + out.err + str(failed) + runtime_log + json.dumps(items)
    for piece in (SECRET, SECRET[:4], SECRET[4:]):
        assert piece not in seen, piece
    assert any("****" in log.message for log in lam.store.logs(failed.summary["run_id"]))


def test_masked_lines_hold_back_only_what_a_secret_could_still_need():
    """A line that never ends is passed on in pieces, but never cut inside a secret."""
    from orchestrator.masking import MAX_PENDING, MaskedLines

    out: list[str] = []
    lines = MaskedLines({SECRET}, out.append)
    for start in range(MAX_PENDING - 30, MAX_PENDING + 5):
        out.clear()
        text = "x" * start + SECRET + "y" * 40
        for i in range(0, len(text), 7):
            lines.write(text[i : i + 7])
        lines.close()
        assert "".join(out) == "x" * start + "****" + "y" * 40
    out.clear()
    lines.write("a\rb\nc")
    lines.close()
    assert out == ["a\rb\n", "c"]


def test_validation_messages_do_not_quote_a_secret(cli, write_routine, tmp_path):
    """A secret substituted into a field of the wrong type was quoted back in the validation error,
    also in part (messages show the first 40 characters of a wrong value)."""
    long_secret = "tok-" + "Q" * 60
    doc = {
        "routine_name": "typo",
        "executors": [
            {
                "name": "stage",
                "executor": "staging",
                "tasks": ["transfer"],
                "params": {
                    "parent_directory": "in",
                    "dump_directory": "out",
                    "archive_or_delete": "${env.DB_PASSWORD}",
                },
            },
            {
                "name": "again",
                "executor": "staging",
                "tasks": ["transfer"],
                "params": {
                    "parent_directory": "in2",
                    "dump_directory": "out2",
                    "archive_or_delete": "${env.API_TOKEN}",
                },
            },
        ],
    }
    proc = cli(
        "validate", str(write_routine(doc)), env={"DB_PASSWORD": SECRET, "API_TOKEN": long_secret}
    )
    assert proc.returncode == 2
    assert (
        "executors[0].params.archive_or_delete: must be one of 'archive', 'delete', got str '****'"
        in proc.stderr
    )
    assert "executors[1].params.archive_or_delete: must be one of" in proc.stderr
    assert SECRET not in proc.stderr and long_secret[:30] not in proc.stderr, proc.stderr
    doc = {
        "routine_name": "n",
        "params": {"pin_password": 1234},
        "executors": [
            {
                "name": "stage",
                "executor": "staging",
                "tasks": ["transfer"],
                "params": {"parent_directory": "in", "dump_directory": "out"},
            }
        ],
    }
    proc = cli("validate", str(write_routine(doc, "n.json")), "--param", f"pin_password={SECRET}")
    assert (
        proc.returncode == 2
        and "--param pin_password:" in proc.stderr and "(got ****)" in proc.stderr
        and SECRET not in proc.stderr
    )
