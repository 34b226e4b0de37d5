"""The python executor's contract: what a function returns becomes the task's metrics or its
result (kept, stored, shown), in the task's process and in a child process alike; kwargs and
transformation signatures are checked at validation, read with ``ast`` and never imported."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.returns import MAX_RESULT_CHARS, SHORT_RESULT_CHARS, kept_result, result_text

SECRET = "hunter2-Sekr1t-7731"

CODE = '''
from orchestrator import TaskMetrics

class Thing:
    def __repr__(self):
        return "Thing(token=%s)" % TOKEN

class OtherMetrics:  # another library's metrics class: metric attributes, not a TaskMetrics
    def __init__(self):
        self.inserts, self.total_rows, self.completed_successfully = 2, 9, True

TOKEN = None

def metric_names():
    return {"total_rows": 5}

def number():
    return 7

def pair():
    return [1, 2]

def thing(token):
    global TOKEN
    TOKEN = token
    return Thing()

def other_metrics():
    return OtherMetrics()

def mixed(token):
    return {"rows": 5, "note": "with " + token, "password": "plain"}

def huge():
    return "x" * 200_000

def nothing():
    return None
'''

FUNCTIONS = ["metric_names", "number", "pair", "thing", "other_metrics", "mixed", "huge", "nothing"]
TAKES_TOKEN = {"thing", "mixed"}


@pytest.fixture(params=[False, True], ids=["child", "in_process"])
def returning(request: pytest.FixtureRequest, write_routine: Any, tmp_path: Path) -> str:
    code = tmp_path / "jobs.py"
    code.write_text(CODE)
    tasks = [{"task": "call", "args": {"function": name, **({"kwargs": {"token": "${params.api_token}"}}
                                                            if name in TAKES_TOKEN else {})}}
             for name in FUNCTIONS]
    doc = {"routine_name": "returns", "params": {"api_token": SECRET},
           "executors": [{"name": "go", "executor": "python",
                          "params": {"path": str(code), "in_process": request.param},
                          "tasks": tasks}]}
    return str(write_routine(doc))


def test_return_values_become_metrics_or_the_kept_result(cli: Any, returning: str,
                                                          orchestrator_home: Path) -> None:
    proc = cli(returning, "--json")
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    tasks = dict(zip(FUNCTIONS, document["tasks"]))
    assert tasks["metric_names"]["metrics"]["total_rows"] == 5
    assert tasks["metric_names"]["result"] is None
    assert (tasks["number"]["metrics"], tasks["number"]["result"]) == (None, 7)
    assert (tasks["pair"]["metrics"], tasks["pair"]["result"]) == (None, [1, 2])
    assert tasks["thing"]["result"] == "Thing(token=****)"  # not JSON: its repr, masked
    other = tasks["other_metrics"]["metrics"]
    assert (other["inserts"], other["total_rows"], tasks["other_metrics"]["result"]) == (2, 9, None)
    assert tasks["mixed"]["result"] == {"rows": 5, "note": "with ****", "password": "****"}
    cut = tasks["huge"]["result"]
    assert len(cut) <= MAX_RESULT_CHARS and cut.endswith("… (cut: 200000 characters)")
    assert (tasks["nothing"]["metrics"], tasks["nothing"]["result"]) == (None, None)

    run_id = document["run_id"]
    with sqlite3.connect(orchestrator_home / "runs.sqlite") as db:
        stored = [json.loads(r) if r else None for (r,) in db.execute(
            "SELECT result FROM tasks WHERE run_id = ? ORDER BY task_index", (run_id,))]
    assert stored[1:3] == [7, [1, 2]] and stored[0] is None and SECRET not in json.dumps(stored)

    shown = cli("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "total_rows=5" in shown.stdout and "result=7" in shown.stdout
    assert "result=[1, 2]" in shown.stdout and 'result="Thing(token=****)"' in shown.stdout
    assert SECRET not in shown.stdout
    shown_json = json.loads(cli("show", run_id, "--json").stdout)
    assert [t["result"] for t in shown_json["tasks"]][:3] == [None, 7, [1, 2]]


def test_the_task_line_shows_the_result_short(cli: Any, returning: str) -> None:
    proc = cli(returning)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " go.call succeeded" in line]
    assert len(lines) == len(FUNCTIONS)
    assert lines[0].endswith("total_rows=5") and lines[1].endswith("result=7")
    assert lines[2].endswith("result=[1, 2]")
    assert lines[6].endswith('result="' + "x" * (SHORT_RESULT_CHARS - 2) + "…")  # cut
    assert lines[7].endswith("s")  # None: nothing to show
    assert SECRET not in proc.stderr


def test_kept_result_is_json_or_a_masked_repr() -> None:
    assert kept_result((1, "a")) == [1, "a"]
    assert kept_result({1: "a"}) == {"1": "a"}
    assert kept_result({1, 2}) == "{1, 2}"
    assert kept_result(float("nan")) == "nan"  # JSON has no NaN: kept as text, not as bad JSON
    loop: list[Any] = []
    loop.append(loop)
    assert kept_result(loop) == "[[...]]"
    secrets = {SECRET}
    assert kept_result({"nested": {SECRET: [f"a {SECRET}"]}}, secrets) == {"nested": {"****": ["a ****"]}}
    assert kept_result({"api_token": "abc"}) == {"api_token": "****"}  # a secret-looking key

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert kept_result(Broken()) == "<Broken object; repr failed: RuntimeError>"
    big = kept_result(list(range(100_000)))
    assert isinstance(big, str) and len(big) == MAX_RESULT_CHARS and big.startswith("[0, 1, 2")


def test_result_text_is_one_short_line() -> None:
    assert result_text("a\nb") == '"a\\nb"'
    assert result_text(list(range(100)), width=20) == "[0, 1, 2, 3, 4, 5, …"
    assert result_text(None) == ""


def test_a_store_without_the_result_column_gains_it(tmp_path: Path) -> None:
    from orchestrator.runs.store import SQLiteStore, TaskRecord

    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as db:  # the tasks table as an older version made it
        db.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT, "
                   "executor TEXT, task TEXT, step_index INTEGER, task_index INTEGER, attempt "
                   "INTEGER, status TEXT, started REAL, ended REAL, error_type TEXT, error TEXT, "
                   "metrics TEXT, traceback TEXT)")
        db.execute("INSERT INTO tasks (id, run_id, step, executor, task, step_index, task_index, "
                   "attempt, status) VALUES ('old', 'r', 's', 'python', 'call', 0, 0, 1, "
                   "'succeeded')")
    store = SQLiteStore(path)
    store.record_task(TaskRecord(id="new", run_id="r", step="s", executor="python", task="call",
                                 step_index=0, task_index=1, attempt=1, result={"a": [1]}))
    assert [(t.id, t.result) for t in store.tasks("r")] == [("old", None), ("new", {"a": [1]})]
