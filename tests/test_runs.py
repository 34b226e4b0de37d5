"""Runs you can trust: records, watermarks, logs, locks, dead runs, detach/wait/cancel/resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env
from test_cli import wait_for_line


def sleeper_routine(marker: Path | None = None, first: bool = True) -> dict:
    steps = []
    if first:
        steps.append({"name": "greet", "executor": "echo", "tasks": [{"task": "say", "args": {"text": "before"}}]})
    steps.append({"name": "nap", "executor": "sleeper", "params": {"marker": str(marker or "")},
                  "tasks": [{"task": "sleep", "args": {"seconds": "${params.nap}"}}]})
    return {"routine_name": "napper", "params": {"nap": 60}, "executors": steps}


def start(plugin_site, home, *args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], env=cli_env(plugin_site, home, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def as_json(proc: subprocess.CompletedProcess) -> object:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_run_and_task_attempts_are_recorded(cli, write_routine):
    path = write_routine({"routine_name": "rec", "executors": [
        {"name": "hello", "executor": "echo", "tasks": [{"task": "say", "args": {"text": "abc"}},
                                                         {"task": "fail", "retries": 1, "retry_delay": 0}]}]})
    run = json.loads(cli(str(path), "--json").stdout)
    shown = as_json(cli("show", run["run_id"], "--json"))
    record = shown["run"]
    assert (record["status"], record["routine"], record["routine_file"]) == ("failed", "rec", str(path))
    assert record["pid"] and record["host"] and record["ended"] >= record["started"]
    attempts = [(t["task"], t["attempt"], t["status"]) for t in shown["tasks"]]
    assert attempts == [("say", 1, "succeeded"), ("fail", 1, "failed"), ("fail", 2, "failed")]
    assert shown["tasks"][0]["metrics"]["total_rows"] == 3
    assert shown["tasks"][2]["error_type"] == "RuntimeError"
    listed = as_json(cli("runs", "--json", "--routine", "rec", "--status", "failed"))
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert as_json(cli("runs", "--json", "--status", "succeeded")) == []


def test_watermark_saved_on_success_only(cli, write_routine):
    def run(next_value: int, fail: bool = False) -> dict:
        doc = {"routine_name": "inc", "executors": [{"name": "load", "executor": "echo",
               "tasks": [{"task": "remember", "args": {"next": next_value, "fail": fail}}]}]}
        return json.loads(cli(str(write_routine(doc)), "--json").stdout)["tasks"][0]

    assert run(10)["metrics"]["execution_metadata"]["seen"] is None
    assert run(20)["metrics"]["execution_metadata"]["seen"] == 10
    assert run(30, fail=True)["status"] == "failed"
    assert run(40)["metrics"]["execution_metadata"]["seen"] == 20, "a failed task does not move the watermark"


def test_logs_capture_logger_and_prints_with_secrets_masked(cli, write_routine, orchestrator_home):
    doc = {"routine_name": "logs", "executors": [{"name": "hello", "executor": "echo", "params": {"prefix": "> "},
           "tasks": [{"task": "say", "args": {"text": "pw=${env.DB_PASSWORD}"}}]}]}
    env = {"DB_PASSWORD": "hunter2-secret"}
    proc = cli(str(write_routine(doc)), "--json", env=env)
    assert "hunter2-secret" not in proc.stdout + proc.stderr and "> pw=****" in proc.stderr
    run = json.loads(proc.stdout)
    logs = cli("logs", run["run_id"])
    assert logs.returncode == 0
    lines = logs.stdout.splitlines()
    assert any("PRINT" in line and "hello.say: > pw=****" in line for line in lines), lines
    assert any("INFO" in line and "said pw=****" in line for line in lines), lines
    assert cli("logs", run["run_id"], "--tail", "1").stdout.count("\n") == 1
    stored = b"".join(p.read_bytes() for p in orchestrator_home.glob("runs.sqlite*"))
    assert b"hunter2-secret" not in stored, "the secret reached the run store"
    assert b"pw=****" in stored


def test_second_start_is_refused_while_running(plugin_site, orchestrator_home, write_routine, cli):
    path = str(write_routine(sleeper_routine(first=False)))
    first = start(plugin_site, orchestrator_home, "run", path, "--json")
    try:
        wait_for_line(first, "SLEEPING")
        second = cli("run", path)
        assert second.returncode == 2
        run_id = as_json(cli("runs", "--json", "--status", "running"))[0]["run_id"]
        assert f"already running as run {run_id}" in second.stderr
        assert "SLEEPING" not in second.stderr, "the refused run started nothing"
        allowed = cli("run", path, "--allow-concurrent", "--quiet", "--param", "nap=0")
        assert allowed.returncode == 0, allowed.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=20)


def test_simultaneous_starts_cannot_both_win(plugin_site, orchestrator_home, write_routine):
    path = str(write_routine(sleeper_routine(first=False)))
    procs = [start(plugin_site, orchestrator_home, "run", path, "--json") for _ in range(3)]
    deadline = time.monotonic() + 60  # start-up is slow on a loaded machine: wait for the losers, not a fixed time
    while sum(proc.poll() is not None for proc in procs) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    codes = sorted(proc.wait(timeout=30) for proc in procs)
    assert codes == [2, 2, 130], codes


def test_kill_9_is_detected_as_dead_and_resume_finishes(plugin_site, orchestrator_home, write_routine, cli):
    path = str(write_routine(sleeper_routine()))
    proc = start(plugin_site, orchestrator_home, "run", path, "--json")
    wait_for_line(proc, "SLEEPING")
    proc.kill()
    proc.wait()
    (dead,) = as_json(cli("runs", "--json"))
    assert dead["status"] == "dead"
    shown = as_json(cli("show", dead["run_id"], "--json"))["tasks"]
    assert [(t["step"], t["status"]) for t in shown] == [("greet", "succeeded"), ("nap", "dead")]
    assert cli("wait", dead["run_id"]).returncode == 1
    resumed = cli("resume", dead["run_id"], "--json", "--param", "nap=0")
    assert resumed.returncode == 0, resumed.stderr
    tasks = {t["step"]: t for t in json.loads(resumed.stdout)["tasks"]}
    assert tasks["greet"]["status"] == "skipped" and dead["run_id"] in tasks["greet"]["reason"]
    assert tasks["nap"]["status"] == "succeeded"
    assert "before" not in resumed.stderr, "the step that succeeded was not repeated"
    new = as_json(cli("show", json.loads(resumed.stdout)["run_id"], "--json"))["run"]
    assert new["resumed_from"] == dead["run_id"] and new["status"] == "succeeded"


def test_resume_refuses_a_changed_routine_unless_forced(cli, write_routine):
    doc = {"routine_name": "chg", "executors": [{"name": "x", "executor": "echo", "tasks": ["fail"]}]}
    path = write_routine(doc)
    run_id = json.loads(cli(str(path), "--json").stdout)["run_id"]
    doc["executors"][0]["tasks"] = ["noop"]
    write_routine(doc)
    refused = cli("resume", run_id)
    assert refused.returncode == 2 and "changed since run" in refused.stderr
    forced = cli("resume", run_id, "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["status"] == "succeeded"


def test_detach_wait_cancel_and_follow(plugin_site, orchestrator_home, write_routine, cli, tmp_path):
    marker = tmp_path / "cancelled.txt"
    path = str(write_routine(sleeper_routine(marker)))
    detached = cli("run", path, "--detach")
    assert detached.returncode == 0, detached.stderr
    run_id = detached.stdout.strip()
    follow = start(plugin_site, orchestrator_home, "logs", run_id, "--follow")
    deadline = time.monotonic() + 20
    while "sleeping" not in cli("logs", run_id).stdout:
        assert time.monotonic() < deadline, "the detached run never logged"
        time.sleep(0.1)
    # Started once both lines are in the store: --tail 0 --follow shows only what comes after.
    follow_new = start(plugin_site, orchestrator_home, "logs", run_id, "--tail", "0", "--follow")
    time.sleep(0.5)
    began = time.monotonic()
    cancelled = cli("cancel", run_id)
    assert cancelled.returncode == 0 and f"run {run_id} cancelled" in cancelled.stdout
    assert time.monotonic() - began < 8, "cancel returned within a few seconds"
    assert marker.read_text().startswith("cancelled"), "the executor's cancel() ran"
    assert cli("wait", run_id).returncode == 130
    out, _ = follow.communicate(timeout=10)
    assert "greet.say: before" in out and "nap.sleep: sleeping" in out, "--follow printed and ended with the run"
    new, _ = follow_new.communicate(timeout=10)
    assert follow_new.returncode == 0
    assert "greet.say: before" not in new and "nap.sleep: sleeping" not in new, new
    again = cli("cancel", run_id)
    assert again.returncode == 0 and "already ended (cancelled)" in again.stdout


def test_child_runs_are_linked_and_shown_as_a_tree(cli, write_routine, tmp_path):
    child = write_routine({"routine_name": "child", "executors": [{"executor": "echo", "tasks": ["noop"]}]}, "child.json")
    parent = write_routine({"routine_name": "parent", "executors": [
        {"name": "spawn", "executor": "echo", "tasks": [{"task": "run_routine", "args": {"path": str(child)}}]}]}, "parent.json")
    run = json.loads(cli(str(parent), "--json").stdout)
    child_id = run["tasks"][0]["metrics"]["execution_metadata"]["child"]
    shown = as_json(cli("show", run["run_id"], "--json"))
    assert [c["run"]["run_id"] for c in shown["children"]] == [child_id]
    assert shown["children"][0]["run"]["parent_run_id"] == run["run_id"]
    text = cli("show", run["run_id"]).stdout
    assert f"    run {child_id}  child  succeeded" in text


def test_track_decorator_records_executions(orchestrator_home):
    from orchestrator import TaskMetrics, track
    from orchestrator.runs.store import open_store

    seen = []

    @track("export")
    def export(rows: int, context=None):
        seen.append(context.watermark)
        context.next_watermark = rows
        return TaskMetrics(inserts=rows)

    first = export(5)
    second = export(7)
    assert (first.status, first.metrics.inserts) == ("succeeded", 5)
    assert seen == [None, 5]
    store = open_store()
    record = store.get_run(second.execution_id)
    assert (record.routine, record.status) == ("export", "succeeded")
    assert store.tasks(second.execution_id)[0].metrics["inserts"] == 7

    @track("export", active=False)
    def skipped():
        raise AssertionError("must not run")

    assert skipped().status == "skipped"

    @track("broken", parent_execution_id=first.execution_id)
    def broken():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        broken()
    (failed,) = store.list_runs(routine="broken")
    assert failed.status == "failed" and failed.parent_run_id == first.execution_id
    assert store.tasks(failed.run_id)[0].error_type == "KeyError"


def test_cancel_ends_a_task_that_ignores_it(plugin_site, orchestrator_home, write_routine, cli):
    doc = {"routine_name": "stubborn", "executors": [{"name": "mule", "executor": "sleeper", "tasks": ["stubborn"]}]}
    env = {"ORCHESTRATOR_CANCEL_GRACE": "1"}
    proc = start(plugin_site, orchestrator_home, "run", str(write_routine(doc)), "--json", env=env)
    wait_for_line(proc, "STUBBORN")
    run_id = as_json(cli("runs", "--json"))[0]["run_id"]
    began = time.monotonic()
    assert cli("cancel", run_id).returncode == 0
    proc.wait(timeout=10)
    assert time.monotonic() - began < 8
    shown = as_json(cli("show", run_id, "--json"))
    assert shown["run"]["status"] == "cancelled"
    assert shown["tasks"][0]["status"] == "cancelled"


def test_heartbeat_tells_whether_a_run_on_another_host_is_dead():
    from orchestrator.runs.store import DEAD_AFTER_SECONDS, RunRecord, is_dead

    fresh = RunRecord(run_id="a", routine="r", host="elsewhere", pid=1, heartbeat=time.time())
    stale = RunRecord(run_id="b", routine="r", host="elsewhere", pid=1, heartbeat=time.time() - DEAD_AFTER_SECONDS - 1)
    assert not is_dead(fresh) and is_dead(stale)
    assert not is_dead(RunRecord(run_id="c", routine="r", status="failed", host="elsewhere", heartbeat=0))


def test_doctor_runs_each_executor_check(cli, write_routine):
    good = write_routine({"routine_name": "ok", "executors": [{"executor": "echo", "tasks": ["noop"]}]}, "good.json")
    proc = cli("doctor", str(good))
    assert proc.returncode == 0 and "ok      step echo (echo)" in proc.stdout
    bad = write_routine({"routine_name": "bad", "executors": [
        {"executor": "echo", "params": {"prefix": "broken"}, "tasks": ["noop"]}]}, "bad.json")
    proc = cli("doctor", str(bad), "--json")
    assert proc.returncode == 1
    (step,) = [item for item in json.loads(proc.stdout) if item["subject"].startswith("step")]
    assert step["problems"] == ["prefix 'broken' cannot work here; pick another"]


def test_a_reused_pid_is_not_mistaken_for_the_run(cli, orchestrator_home):
    from orchestrator.runs.control import cancel_run
    from orchestrator.runs.store import RunRecord, is_dead, open_store, process_start

    stranger = subprocess.Popen(["sleep", "30"])
    try:
        record = RunRecord(run_id="reused-pid-run", routine="r", pid=stranger.pid,
                           pid_started=process_start(stranger.pid) - 1)
        assert is_dead(record), "a live pid that started at another time belongs to another process"
        store = open_store()
        store.start_run(record)
        run, changed = cancel_run(store, "reused-pid-run", grace=1)
        assert run.status == "dead" and not changed
        assert stranger.poll() is None, "cancel must not signal a process that is not the run's"
        own = RunRecord(run_id="own", routine="r2", pid=stranger.pid, pid_started=process_start(stranger.pid))
        assert not is_dead(own)
    finally:
        stranger.kill()
        stranger.wait()


def test_resume_asks_again_for_secret_params(cli, write_routine):
    doc = {"routine_name": "sec", "params": {"db_password": "x"}, "executors": [
        {"name": "s", "executor": "echo", "params": {"password": "${params.db_password}"}, "tasks": ["fail"]}]}
    run_id = json.loads(cli(str(write_routine(doc)), "--json", "--param", "db_password=hunter2-secret").stdout)["run_id"]
    refused = cli("resume", run_id)
    assert refused.returncode == 2 and "--param db_password=..." in refused.stderr
    again = cli("resume", run_id, "--json", "--param", "db_password=hunter2-secret")
    assert again.returncode == 1 and json.loads(again.stdout)["tasks"][0]["error"] == "boom ****"


def test_a_run_id_is_used_once(orchestrator_home):
    from orchestrator.errors import UserError
    from orchestrator.runs.store import RunRecord, open_store

    store = open_store()
    store.start_run(RunRecord(run_id="once", routine="r", status="succeeded", pid=1), allow_concurrent=True)
    with pytest.raises(UserError, match="already recorded"):
        store.start_run(RunRecord(run_id="once", routine="r"), allow_concurrent=True)
