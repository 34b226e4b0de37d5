"""The ecs executor against a real moto server over HTTP, through the real engine.

moto's ECS tasks start RUNNING and advance one state per DescribeTasks (RUNNING → … → STOPPED)
under the ``ecs::task`` state-manager model; the tests hold a task RUNNING with a manual
transition, write its CloudWatch log lines and set its exit code in moto's in-process backend.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from aws_fixtures import ACCOUNT, HOLD, REGION, AwsEnv, run_routine, write_json

CLUSTER, FAMILY, GROUP = "batchy", "extract", "/ecs/extract"
RELEASE = {"progression": "manual", "times": 1}


@pytest.fixture
def ecs(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A cluster, a Fargate task definition logging with awslogs, and a subnet.

    Two moto 5.2 bugs are worked around: it sums the containers' own memory unchecked (None
    breaks RunTask, so the container sets one), and an awsvpc task reads a ``private_dns_name``
    its network interfaces lack (given here, in moto's in-process model).
    """
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    if not hasattr(NetworkInterface, "private_dns_name"):
        monkeypatch.setattr(NetworkInterface, "private_dns_name",
                            property(lambda eni: f"ip-{eni.private_ip_address.replace('.', '-')}.ec2.internal"),
                            raising=False)
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    client = aws.client("ecs")
    client.create_cluster(clusterName=CLUSTER)
    client.register_task_definition(
        family=FAMILY, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "main", "image": "vendor/extractor:1.4", "essential": True, "memory": 512,
                               "logConfiguration": {"logDriver": "awslogs", "options": {
                                   "awslogs-group": GROUP, "awslogs-region": REGION,
                                   "awslogs-stream-prefix": "run"}}}])
    aws.client("logs").create_log_group(logGroupName=GROUP)
    return {"subnet": subnet, "client": client}


def routine(tmp: Path, ecs: dict[str, Any], args: dict[str, Any] | None = None, **call: Any) -> Path:
    return write_json(tmp / "routine.json", {"routine_name": "ecs_test", "executors": [{
        "name": "extract", "executor": "ecs",
        "params": {"cluster": CLUSTER, "task_definition": FAMILY, "subnets": [ecs["subnet"]]},
        "tasks": [{"task": "run", "args": args or {}, **call}]}]})


def backend_tasks() -> list[Any]:
    from moto.ecs.models import ecs_backends

    return list(ecs_backends[ACCOUNT][REGION].tasks.get(CLUSTER, {}).values())


def wait_for_task(seconds: float = 30) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if backend_tasks():
            return backend_tasks()[0]
        time.sleep(0.05)
    raise AssertionError("no ECS task was started")


def started(box: dict[str, Any], thread: threading.Thread) -> Any:
    """The routine's ECS task once moto has it (or the run's outcome, if it ended without one)."""
    end = time.monotonic() + 30
    while time.monotonic() < end and thread.is_alive():
        if backend_tasks():
            return backend_tasks()[0]
        time.sleep(0.05)
    thread.join(5)
    tasks = box["result"].tasks if "result" in box else None
    raise AssertionError(f"no ECS task was started: {[(t.status, t.error) for t in tasks or []]}")


def write_logs(aws: AwsEnv, task: Any, lines: list[str]) -> None:
    logs = aws.client("logs")
    stream = f"run/main/{task.id}"
    try:
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=GROUP, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", fn()), daemon=True)
    thread.start()
    return thread, box


def test_task_runs_with_overrides_logs_are_copied_and_exit_zero_succeeds(
        aws: AwsEnv, ecs: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO)
    aws.set_transition("ecs::task", HOLD)
    args = {"command": ["extract", "--since", "2026-11-01"], "environment": {"MODE": "full"},
            "resources": {"cpus": 1, "memory": "2g"}}
    thread, box = in_thread(lambda: run_routine(routine(tmp_path, ecs, args)))
    task = started(box, thread)
    write_logs(aws, task, ["extracting 2026-11-01", "wrote 42 files"])
    aws.set_transition("ecs::task", RELEASE)
    thread.join(60)
    (result,) = box["result"].tasks
    assert result.status == "succeeded", result.error
    meta = result.metrics.execution_metadata
    assert meta["task_arn"] == task.task_arn and meta["exit_code"] == 0 and meta["log_lines"] == 2
    assert "wrote 42 files" in caplog.text
    assert len(task.started_by) == 36
    assert task.overrides["cpu"] == "1024" and task.overrides["memory"] == "2048"
    (container,) = task.overrides["containerOverrides"]
    assert container == {"name": "main", "command": ["extract", "--since", "2026-11-01"],
                         "environment": [{"name": "MODE", "value": "full"}]}


