"""A failed task explains itself: each failed attempt's traceback (secrets masked) is kept in the
run and shown by ``show``, ``logs`` and ``--verbose``; ``--json`` carries its last frames."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

SECRET = "hunter2-Sekr1t-7731"

CODE = """
def lookup(row, key):
    return row[key]

def enrich(rows, token):
    for row in rows:
        lookup(row, "customer_id")

def load(token):
    enrich([{"id": 1}], token)

def broken(token):
    try:
        load(token)
    except KeyError as exc:
        raise RuntimeError(f"cannot enrich with {token}") from exc
"""


@pytest.fixture
def failing(write_routine, tmp_path: Path) -> str:
    code = tmp_path / "go.py"
    code.write_text(CODE)
    doc = {
        "routine_name": "explain",
        "params": {"api_token": SECRET},
        "executors": [
            {
                "name": "go",
                "executor": "python",
                "params": {"path": str(code)},
                "tasks": [
                    {
                        "task": "call",
                        "args": {"function": "broken", "kwargs": {"token": "${params.api_token}"}},
                        "retries": 1,
                        "retry_delay": 0,
                    }
                ],
            }
        ],
    }
    return str(write_routine(doc))


def frames_of(text: str) -> list[str]:
    return [
        line.strip().split(", in ")[-1]
        for line in text.splitlines()
        if line.strip().startswith("File ")
    ]


def test_every_failed_attempt_keeps_its_traceback(cli, failing, orchestrator_home):
    proc = cli(failing, "--json")
    assert proc.returncode == 1
    (task,) = json.loads(proc.stdout)["tasks"]
    assert task["error"] == "cannot enrich with ****"
    # The function runs in the python executor's child process: its traceback starts at the
    # user's function (the child's and the engine's own frames say nothing).
    assert frames_of(task["traceback"]) == ["load", "enrich", "lookup", "broken"], task["traceback"]
    assert task["traceback"].rstrip().endswith("RuntimeError: cannot enrich with ****")
    assert "KeyError: 'customer_id'" in task["traceback"] and "engine.py" not in task["traceback"]
    run_id = json.loads(proc.stdout)["run_id"]

    shown = cli("show", run_id)
    assert (
        shown.stdout.count("Traceback (most recent call last):") == 4
    ), shown.stdout  # 2 attempts x (cause + error)
    assert (
        frames_of(shown.stdout) == ["broken", "load", "enrich", "lookup", "broken"] * 2
    ), shown.stdout
    assert "go.call #1 failed" in shown.stdout and "go.call #2 failed" in shown.stdout

    as_json = json.loads(cli("show", run_id, "--json").stdout)
    last = ["load", "enrich", "lookup", "broken"]
    assert [frames_of(t["traceback"]) for t in as_json["tasks"]] == [last, last]

    logs = cli("logs", run_id).stdout
    assert logs.count("KeyError: 'customer_id'") == 2 and "attempt 1 failed: RuntimeError" in logs
    stored = b"".join(p.read_bytes() for p in orchestrator_home.glob("runs.sqlite*")).decode(
        "utf-8", "replace"
    )
    for text in (proc.stdout, proc.stderr, shown.stdout, logs, stored):
        assert SECRET not in text


def test_verbose_prints_the_traceback_quiet_runs_do_not(cli, failing):
    verbose = cli(failing, "--verbose")
    assert verbose.returncode == 1
    assert verbose.stderr.count("Traceback (most recent call last):") == 4, verbose.stderr
    assert "in lookup" in verbose.stderr and SECRET not in verbose.stderr
    plain = cli(failing)
    assert (
        plain.returncode == 1
        and "Traceback" not in plain.stderr
        and "in lookup" not in plain.stderr
    )


def test_a_store_written_before_tracebacks_is_migrated(tmp_path: Path):
    """An older ``runs.sqlite`` has no ``tasks.traceback`` column: added; old rows read None."""
    from orchestrator.runs.store import SQLiteStore, TaskRecord

    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT, "
            "executor TEXT, task TEXT, step_index INTEGER, task_index INTEGER, attempt INTEGER, "
            "status TEXT, started REAL, ended REAL, error_type TEXT, error TEXT, metrics TEXT)"
        )
        conn.execute(
            "INSERT INTO tasks VALUES ('t1', 'r1', 's', 'e', 't', 0, 0, 1, 'failed', 1.0, 2.0, "
            "'KeyError', 'x', NULL)"
        )
    store = SQLiteStore(path)
    assert [t.traceback for t in store.tasks("r1")] == [None]
    store.record_task(
        TaskRecord(
            id="t2",
            run_id="r1",
            step="s",
            executor="e",
            task="t",
            step_index=0,
            task_index=0,
            attempt=2,
            status="failed",
            traceback="Traceback ...\nKeyError: 'x'",
        )
    )
    assert [t.traceback for t in SQLiteStore(path).tasks("r1")] == [
        None,
        "Traceback ...\nKeyError: 'x'",
    ]


def test_last_frames_keeps_the_end_of_a_long_traceback():
    from orchestrator.masking import last_frames

    text = (
        "Traceback (most recent call last):\n"
        + "".join(f'  File "f.py", line {i}, in f{i}\n    call{i}()\n' for i in range(6))
        + "ValueError: x\n"
    )
    assert frames_of(last_frames(text)) == ["f3", "f4", "f5"]
    assert last_frames(text).startswith("Traceback (most recent call last):\n  …\n")
    assert last_frames(text).endswith("ValueError: x")


def test_the_terminal_renderer_prints_the_traceback_with_verbose():
    from rich.console import Console

    from orchestrator.events import FAILED, RunInfo, TaskResult
    from orchestrator.cli.render import RichRenderer

    result = TaskResult(
        "go",
        "python",
        "call",
        0,
        status=FAILED,
        attempts=1,
        started=1.0,
        ended=2.0,
        error="boom [red]",
        error_type="KeyError",
        traceback='Traceback (most recent call last):\n  File "go.py", line 3, in lookup\n'
        "KeyError: 'customer_id' [bold]\n",
    )
    for verbose in (True, False):
        console = Console(record=True, width=80, force_terminal=False)
        renderer = RichRenderer(console=console, verbose=verbose)
        renderer.run_started(RunInfo("r", "explain", 1))
        renderer.task_retrying(result, 0)
        renderer.task_finished(result)
        renderer.progress.stop()
        text = console.export_text()
        assert text.count("KeyError: 'customer_id' [bold]") == (2 if verbose else 0), text
        assert ("in lookup" in text) is verbose
