"""Task records are written in batches (group commit), yet a finished step is on disk before the
next one starts."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Sequence

from inline_executors import inline_registry
from orchestrator import Context, Executor, Orchestrator, TaskMetrics, hookimpl, task
from orchestrator.runs.store import SQLiteStore, TaskRecord


class CountingStore(SQLiteStore):
    """The real SQLite store, counting the transactions that write task records."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.watermark_reads = 0

    def get_watermark(self, routine: str, step: str, task: str) -> Any:
        self.watermark_reads += 1
        return super().get_watermark(routine, step, task)

    def record_task(self, task: TaskRecord) -> None:
        self.batches.append(1)
        super().record_task(task)

    def record_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        self.batches.append(len(tasks))
        super().record_tasks(tasks)


class Probe(Executor):
    """Reads, through its own connection, what other processes would see of this run so far."""

    name = "probe"
    seen: list[tuple[str, int, str]] = []

    def __init__(self, database: str) -> None:
        self.database = database

    @task
    def work(self, seconds: float = 0.05) -> None:
        """Real work, as far as the recorder can tell: it takes a while."""
        time.sleep(seconds)

    @task
    def look(self, context: Context) -> TaskMetrics:
        with sqlite3.connect(self.database) as conn:
            Probe.seen = conn.execute("SELECT step, task_index, status FROM tasks WHERE run_id = ? "
                                      "ORDER BY step, task_index", (context.run_id,)).fetchall()
        return TaskMetrics(total_rows=len(Probe.seen))


class Counter(Executor):
    """Counts across calls and runs with its watermark."""

    name = "counter"

    @task
    def bump(self, context: Context) -> TaskMetrics:
        context.next_watermark = (context.watermark or 0) + 1
        return TaskMetrics(total_rows=context.next_watermark)


class ProbePlugin:
    @hookimpl
    def register_executors(self) -> list[type[Executor]]:
        return [Probe, Counter]


def run_with(store: CountingStore, path: Path) -> Any:
    registry = inline_registry()
    registry.register(ProbePlugin())
    return Orchestrator(registry, store).run(path)


def test_a_long_step_is_written_in_a_few_transactions(tmp_path, write_routine):
    store = CountingStore(tmp_path / "runs.sqlite")
    path = write_routine({"routine_name": "many", "executors": [
        {"name": "greet", "executor": "greeter", "params": {"greeting": "hi"},
         "tasks": ["say"] * 300}]})
    result = run_with(store, path)
    assert result.status == "succeeded"
    records = store.tasks(result.run_id)
    assert [(r.task_index, r.status) for r in records] == [(i, "succeeded") for i in range(300)]
    assert len(store.batches) <= 20, f"{len(store.batches)} transactions for 300 tasks: not batched"
    assert sum(store.batches) < 600, "a running record replaced before its flush is written once"


def test_a_finished_step_is_committed_before_the_next_step_starts(tmp_path, write_routine):
    database = tmp_path / "runs.sqlite"
    store = CountingStore(database)
    path = write_routine({"routine_name": "durable", "executors": [
        {"name": "a_greet", "executor": "greeter", "params": {"greeting": "hi"},
         "tasks": ["say"] * 5},
        {"name": "b_probe", "executor": "probe", "params": {"database": str(database)},
         "tasks": ["look"]}]})
    assert run_with(store, path).status == "succeeded"
    first_step = [("a_greet", i, "succeeded") for i in range(5)]
    assert Probe.seen == [*first_step, ("b_probe", 0, "running")]



class FlakyStore(CountingStore):
    """Refuses the first batch (a locked database, say)."""

    def record_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        if not self.batches:
            self.batches.append(0)
            raise sqlite3.OperationalError("database is locked")
        super().record_tasks(tasks)


def test_a_batch_that_cannot_be_written_waits_for_the_next_flush(tmp_path):
    import pytest

    from orchestrator.runs import RunRecord
    from orchestrator.runs.io import TaskWriter

    store = FlakyStore(tmp_path / "runs.sqlite")
    store.start_run(RunRecord(run_id="r1", routine="x"))
    writer = TaskWriter(store)
    first, second = (TaskRecord(id=f"t{i + 1}", run_id="r1", step="s", executor="e", task="go",
                                step_index=0, task_index=i, attempt=1) for i in range(2))
    writer.add(first)
    writer.add(second)
    with pytest.raises(sqlite3.OperationalError):
        writer.flush()
    writer.add(TaskRecord(**{**first.to_dict(), "status": "succeeded"}))  # newer than the lost one
    writer.flush()
    assert [(t.id, t.status) for t in store.tasks("r1")] == [("t1", "succeeded"), ("t2", "running")]


def test_watermarks_are_read_once_per_run_and_written_through(tmp_path, write_routine):
    store = CountingStore(tmp_path / "runs.sqlite")
    path = write_routine({"routine_name": "counts", "executors": [
        {"name": "count", "executor": "counter", "tasks": ["bump"] * 3}]})
    first = run_with(store, path)
    assert [t.metrics.total_rows for t in first.tasks] == [1, 2, 3], "each call sees the last one's"
    second = run_with(store, path)
    assert [t.metrics.total_rows for t in second.tasks] == [4, 5, 6], "and the next run sees them"
    assert store.watermark_reads == 2


