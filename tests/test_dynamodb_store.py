"""The run-store contract, checked the same way on SQLite (the reference) and on DynamoDB (moto server)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from lambda_fixtures import LambdaAws
from orchestrator.runs.store import LogRecord, RoutineBusy, RunRecord, SQLiteStore, TaskRecord, UnknownRun, open_store


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "runs.sqlite")
    return request.getfixturevalue("dynamo_store")


def a_run(routine: str = "daily", **fields: Any) -> RunRecord:
    return RunRecord(run_id=fields.pop("run_id", str(uuid.uuid4())), routine=routine, **fields)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: no such process on this host."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_start_get_round_trip_keeps_types(store: Any) -> None:
    run = a_run(params={"run_date": "2026-11-21", "ratio": 0.125, "nested": {"a": [1, 2.5, None]}},
                started=1_700_000_000.123456, routine_file="/x/r.json", routine_hash="abc", resumed_from="old-run")
    store.start_run(run)
    got = store.get_run(run.run_id)
    assert got == run
    assert isinstance(got.pid, int) and isinstance(got.started, float) and got.cancel_requested is False
    assert store.get_run("no-such-run") is None


def test_update_run_changes_fields_and_never_creates_a_run(store: Any) -> None:
    run = a_run()
    store.start_run(run)
    store.update_run(run.run_id, status="failed", ended=run.started + 2.5, cancel_requested=True)
    got = store.get_run(run.run_id)
    assert (got.status, got.ended, got.cancel_requested, got.routine) == ("failed", run.started + 2.5, True, "daily")
    store.update_run("ghost-run", status="failed")
    assert store.get_run("ghost-run") is None
    assert [r.run_id for r in store.list_runs()] == [run.run_id]


def test_list_runs_filters_newest_first_with_limit(store: Any) -> None:
    parent = a_run("parent", started=100.0)
    runs = [parent,
            a_run("a", started=200.0, status="succeeded"),
            a_run("a", started=300.0, status="failed", parent_run_id=parent.run_id),
            a_run("b", started=400.0, status="failed")]
    for run in runs:
        store.start_run(run, allow_concurrent=True)
    ids = [r.run_id for r in runs]
    assert [r.run_id for r in store.list_runs()] == ids[::-1]
    assert [r.run_id for r in store.list_runs(routine="a")] == [ids[2], ids[1]]
    assert [r.run_id for r in store.list_runs(status="failed")] == [ids[3], ids[2]]
    assert [r.run_id for r in store.list_runs(routine="a", status="failed")] == [ids[2]]
    assert [r.run_id for r in store.list_runs(parent=parent.run_id)] == [ids[2]]
    assert [r.run_id for r in store.list_runs(limit=2)] == [ids[3], ids[2]]


def test_find_run_by_id_or_unique_prefix(store: Any) -> None:
    first, second = a_run(run_id="abcd1111-x"), a_run(run_id="abcd2222-y")
    for run in (first, second):
        store.start_run(run, allow_concurrent=True)
    assert store.find_run("abcd1111-x").run_id == first.run_id
    assert store.find_run("abcd2").run_id == second.run_id
    with pytest.raises(UnknownRun, match="ambiguous"):
        store.find_run("abcd")
    with pytest.raises(UnknownRun, match="no run"):
        store.find_run("zzzz")


def test_tasks_ordered_and_replaced_by_id(store: Any) -> None:
    run = a_run()
    store.start_run(run)
    def task(step_index: int, task_index: int, attempt: int, **fields: Any) -> TaskRecord:
        return TaskRecord(id=fields.pop("id", str(uuid.uuid4())), run_id=run.run_id, step=f"s{step_index}", executor="python",
                          task=f"t{task_index}", step_index=step_index, task_index=task_index, attempt=attempt, **fields)
    later, retry, first_attempt, first = task(1, 0, 1), task(0, 1, 2), task(0, 1, 1, status="failed"), task(0, 0, 1)
    for record in (later, retry, first_attempt, first):
        store.record_task(record)
    store.record_task(task(0, 0, 1, id=first.id, status="succeeded", ended=first.started + 1, metrics={"total_rows": 3}))
    tasks = store.tasks(run.run_id)
    assert [(t.step_index, t.task_index, t.attempt) for t in tasks] == [(0, 0, 1), (0, 1, 1), (0, 1, 2), (1, 0, 1)]
    assert (tasks[0].status, tasks[0].metrics, tasks[0].id) == ("succeeded", {"total_rows": 3}, first.id)
    assert store.tasks("other-run") == []


def test_a_task_result_keeps_its_json_shape(store: Any) -> None:
    run = a_run()
    store.start_run(run)
    values = [7, 1.5, "text", [1, "a", None], {"rows": 5, "nested": {"ok": True, "x": 0.25}}, None]
    for index, value in enumerate(values):
        store.record_task(TaskRecord(id=str(uuid.uuid4()), run_id=run.run_id, step="s",
                                     executor="python", task="call", step_index=0,
                                     task_index=index, attempt=1, result=value))
    assert [t.result for t in store.tasks(run.run_id)] == values


def test_logs_in_order_after_a_sequence_number(store: Any) -> None:
    run, other = a_run("one"), a_run("two")
    store.start_run(run)
    store.start_run(other)
    store.append_logs([LogRecord(run.run_id, 1.0, "INFO", "s", "t", "first"),
                       LogRecord(other.run_id, 1.5, "INFO", None, None, "elsewhere"),
                       LogRecord(run.run_id, 2.0, "WARNING", None, None, "second")])
    store.append_logs([LogRecord(run.run_id, 3.0, "INFO", "s", "t", "third")])
    logs = store.logs(run.run_id)
    assert [l.message for l in logs] == ["first", "second", "third"]
    assert logs[0].seq < logs[1].seq < logs[2].seq
    assert (logs[0].step, logs[0].task, logs[1].step, logs[1].level) == ("s", "t", None, "WARNING")
    assert [l.message for l in store.logs(run.run_id, after=logs[1].seq)] == ["third"]
    assert store.logs(run.run_id, after=logs[2].seq) == []
    assert [l.message for l in store.logs(other.run_id)] == ["elsewhere"]


def test_watermarks_round_trip_per_key(store: Any) -> None:
    assert store.get_watermark("r", "s", "t") is None
    store.set_watermark("r", "s", "t", {"last": "2026-01-01", "offset": 1.5, "ids": [1, 2]}, "run-1")
    store.set_watermark("a#b", "c", "t", "first", "run-1")
    store.set_watermark("a", "b#c", "t", "second", "run-1")
    assert store.get_watermark("r", "s", "t") == {"last": "2026-01-01", "offset": 1.5, "ids": [1, 2]}
    assert (store.get_watermark("a#b", "c", "t"), store.get_watermark("a", "b#c", "t")) == ("first", "second")
    store.set_watermark("r", "s", "t", 42, "run-2")
    assert store.get_watermark("r", "s", "t") == 42


def test_second_start_is_busy_until_the_first_ends(store: Any) -> None:
    first = a_run()
    store.start_run(first)
    with pytest.raises(RoutineBusy) as busy:
        store.start_run(a_run())
    assert busy.value.run_id == first.run_id
    store.start_run(a_run("another-routine"))
    store.start_run(first)
    store.update_run(first.run_id, status="succeeded", ended=time.time())
    later = a_run()
    store.start_run(later)
    assert store.get_run(later.run_id).status == "running"


def test_allow_concurrent_runs_alongside_and_still_blocks_exclusive_starts(store: Any) -> None:
    first, concurrent = a_run(), a_run()
    store.start_run(first)
    store.start_run(concurrent, allow_concurrent=True)
    assert {r.run_id for r in store.list_runs(status="running")} == {first.run_id, concurrent.run_id}
    store.update_run(first.run_id, status="succeeded", ended=time.time())
    with pytest.raises(RoutineBusy) as busy:
        store.start_run(a_run())
    assert busy.value.run_id == concurrent.run_id
    store.update_run(concurrent.run_id, status="cancelled", ended=time.time())
    store.start_run(a_run())


@pytest.mark.parametrize("holder", ["pid gone on this host", "heartbeat stopped on another host"])
def test_dead_holder_is_taken_over_and_marked_dead(store: Any, holder: str) -> None:
    if holder.startswith("pid"):
        dead = a_run(pid=dead_pid())
    else:
        dead = a_run(host="some-other-host", pid=1, heartbeat=time.time() - 120)
    store.start_run(dead)
    new = a_run()
    store.start_run(new)
    assert store.get_run(dead.run_id).status == "dead"
    assert store.get_run(dead.run_id).ended is not None
    assert store.get_run(new.run_id).status == "running"
    with pytest.raises(RoutineBusy):
        store.start_run(a_run())


def test_two_simultaneous_starts_exactly_one_wins(store: Any) -> None:
    for round_ in range(3):
        routine = f"race-{round_}"
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def start() -> None:
            run = a_run(routine)
            barrier.wait()
            try:
                store.start_run(run)
                outcomes.append("won")
            except RoutineBusy:
                outcomes.append("busy")

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["busy", "busy", "busy", "won"], outcomes
        assert len(store.list_runs(routine=routine, status="running")) == 1


def test_a_run_id_is_used_once_but_a_retried_start_by_its_process_is_fine(store: Any) -> None:
    from orchestrator.errors import UserError

    run = a_run("once")
    store.start_run(run)
    store.start_run(run)
    store.start_run(run, allow_concurrent=True)
    message = f"run id {run.run_id} is already recorded; a run id is used once"
    for other in (dataclasses.replace(run, host="another-host"), dataclasses.replace(run, pid=(run.pid or 0) + 1)):
        for concurrent in (False, True):
            with pytest.raises(UserError, match=message):
                store.start_run(other, allow_concurrent=concurrent)
    got = store.get_run(run.run_id)
    assert (got.host, got.pid, got.status) == (run.host, run.pid, "running")


# ---------------------------------------------------------------------- DynamoDB only

def test_lost_reply_on_the_lock_write_is_not_mistaken_for_a_rival(lambda_aws: LambdaAws, dynamo_store: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """notes/moto.md gotcha 18: the transaction lands, its reply is lost, the retry fails its condition."""
    from aws_fixtures import FaultProxy
    from executors.dynamodb_store import DynamoDBStore

    proxy = FaultProxy(lambda_aws.endpoint, [(500, "InternalServerError", "reply lost")], match="TransactWriteItems", after=True)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        store = DynamoDBStore(dynamo_store.table)
        run = a_run()
        store.start_run(run)
        assert sum("TransactWriteItems" in target for target in proxy.seen) >= 2
        assert store.get_run(run.run_id).status == "running"
        with pytest.raises(RoutineBusy):
            store.start_run(a_run())
    finally:
        proxy.close()


def test_lock_item_is_deleted_when_the_run_ends(dynamo_store: Any) -> None:
    run = a_run("tidy")
    dynamo_store.start_run(run)
    key = {"pk": {"S": "LOCK#tidy"}, "sk": {"S": "LOCK"}}
    assert dynamo_store.client.get_item(TableName=dynamo_store.table, Key=key)["Item"]["run_id"] == {"S": run.run_id}
    dynamo_store.update_run(run.run_id, heartbeat=time.time())
    assert "Item" in dynamo_store.client.get_item(TableName=dynamo_store.table, Key=key)
    dynamo_store.update_run(run.run_id, status="succeeded", ended=time.time())
    assert "Item" not in dynamo_store.client.get_item(TableName=dynamo_store.table, Key=key)


def test_ending_an_old_run_does_not_release_a_new_holder(dynamo_store: Any) -> None:
    old = a_run("shared", pid=dead_pid())
    dynamo_store.start_run(old)
    new = a_run("shared")
    dynamo_store.start_run(new)
    dynamo_store.update_run(old.run_id, status="failed", ended=time.time())
    with pytest.raises(RoutineBusy) as busy:
        dynamo_store.start_run(a_run("shared"))
    assert busy.value.run_id == new.run_id


def test_hook_and_open_store_select_the_table(lambda_aws: LambdaAws, lambda_registry: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from executors.dynamodb_plugin import run_store
    from executors.dynamodb_store import DynamoDBStore

    assert run_store("sqlite:///tmp/x.sqlite") is None
    monkeypatch.setenv("ORCHESTRATOR_STORE", "dynamodb://orchestrator-runs")
    store = open_store(lambda_registry)
    assert isinstance(store, DynamoDBStore) and store.table == "orchestrator-runs"
    with pytest.raises(Exception, match="table name"):
        run_store("dynamodb://x")


def test_importing_the_plugin_does_not_import_boto3() -> None:
    code = "import sys, executors.dynamodb_store as m; m.DynamoDBStore('t-able'); print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_store_records_a_real_tracked_run(dynamo_store: Any, write_routine: Any, tmp_path: Path,
                                          lambda_registry: Any) -> None:
    from orchestrator.routine.load import load_routine
    from orchestrator.engine import plan
    from orchestrator.runs.control import TrackedRun

    code = tmp_path / "work.py"
    code.write_text("from orchestrator.executor import TaskMetrics, current_context\n"
                    "def work():\n    print('working hard')\n    current_context().next_watermark = {'upto': 7}\n"
                    "    return TaskMetrics(total_rows=7)\n")
    path = write_routine({"routine_name": "tracked", "executors": [
        {"name": "w", "executor": "python", "params": {"path": str(code)}, "tasks": [{"task": "call", "args": {"function": "work"}}]}]})
    tracked = TrackedRun(dynamo_store, plan(load_routine(path, registry=lambda_registry)))
    tracked.claim()
    result = tracked.execute()
    assert result.status == "succeeded"
    record = dynamo_store.get_run(result.run_id)
    assert (record.status, record.routine) == ("succeeded", "tracked") and record.ended is not None
    [task] = dynamo_store.tasks(result.run_id)
    assert (task.status, task.metrics["total_rows"], task.step) == ("succeeded", 7, "w")
    assert any(l.message == "working hard" and l.step == "w" for l in dynamo_store.logs(result.run_id))
    assert dynamo_store.get_watermark("tracked", "w", "call") == {"upto": 7}
    tracked_again = TrackedRun(dynamo_store, plan(load_routine(path, registry=lambda_registry)))
    tracked_again.claim()
