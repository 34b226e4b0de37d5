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
    token = {"kwargs": {"token": "${params.api_token}"}}
    tasks = [{"task": "call", "args": {"function": name, **(token if name in TAKES_TOKEN else {})}}
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
    masked = kept_result({"nested": {SECRET: [f"a {SECRET}"]}}, secrets)
    assert masked == {"nested": {"****": ["a ****"]}}
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


SIGNATURES = '''
import pathlib
pathlib.Path(__file__).with_name("imported").write_text("the file was imported")

def load(table, limit=10, *, mode="append", context=None):
    pass

def anything(table, **options):
    pass

def wrapped(func):
    return func

@wrapped
def decorated(a):
    pass

def transform(source, destination, *, sep=","):
    destination.write(source.read())

def transform_any(source, destination, **args):
    pass

def one_argument(path):
    pass
'''

PY_EXEC = '''
def test():
    return True

def main(parent, dump, *, day):
    pass
'''


@pytest.fixture
def code(tmp_path: Path) -> Path:
    (tmp_path / "jobs.py").write_text(SIGNATURES)
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "py_exec.py").write_text(PY_EXEC)
    return tmp_path


def validate(cli: Any, write_routine: Any,
             executors: list[dict[str, Any]]) -> tuple[int, list[str]]:
    path = write_routine({"routine_name": "checked", "executors": executors})
    proc = cli("validate", str(path))
    output = (proc.stdout + proc.stderr).splitlines()
    lines = [line.split(": ", 1)[1] for line in output if ": " in line]
    return proc.returncode, lines


def python_step(code: Path, *calls: tuple[str, dict[str, Any] | None]) -> dict[str, Any]:
    tasks = [{"task": "call", "args": {"function": f, **({"kwargs": k} if k is not None else {})}}
             for f, k in calls]
    return {"name": "go", "executor": "python", "params": {"path": str(code / "jobs.py")},
            "tasks": tasks}


def test_kwargs_are_checked_against_the_function_at_validation(cli: Any, write_routine: Any,
                                                                code: Path) -> None:
    step = python_step(code, ("load", {"tabel": "t", "limit": 3}),
                       ("load", {"table": "t", "context": 1}), ("load", None),
                       ("anything", {"table": "t", "whatever": 1}), ("decorated", {"b": 1}),
                       ("load", {"table": "t", "mode": "x"}))
    code_, lines = validate(cli, write_routine, [step])
    assert code_ == 2
    assert sorted(lines) == sorted([
        "executors[0].tasks[0].args.kwargs.tabel: unknown argument 'tabel' of load(); "
        "did you mean 'table'?",
        "executors[0].tasks[0].args.kwargs: missing required argument 'table' of load(); "
        "add it to kwargs",
        "executors[0].tasks[1].args.kwargs.context: 'context' is passed to load() by the "
        "orchestrator; remove it (or rename the parameter)",
        "executors[0].tasks[2].args.kwargs: missing required argument 'table' of load(); "
        "add it to kwargs",
    ])  # **options takes anything; a decorated function's signature is not known, so not judged
    assert not (code / "imported").exists()


def test_a_transformation_must_take_source_destination_and_its_args(cli: Any, write_routine: Any,
                                                                    code: Path) -> None:
    def staging(name: str, transform: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "executor": "staging",
                "params": {"parent_directory": str(code / f"{name}_in"),
                           "dump_directory": str(code / f"{name}_out"),
                           "transform": f"{code / 'jobs.py'}:{transform}",
                           "transform_args": args},
                "tasks": ["transfer"]}

    code_, lines = validate(cli, write_routine, [
        staging("a", "one_argument", {}), staging("b", "transform", {"sepp": ";"}),
        staging("c", "transform_any", {"any": 1}), staging("d", "transform", {"source": "x"})])
    assert code_ == 2
    assert sorted(lines) == sorted([
        "executors[0].params.transform: one_argument() must take 2 positional parameters "
        "(source, destination); it takes 1",
        "executors[1].params.transform_args.sepp: unknown argument 'sepp' of transform(); "
        "did you mean 'sep'?",
        "executors[3].params.transform_args.source: 'source' is passed to transform() already "
        "(positionally, as source); remove it",
    ])
    assert not (code / "imported").exists()


