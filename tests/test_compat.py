"""The seed's Python names and the execution-tracking SDK's names run unchanged and are recorded."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator import Orchestrator, TaskMetrics
from orchestrator.compat import ETLMetrics, ETLResult, ExecutionResult, track_pipeline_execution
from orchestrator.runs.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "runs.sqlite")


def test_sdk_decorator_watcher_context_and_metrics_are_recorded(store: SQLiteStore) -> None:
    seen = []

    @track_pipeline_execution(pipeline_id="orders", watermark="2026-01-01", next_watermark="2026-02-01", store=store)
    def load(batch, watcher_context):
        seen.append((watcher_context.execution_id, watcher_context.pipeline_id, watcher_context.watermark))
        return ETLMetrics(inserts=3, updates=1, total_rows=4, execution_metadata={"batch": batch})

    result = load("b1")
    assert isinstance(result, ExecutionResult) and result.result.inserts == 3
    assert seen == [(result.execution_id, "orders", "2026-01-01")]
    run = store.get_run(result.execution_id)
    assert (run.routine, run.status) == ("orders", "succeeded")
    [task] = store.tasks(result.execution_id)
    assert task.metrics["inserts"] == 3 and task.metrics["execution_metadata"] == {"batch": "b1"}
    assert store.get_watermark("orders", "orders", "load") == "2026-02-01"


def test_the_function_may_move_the_watermark_and_later_calls_see_it(store: SQLiteStore) -> None:
    @track_pipeline_execution(pipeline_id="inc", store=store)
    def step(watcher_context):
        before = watcher_context.watermark
        watcher_context.next_watermark = (before or 0) + 10
        return before

    assert step().result is None
    assert step().result == 10


def test_completed_successfully_false_records_a_failure_and_saves_no_watermark(store: SQLiteStore) -> None:
    @track_pipeline_execution(pipeline_id="half", next_watermark="later", store=store)
    def partial():
        return ETLResult(inserts=1, completed_successfully=False)

    result = partial()
    assert result.status == "failed"
    assert store.get_run(result.execution_id).status == "failed"
    assert store.get_watermark("half", "half", "partial") is None


def test_a_foreign_metrics_object_is_kept_not_dropped(store: SQLiteStore) -> None:
    @dataclasses.dataclass
    class TheirMetrics:  # another library's class with the same field names
        inserts: int
        total_rows: int

    @track_pipeline_execution(pipeline_id="foreign", store=store)
    def job():
        return TheirMetrics(inserts=2, total_rows=5)

    [task] = store.tasks(job().execution_id)
    assert (task.metrics["inserts"], task.metrics["total_rows"]) == (2, 5)


def test_inactive_pipeline_is_recorded_skipped_and_not_called(store: SQLiteStore) -> None:
    @track_pipeline_execution(pipeline_id="off", active=False, store=store)
    def never():
        raise AssertionError("must not be called")

    assert store.get_run(never().execution_id).status == "skipped"


def test_metrics_from_value() -> None:
    assert TaskMetrics.from_value({"inserts": 1}).inserts == 1
    assert TaskMetrics.from_value({"inserts": 1, "file": "x"}) is None  # other keys: a result, not metrics
    assert TaskMetrics.from_value({"inserts": "many"}) is None
    assert TaskMetrics.from_value(7) is None and TaskMetrics.from_value([1, 2]) is None
    converted = TaskMetrics.from_value(ETLResult(updates=2))
    assert isinstance(converted, TaskMetrics) and converted.updates == 2


def test_seed_orchestrator_takes_a_dict_and_runs_executors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook's spelling: Orchestrator(routine_config).run_executors()."""
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    code = tmp_path / "functions.py"
    code.write_text("import json, pathlib\ndef note(out, text):\n    pathlib.Path(out).write_text(text)\n")
    out = tmp_path / "out.txt"
    routine_config = {"routine_name": "seed_dict", "executors": [
        {"name": "work", "executor": "python", "params": {"path": str(code)},
         "tasks": [{"task": "call", "args": {"function": "note", "kwargs": {"out": str(out), "text": "hi"}}}]}]}
    result = Orchestrator(routine_config).run_executors()
    assert result.status == "succeeded" and out.read_text() == "hi"
    recorded = Orchestrator().store.get_run(result.run_id)
    assert recorded is not None and recorded.status == "succeeded"
    assert json.loads(json.dumps(routine_config))["routine_name"] == "seed_dict"  # the caller's dict untouched


def test_a_dict_routine_is_validated_like_a_file(tmp_path: Path) -> None:
    from orchestrator.errors import RoutineError

    with pytest.raises(RoutineError, match="executors"):
        Orchestrator({"routine_name": "bad"}).run_executors(track=False)
    with pytest.raises(RoutineError, match="not JSON data"):
        Orchestrator({"routine_name": object()}).plan()