def test_nonzero_exit_fails_with_the_code_and_last_log_lines(aws: AwsEnv, ecs: dict[str, Any], tmp_path: Path) -> None:
    aws.set_transition("ecs::task", HOLD)
    thread, box = in_thread(lambda: run_routine(routine(tmp_path, ecs)))
    task = started(box, thread)
    write_logs(aws, task, ["starting", "ERROR: vendor API said 401"])
    task.containers[0].exitCode = 3
    aws.set_transition("ecs::task", RELEASE)
    thread.join(60)
    (result,) = box["result"].tasks
    assert result.status == "failed" and result.error_type == "RemoteJobError"
    assert "exit code 3" in result.error and "vendor API said 401" in result.error
    assert len(backend_tasks()) == 1


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_stop_the_task(aws: AwsEnv, ecs: dict[str, Any], tmp_path: Path, how: str) -> None:
    from orchestrator.api import Orchestrator

    aws.set_transition("ecs::task", HOLD)
    path = routine(tmp_path, ecs, timeout=1) if how == "timeout" else routine(tmp_path, ecs)
    tracked = Orchestrator().start(path)
    thread, box = in_thread(tracked.execute)
    task = started(box, thread)
    if how == "cancel":
        tracked.cancel()
    thread.join(60)
    (result,) = box["result"].tasks
    assert result.status == ("cancelled" if how == "cancel" else "failed")
    assert task.desired_status == "STOPPED" and task.last_status == "STOPPED"
    assert "stopped by orchestrator" in task.stopped_reason


def test_fargate_without_subnets_is_refused_at_validation(cli: Any, tmp_path: Path) -> None:
    path = write_json(tmp_path / "routine.json", {"routine_name": "ecs_bad", "executors": [{
        "name": "extract", "executor": "ecs", "params": {"cluster": CLUSTER, "task_definition": FAMILY},
        "tasks": [{"task": "run", "args": {"resources": {"memory": "huge"}}}]}]})
    proc = cli("validate", str(path))
    assert proc.returncode == 2
    assert "executors[0].params.subnets" in proc.stderr
    assert "executors[0].tasks[0].args.resources.memory" in proc.stderr


@pytest.mark.slow
def test_kill_9_then_resume_reattaches_to_the_same_task(aws: AwsEnv, ecs: dict[str, Any], tmp_path: Path,
                                                        plugin_site: Path) -> None:
    from conftest import cli_env
    from orchestrator.runs.store import open_store

    aws.set_transition("ecs::task", HOLD)
    env = cli_env(plugin_site, Path(os.environ["ORCHESTRATOR_HOME"]), aws.env())
    path, old = routine(tmp_path, ecs), str(uuid.uuid4())
    cmd = [sys.executable, "-m", "orchestrator.cli"]
    child = subprocess.Popen([*cmd, "run", str(path), "--run-id", old], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    task = wait_for_task()
    write_logs(aws, task, ["before the crash"])
    store = open_store()
    end = time.monotonic() + 30
    while not any("before the crash" in r.message for r in store.logs(old)) and time.monotonic() < end:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    write_logs(aws, task, ["after the crash"])
    aws.set_transition("ecs::task", RELEASE)
    resume = subprocess.run([*cmd, "resume", old, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert resume.returncode == 0, resume.stderr
    new = json.loads(resume.stdout)["run_id"]
    messages = [r.message for r in store.logs(new)]
    assert any("after the crash" in m for m in messages) and not any("before the crash" in m for m in messages)
    assert len(backend_tasks()) == 1
    (record,) = store.tasks(new)
    assert record.status == "succeeded" and record.metrics["execution_metadata"]["reattached"] is True