def test_legacy_main_is_checked_only_when_it_will_be_called(cli: Any, write_routine: Any,
                                                             code: Path) -> None:
    def legacy(name: str, args: dict[str, Any] | None) -> dict[str, Any]:
        params = {"parent_directory": str(code / f"{name}_in"),
                  "dump_directory": str(code / f"{name}_out"), "py_exec_path": str(code / "legacy")}
        if args is not None:
            params["py_exec_args"] = args
        return {"name": name, "executor": "staging", "params": params, "tasks": ["transfer"]}

    code_, lines = validate(cli, write_routine, [legacy("a", None), legacy("b", {"dya": 1}),
                                                 legacy("c", {"day": 1})])
    assert code_ == 2
    assert sorted(lines) == sorted([
        "executors[1].params.py_exec_args.dya: unknown argument 'dya' of main(); "
        "did you mean 'day'?",
        "executors[1].params.py_exec_args: missing required argument 'day' of main(); "
        "add it to py_exec_args",
    ])


@pytest.mark.parametrize("source, problems", [
    ("def f(*args, **kw): pass", []),  # takes anything
    ("def f(a, /, b): pass", [("kw.a", "'a' is positional-only in f(): it cannot be given by name"),
                              ("fn", "f() has a required positional-only parameter 'a' that no "
                                     "argument can fill"),
                              ("kw", "missing required argument 'b' of f(); add it to kw")]),
    ("def f(a): pass\ndef f(b): pass",  # the later def is the one called
     [("kw.a", "unknown argument 'a' of f(); it takes 'b'"),
      ("kw", "missing required argument 'b' of f(); add it to kw")]),
    ("def f(b): pass\nf = print", []),  # rebound: its signature is not known statically
    ("async def f(*, b=1): pass", [("kw.a", "unknown argument 'a' of f(); it takes 'b'")]),
    ("class f:\n    def __init__(self): pass", []),  # not a def: not judged
])
def test_signature_read_with_ast(tmp_path: Path, source: str,
                                 problems: list[tuple[str, str]]) -> None:
    from executors.staging.signature import call_problems

    path = tmp_path / "code.py"
    path.write_text(source)
    assert call_problems(path, "f", {"a": 1}, kwargs_key="kw", function_key="fn") == problems


def test_the_readme_contract_example_runs_as_documented(cli: Any, write_routine: Any,
                                                        tmp_path: Path) -> None:
    from test_docs import readme_block

    (tmp_path / "jobs.py").write_text(readme_block("python", "def load_orders"))
    calls = [{"task": "call", "args": {"function": "load_orders", "kwargs": {"day": "2026-11-22"}}},
             {"task": "call", "args": {"function": "new_files", "kwargs": {"folder": "x"}}}]
    routine = write_routine({"routine_name": "documented", "executors": [
        {"name": "orders", "executor": "python", "params": {"path": "jobs.py"}, "tasks": calls}]})
    proc = cli(str(routine), "--json")
    assert proc.returncode == 0, proc.stderr
    load, files = json.loads(proc.stdout)["tasks"]
    assert (load["metrics"]["total_rows"], load["result"]) == (30, None)
    assert (files["metrics"], files["result"]) == (None, ["a.csv", "b.csv"])
    assert "loading 2026-11-22: run " in proc.stderr  # the context's logger reaches the run log
    bad = dict(calls[0], args={"function": "load_orders", "kwargs": {"dya": "2026-11-22"}})
    routine.write_text(json.dumps({"routine_name": "documented", "executors": [
        {"name": "orders", "executor": "python", "params": {"path": "jobs.py"}, "tasks": [bad]}]}))
    refused = cli("validate", str(routine))
    assert refused.returncode == 2 and "did you mean 'day'?" in refused.stdout + refused.stderr
