"""The python executor runs each call in a child process that a timeout or a cancel really stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from aws_fixtures import run_routine, write_json
from conftest import cli_env

JOBS = '''
import os, signal, sys, time
from orchestrator import TaskMetrics


def stubborn(out, pid_file, ignore_sigterm=False):
    """Never looks at cancellation and swallows every ordinary exception; writes until stopped."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    loop = "import time\\nwhile True:\\n    open(%r, 'a').write('h\\\\n'); time.sleep(0.05)"
    helper = __import__("subprocess").Popen([sys.executable, "-c", loop % (out + ".helper",)])
    with open(pid_file, "w") as handle:
        handle.write(f"{os.getpid()} {helper.pid}")
    while True:
        try:
            with open(out, "a") as handle:
                handle.write("tick\\n")
            time.sleep(0.05)
        except Exception:
            pass


def reports(n, context):
    print(f"printed {n}")
    sys.stderr.write("to stderr\\n")
    context.logger.warning("logged %s", n)
    context.next_watermark = n + 1
    metadata = {"pid": os.getpid(), "watermark": context.watermark}
    return TaskMetrics(total_rows=n, execution_metadata=metadata)


class Local(Exception):
    retryable = False


def fails_locally():
    raise Local("defined in the user's file")
'''


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.py"
    path.write_text(JOBS)
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def assert_stopped(out: Path, pid_file: Path) -> None:
    """The child and the process it started are gone, and nothing writes any more."""
    pids = [int(p) for p in pid_file.read_text().split()]
    assert not any(alive(pid) for pid in pids), "a process of the task is still alive"
    sizes = [p.stat().st_size for p in (out, Path(f"{out}.helper"))]
    time.sleep(0.5)
    assert [p.stat().st_size for p in (out, Path(f"{out}.helper"))] == sizes, (
        "something still writes"
    )
    assert all(size > 0 for size in sizes), "the task never ran"


def routine(tmp: Path, jobs: Path, task: dict[str, Any]) -> Path:
    return write_json(
        tmp / "routine.json",
        {
            "routine_name": "stoppable",
            "executors": [
                {"name": "py", "executor": "python", "params": {"path": str(jobs)}, "tasks": [task]}
            ],
        },
    )


@pytest.mark.parametrize(
    "ignore_sigterm", [False, True], ids=["ignores-cancellation", "ignores-sigterm"]
)
def test_timeout_stops_a_function_that_ignores_cancellation(
    tmp_path: Path, jobs: Path, ignore_sigterm: bool
) -> None:
    out, pid_file = tmp_path / "out.txt", tmp_path / "pids"
    kwargs = {"out": str(out), "pid_file": str(pid_file), "ignore_sigterm": ignore_sigterm}
    path = routine(
        tmp_path,
        jobs,
        {"task": "call", "args": {"function": "stubborn", "kwargs": kwargs}, "timeout": 2},
    )
    started = time.monotonic()
    result = run_routine(path)
    took = time.monotonic() - started
    (task,) = result.tasks
    assert (task.status, task.error_type) == ("failed", "TaskTimeout"), task
    assert "timed out after 2s" in task.error
    assert_stopped(out, pid_file)
    assert took < 9, (
        f"took {took:.1f}s: the engine waited out its grace period"
    )  # sanity only; it was 12 s


def test_cancel_stops_a_function_that_ignores_cancellation(
    tmp_path: Path, jobs: Path, plugin_site: Path, orchestrator_home: Path, cli: Callable[..., Any]
) -> None:
    out, pid_file = tmp_path / "out.txt", tmp_path / "pids"
    kwargs = {"out": str(out), "pid_file": str(pid_file)}
    path = routine(
        tmp_path, jobs, {"task": "call", "args": {"function": "stubborn", "kwargs": kwargs}}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--json"],
        env=cli_env(plugin_site, orchestrator_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and out.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        (run,) = json.loads(cli("runs", "--json").stdout)
        cancelled = cli("cancel", run["run_id"], "--json")
        assert json.loads(cancelled.stdout)["status"] == "cancelled", cancelled.stderr
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    (task,) = json.loads(stdout)["tasks"]
    assert task["status"] == "cancelled", task
    assert_stopped(out, pid_file)


def test_metrics_logs_prints_and_watermark_come_back(
    tmp_path: Path, jobs: Path, cli: Callable[..., Any]
) -> None:
    path = routine(
        tmp_path, jobs, {"task": "call", "args": {"function": "reports", "kwargs": {"n": 4}}}
    )
    first = json.loads(cli(str(path), "--json").stdout)
    (task,) = first["tasks"]
    assert task["status"] == "succeeded", task
    assert task["metrics"]["total_rows"] == 4
    assert task["metrics"]["execution_metadata"]["pid"] != os.getpid()
    logs = cli("logs", first["run_id"]).stdout
    for level, text in (("PRINT", "printed 4"), ("STDERR", "to stderr"), ("WARNING", "logged 4")):
        assert any(level in line and f"py.call: {text}" in line for line in logs.splitlines()), (
            level,
            logs,
        )
    again = json.loads(cli(str(path), "--json").stdout)
    assert again["tasks"][0]["metrics"]["execution_metadata"]["watermark"] == 5, (
        "next_watermark came back"
    )


def test_an_exception_class_of_the_users_file_keeps_its_message_and_retryability(
    tmp_path: Path, jobs: Path
) -> None:
    path = routine(
        tmp_path,
        jobs,
        {"task": "call", "args": {"function": "fails_locally"}, "retries": 2, "retry_delay": 0},
    )
    (task,) = run_routine(path).tasks
    assert task.status == "failed" and task.attempts == 1, (
        "retryable = False survived the process boundary"
    )
    assert "Local: defined in the user's file" in task.error


def test_in_process_calls_share_the_process(tmp_path: Path, jobs: Path) -> None:
    path = write_json(
        tmp_path / "routine.json",
        {
            "routine_name": "inproc",
            "executors": [
                {
                    "name": "py",
                    "executor": "python",
                    "params": {"path": str(jobs), "in_process": True},
                    "tasks": [
                        {"task": "call", "args": {"function": "reports", "kwargs": {"n": 1}}}
                    ],
                }
            ],
        },
    )
    (task,) = run_routine(path).tasks
    assert task.status == "succeeded" and task.metrics.execution_metadata["pid"] == os.getpid()


def test_the_child_exits_cleanly_after_its_call(
    jobs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from executors._python_child import ChildCall

    call = ChildCall(str(jobs), "fails_locally", {}, None)
    with pytest.raises(Exception, match="defined in the user's file"):
        call.run()
    assert call.process is not None and call.process.returncode == 0, "the child aborted at exit"
    assert "Fatal Python error" not in capfd.readouterr().err