def test_a_task_that_did_real_work_is_committed_when_it_ends(tmp_path, write_routine):
    database = tmp_path / "runs.sqlite"
    path = write_routine({"routine_name": "worked", "executors": [
        {"name": "step", "executor": "probe", "params": {"database": str(database)},
         "tasks": ["work", "look"]}]})
    assert run_with(CountingStore(database), path).status == "succeeded"
    assert Probe.seen == [("step", 0, "succeeded")]


class RefusingStore(CountingStore):
    """Takes the run's claim, then refuses every batch of task records (a full disk, say)."""

    def record_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        self.batches.append(0)
        raise sqlite3.OperationalError("database or disk is full")


def test_a_batch_that_cannot_be_written_fails_the_run(tmp_path, write_routine):
    store = RefusingStore(tmp_path / "runs.sqlite")
    path = write_routine({"routine_name": "refused", "executors": [
        {"name": "greet", "executor": "greeter", "params": {"greeting": "hi"},
         "tasks": ["say"] * 3}]})
    result = run_with(store, path)
    assert result.status == "failed", "a run whose records are lost must not look succeeded"
    record = store.get_run(result.run_id)
    assert record is not None and record.status == "failed"
    logs = [line.message for line in store.logs(result.run_id)]
    assert any("run stopped: the run store failed: database or disk is full" in m for m in logs)


def test_a_batch_keeps_every_column_of_plain_and_detailed_records(tmp_path):
    """Plain records (nothing after ``ended``) are written by a narrower statement: a detailed
    record in the same batch, empty strings and zeros included, and a record that replaces a
    detailed one, must come back exactly as given."""
    from orchestrator.runs import RunRecord

    store = SQLiteStore(tmp_path / "runs.sqlite")
    store.start_run(RunRecord(run_id="r1", routine="x"))

    def record(index: int, **details: Any) -> TaskRecord:
        fields = {"status": "succeeded", "started": 1.0, "ended": 2.0, **details}
        return TaskRecord(id=f"t{index}", run_id="r1", step="s", executor="e", task="go",
                          step_index=0, task_index=index, attempt=1, **fields)

    detailed = record(1, error_type="", error="", metrics={"inserts": 0}, traceback="",
                      watermark=0, next_watermark="2026-11-30", result=[1, "é"])
    empty = record(3, error_type="", error="", traceback="")  # empty, yet not NULL
    store.record_tasks([record(0), detailed, record(2, status="failed", error="boom"), empty])
    store.record_tasks([record(1)])  # the detailed attempt replaced by a plain one: no leftovers
    stored = {t.id: t for t in store.tasks("r1")}
    assert stored["t0"] == record(0) and stored["t1"] == record(1) and stored["t3"] == empty
    assert stored["t2"] == record(2, status="failed", error="boom")
    store.record_tasks([detailed])
    assert store.tasks("r1")[1] == detailed


def test_plain_records_with_text_sqlite_cannot_encode_are_stored_escaped(tmp_path):
    """Plain records skip the per-value conversion only when their text is ASCII: a step named
    after an undecodable file name still lands, escaped, beside an ordinary one."""
    from orchestrator.outcome import Status
    from orchestrator.runs.store import RunRecord, SQLiteStore, TaskRecord

    store = SQLiteStore(tmp_path / "runs.sqlite")
    store.start_run(RunRecord(run_id="r1", routine="x"))
    store.record_tasks([
        TaskRecord("r1:0.0.1", "r1", "st\udcffep", "noop", "nothing", 0, 0, 1, "succeeded", 1.0, 2.0),
        TaskRecord("r1:0.1.1", "r1", "plain", "noop", "nothing", 0, 1, 1, Status.SUCCEEDED, 1.0, 2.0),
        TaskRecord("r1:0.2.1", "r1", "plain", "noop", "nothing", 0, 2, 1, "succeeded", 1.0, 2.0,
                   metrics={"total_rows": 3}),
    ])
    tasks = store.tasks("r1")
    assert [t.step for t in tasks] == ["st\\udcffep", "plain", "plain"]
    assert [t.metrics for t in tasks] == [None, None, {"total_rows": 3}]
    assert [(t.started, t.ended, t.status) for t in tasks] == [(1.0, 2.0, "succeeded")] * 3


def test_a_batch_is_written_in_order_whatever_its_rows_hold(tmp_path):
    """Rows go in as several multi-row statements, plain (nothing after ``ended``) and full
    ones apart: a later record of an id still replaces an earlier one, across both kinds."""
    from orchestrator.runs import RunRecord

    store = SQLiteStore(tmp_path / "runs.sqlite")
    store.start_run(RunRecord(run_id="r1", routine="x"))

    def record(i: int, status: str = "running", **details: Any) -> TaskRecord:
        return TaskRecord(f"t{i}", "r1", "s", "e", "go", 0, i, 1, status, 1.0, None, **details)

    batch = [record(i) for i in range(23)]  # 16 + 4 + 1 + 1 + 1 rows
    batch += [record(1, "failed", error="boom"), record(1, "succeeded"),  # full, then plain
              record(2, "succeeded"), record(2, "failed", error="late"),  # plain, then full
              record(3, "succeeded", metrics={"total_rows": 1}), record(4, "succeeded")]
    store.record_tasks(batch)
    stored = {t.task_index: (t.status, t.error, t.metrics) for t in store.tasks("r1")}
    assert len(stored) == 23
    assert stored[1] == ("succeeded", None, None)
    assert stored[2] == ("failed", "late", None)
    assert stored[3] == ("succeeded", None, {"total_rows": 1})
    assert stored[4] == ("succeeded", None, None)
    assert stored[22] == ("running", None, None)
