"""The docker executor against a real Docker daemon, through the real engine and run store."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from docker_fixtures import containers, created_events, docker_routine, run_logs, wait_until


def run(path: Path) -> Any:
    from orchestrator.api import Orchestrator

    return Orchestrator().run(path)


def start(path: Path) -> tuple[Any, threading.Thread, dict[str, Any]]:
    """A tracked run executing in a thread: ``(run, thread, box)`` with the result in ``box``."""
    from orchestrator.api import Orchestrator

    tracked = Orchestrator().start(path)
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", tracked.execute()), daemon=True)
    thread.start()
    return tracked, thread, box


def sh(script: str) -> dict[str, Any]:
    return {"task": "run", "args": {"command": ["sh", "-c", script]}}


def test_exit_zero_succeeds_output_reaches_the_run_log_and_the_container_is_removed(
        docker_client: Any, busybox_image: str, routine_name: str, tmp_path: Path) -> None:
    path = docker_routine(tmp_path, routine_name, [sh("echo to-stdout; echo to-stderr >&2; echo second line")])
    result = run(path)
    (task,) = result.tasks
    assert task.status == "succeeded", task.error
    meta = task.metrics.execution_metadata
    assert meta["exit_code"] == 0 and meta["reattached"] is False and meta["log_lines"] == 3
    logs = run_logs(result.run_id)
    assert "to-stdout" in logs and "stderr: to-stderr" in logs and "second line" in logs
    assert logs.index("to-stdout") < logs.index("second line")
    assert containers(docker_client, routine_name) == []


def test_nonzero_exit_fails_with_code_and_last_stderr_lines(docker_client: Any, busybox_image: str,
                                                             routine_name: str, tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22; do echo bad-$i >&2; done; exit 3"
    (task,) = run(docker_routine(tmp_path, routine_name, [sh(script)])).tasks
    assert task.status == "failed" and task.error_type == "ContainerFailed"
    assert "exited with code 3" in task.error and "killed for memory" not in task.error
    assert "bad-22" in task.error and "bad-3\n" in task.error and "bad-2\n" not in task.error  # the last 20 lines
    assert containers(docker_client, routine_name) == []


def test_retry_after_a_failure_starts_a_fresh_container(docker_client: Any, busybox_image: str,
                                                        routine_name: str, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    script = "if [ -e /state/once ]; then echo second try; else touch /state/once; exit 4; fi"
    call = {"task": "run", "retries": 1, "retry_delay": 0.1,
            "args": {"command": ["sh", "-c", script], "mounts": [{"source": "state", "target": "/state"}]}}
    since = time.time()
    result = run(docker_routine(tmp_path, routine_name, [call]))
    (task,) = result.tasks
    assert task.status == "succeeded" and task.attempts == 2, task.error
    assert len(created_events(docker_client, routine_name, since)) == 2
    assert "second try" in run_logs(result.run_id)


def test_oom_kill_is_reported(docker_client: Any, busybox_image: str, routine_name: str, tmp_path: Path) -> None:
    call = sh('x=0123456789; while true; do x="$x$x"; done')
    call["args"]["resources"] = {"memory": "8m"}
    (task,) = run(docker_routine(tmp_path, routine_name, [call])).tasks
    assert task.status == "failed"
    if "killed for memory" not in task.error:
        pytest.skip(f"this kernel did not OOM-kill under an 8m limit: {task.error}")
    assert "exited with code 137" in task.error


def test_mounts_read_write_and_read_only(docker_client: Any, busybox_image: str, routine_name: str,
                                         tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "settings.txt").write_text("colour=blue\n")
    mounts = [{"source": "landing", "target": "/out"}, {"source": "conf", "target": "/conf", "read_only": True}]
    ok = {"task": "run", "args": {"command": ["sh", "-c", "cat /conf/settings.txt > /out/copied.txt"],
                                  "mounts": mounts}}
    (task,) = run(docker_routine(tmp_path, routine_name, [ok])).tasks
    assert task.status == "succeeded", task.error
    assert (tmp_path / "landing" / "copied.txt").read_text() == "colour=blue\n"

    refused = {"task": "run", "args": {"command": ["sh", "-c", "echo changed > /conf/settings.txt"], "mounts": mounts}}
    (task,) = run(docker_routine(tmp_path, routine_name, [refused])).tasks
    assert task.status == "failed" and "Read-only file system" in task.error
    assert (tmp_path / "conf" / "settings.txt").read_text() == "colour=blue\n"


def test_output_is_in_the_run_log_while_the_container_still_runs(docker_client: Any, busybox_image: str,
                                                                  routine_name: str, tmp_path: Path) -> None:
    (tmp_path / "signal").mkdir()
    call = {"task": "run", "args": {"command": ["sh", "-c", "echo waiting-for-go; while [ ! -e /s/go ]; do sleep 0.05; "
                                                "done; echo got-go"], "mounts": [{"source": "signal", "target": "/s"}]}}
    tracked, thread, box = start(docker_routine(tmp_path, routine_name, [call]))
    run_id = tracked.record.run_id
    wait_until(lambda: "waiting-for-go" in run_logs(run_id), what="the first line in the run log")
    (running,) = containers(docker_client, routine_name)
    assert running.status == "running" and "got-go" not in run_logs(run_id)
    (tmp_path / "signal" / "go").touch()
    thread.join(60)
    assert box["result"].status == "succeeded"
    assert "got-go" in run_logs(run_id)


def _kill_signals(client: Any, container_id: str, since: float) -> list[str]:
    events = client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "kill", "container": container_id})
    return [event["Actor"]["Attributes"].get("signal") for event in events]


@pytest.mark.parametrize("init", [True, False], ids=["init-sigterm", "pid1-sigkill"])
def test_cancel_stops_and_removes_the_container(docker_client: Any, busybox_image: str, routine_name: str,
                                                tmp_path: Path, init: bool) -> None:
    """With an init process SIGTERM ends the program; without one, sh as PID 1 ignores it: SIGKILL after the grace."""
    call = {"task": "run", "args": {"command": ["sh", "-c", "echo started; while true; do sleep 0.1; done"], "init": init}}
    tracked, thread, box = start(docker_routine(tmp_path, routine_name, [call], stop_grace=1))
    wait_until(lambda: "started" in run_logs(tracked.record.run_id), what="the container's first line")
    (running,) = containers(docker_client, routine_name)
    since = time.time()
    tracked.cancel()
    thread.join(60)
    (task,) = box["result"].tasks
    assert box["result"].status == "cancelled" and task.status == "cancelled"
    assert "stopped and removed" in task.error
    assert containers(docker_client, routine_name) == []
    signals = _kill_signals(docker_client, running.id, since)
    assert signals[0] == "15" and ("9" in signals) == (not init), signals


def test_timeout_stops_the_container(docker_client: Any, busybox_image: str, routine_name: str,
                                     tmp_path: Path) -> None:
    call = {"task": "run", "timeout": 1, "args": {"command": ["sh", "-c", "sleep 600"]}}
    (task,) = run(docker_routine(tmp_path, routine_name, [call])).tasks
    assert task.status == "failed" and task.error_type == "TaskTimeout"
    assert containers(docker_client, routine_name) == []


def test_pull_never_with_a_missing_image_fails_at_once(docker_client: Any, busybox_image: str,
                                                       routine_name: str, tmp_path: Path) -> None:
    call = {"task": "run", "retries": 3, "args": {"command": ["true"]}}
    path = docker_routine(tmp_path, routine_name, [call], image="orchestrator-test/absent:0")
    (task,) = run(path).tasks
    assert task.status == "failed" and task.error_type == "ImageUnavailable" and task.attempts == 1
    assert "pull is 'never'" in task.error
    assert containers(docker_client, routine_name) == []


def test_pull_missing_pulls_when_the_daemon_lacks_the_image(docker_client: Any, busybox_image: str,
                                                            routine_name: str, tmp_path: Path) -> None:
    """No image lookup before create: the daemon's "no such image" answer is what starts the pull."""
    call = {"task": "run", "retries": 2, "args": {"command": ["true"]}}
    path = docker_routine(tmp_path, routine_name, [call], image="orchestrator-test/absent:0", pull="missing")
    (task,) = run(path).tasks
    assert task.status == "failed" and task.error_type == "ImageUnavailable" and task.attempts == 1
    assert "could not be pulled" in task.error  # no registry is reachable from the tests
    assert containers(docker_client, routine_name) == []


def test_a_missing_network_is_not_taken_for_a_missing_image(docker_client: Any, busybox_image: str,
                                                             routine_name: str, tmp_path: Path) -> None:
    """Both are a 404 from create; only "no such image" may start a pull."""
    call = {"task": "run", "args": {"command": ["true"], "network": "orchestrator-test-no-such-net"}}
    result = run(docker_routine(tmp_path, routine_name, [call], pull="missing"))
    (task,) = result.tasks
    assert task.status == "failed" and task.error_type == "NotFound"
    assert "orchestrator-test-no-such-net" in task.error and "pull" not in task.error
    assert not any("pulling image" in line for line in run_logs(result.run_id))


def test_a_daemon_that_does_not_answer_is_named(routine_name: str, tmp_path: Path) -> None:
    call = {"task": "run", "args": {"command": ["true"]}}
    path = docker_routine(tmp_path, routine_name, [call], docker_host=f"unix://{tmp_path}/no.sock")
    (task,) = run(path).tasks
    assert task.status == "failed" and task.error_type == "DaemonUnreachable"
    assert f"unix://{tmp_path}/no.sock does not answer" in task.error


def test_keep_on_failure_keeps_it_and_cleanup_of_a_later_run_removes_it(
        docker_client: Any, busybox_image: str, routine_name: str, tmp_path: Path) -> None:
    call = {"task": "run", "args": {"command": ["sh", "-c", "exit 9"], "keep_on_failure": True}}
    (task,) = run(docker_routine(tmp_path, routine_name, [call])).tasks
    assert task.status == "failed"
    (kept,) = containers(docker_client, routine_name)
    assert kept.name.startswith("orchestrator-kept-") and kept.attrs["State"]["ExitCode"] == 9

    (task,) = run(docker_routine(tmp_path, routine_name, [{"task": "cleanup"}])).tasks
    assert task.status == "succeeded", task.error
    assert task.metrics.execution_metadata["removed"] == [kept.name]
    assert containers(docker_client, routine_name) == []


def test_cleanup_leaves_a_crashed_runs_container_for_resume(docker_client: Any, busybox_image: str,
                                                            routine_name: str, tmp_path: Path) -> None:
    labels = {"orchestrator.routine": routine_name, "orchestrator.run": "crashed-run", "orchestrator.token": "t"}
    leftover = docker_client.containers.create(busybox_image, ["true"], name=f"orchestrator-{routine_name}",
                                               labels=labels, network_mode="none")
    (task,) = run(docker_routine(tmp_path, routine_name, [{"task": "cleanup"}])).tasks
    assert task.metrics.execution_metadata["removed"] == []
    assert [c.id for c in containers(docker_client, routine_name)] == [leftover.id]
    (task,) = run(docker_routine(tmp_path, routine_name, [{"task": "cleanup", "args": {"include_unrecorded": True}}])).tasks
    assert task.metrics.execution_metadata["removed"] == [f"orchestrator-{routine_name}"]


def test_build_then_run_what_was_built(docker_client: Any, busybox_image: str, routine_name: str,
                                       tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "greeting.txt").write_text("built here\n")
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY greeting.txt /greeting.txt\n")
    tag = f"orchestrator-test/{routine_name}:1"
    tasks = [{"task": "build", "args": {"context_dir": "ctx"}}, sh("cat /greeting.txt")]
    try:
        result = run(docker_routine(tmp_path, routine_name, tasks, image=tag))
        build, ran = result.tasks
        assert build.status == "succeeded" and ran.status == "succeeded", (build.error, ran.error)
        assert build.metrics.execution_metadata["image_id"] == docker_client.images.get(tag).id
        assert "built here" in run_logs(result.run_id)
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_failing_build_says_why(docker_client: Any, busybox_image: str, routine_name: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY missing.txt /x\n")
    path = docker_routine(tmp_path, routine_name, [{"task": "build", "args": {"context_dir": "ctx"}}],
                          image=f"orchestrator-test/{routine_name}:1")
    (task,) = run(path).tasks
    assert task.status == "failed" and task.error_type == "BuildFailed" and "missing.txt" in task.error


def test_cancel_stops_a_build_in_the_middle_of_a_quiet_step(docker_client: Any, busybox_image: str,
                                                             routine_name: str, tmp_path: Path) -> None:
    """A RUN that prints nothing for minutes: the old loop only looked at cancel between output lines."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo build-step-$((40+2)); sleep 300\n")
    tag = f"orchestrator-test/{routine_name}:1"
    path = docker_routine(tmp_path, routine_name, [{"task": "build", "args": {"context_dir": "ctx"}}], image=tag)
    tracked, thread, box = start(path)
    wait_until(lambda: "build: build-step-42" in run_logs(tracked.record.run_id), what="the RUN step's output")
    tracked.cancel()
    thread.join(60)
    assert not thread.is_alive(), "the build was still being read after cancel"
    (task,) = box["result"].tasks
    assert task.status == "cancelled" and "build of" in task.error

    def sleeping() -> list[Any]:
        return [c for c in docker_client.containers.list() if "sleep 300" in " ".join(c.attrs["Config"]["Cmd"] or [])]

    wait_until(lambda: not sleeping(), what="the daemon stopping the cancelled build's RUN container")
    assert tag not in [t for image in docker_client.images.list() for t in image.tags]


def test_a_container_costs_five_api_calls_and_no_lookups(docker_client: Any, busybox_image: str,
                                                         routine_name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """create, start, logs, wait, remove: no image lookup, no inspect, no name lookup on a first attempt."""
    from executors.docker import wire

    calls: list[str] = []
    send = wire.request

    def recording(path: str, method: str, target: str, *args: Any) -> Any:
        calls.append(f"{method} {target.split('?')[0].split('/', 2)[-1]}")
        return send(path, method, target, *args)

    monkeypatch.setattr(wire, "request", recording)
    result = run(docker_routine(tmp_path, routine_name, [sh("echo out; echo err >&2")]))
    (task,) = result.tasks
    assert task.status == "succeeded", task.error
    cid = task.metrics.execution_metadata["container_id"]
    assert sorted(call for call in calls if call != "HEAD _ping") == sorted([
        "POST containers/create", f"POST containers/{cid}/start", f"GET containers/{cid}/logs",
        f"POST containers/{cid}/wait", f"DELETE containers/{cid}"])
    assert task.metrics.execution_metadata["log_lines"] == 2
    assert {"out", "stderr: err"} <= set(run_logs(result.run_id))


@pytest.mark.parametrize("kind", ["socket", "sdk"])
def test_both_engines_keep_the_same_contract(docker_client: Any, busybox_image: str, routine_name: str,
                                             kind: str) -> None:
    """The standard-library engine (local socket) and the SDK's (tcp, TLS, ssh) answer alike."""
    from executors.docker import engine as engines
    from executors.docker.container import create, exit_of, find, keep, remove
    from executors.docker.logs import frames

    engine = engines.SocketEngine(engines.DEFAULT_SOCKET) if kind == "socket" else engines.SdkEngine(docker_client.api)
    name = f"orchestrator-{routine_name}"
    body = {"Image": busybox_image, "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"],
            "Labels": {"orchestrator.routine": routine_name, "orchestrator.token": "t1"},
            "HostConfig": {"NetworkMode": "none", "Init": True}}
    found, created = create(engine, name, body)
    assert created and found.status == "created" and found.token == "t1"
    again, created = create(engine, name, body)
    assert not created and again.id == found.id
    with pytest.raises(engines.NoSuchImage):
        engine.create(name + "-x", {**body, "Image": "orchestrator-test/absent:0"})
    engine.start(found.id)
    end = exit_of(engine, found.id, engine.wait(found.id))
    assert (end.code, end.oom_killed) == (3, False)
    stream = engine.logs(found.id, {"stdout": 1, "stderr": 1, "follow": 1})
    try:
        assert sorted(frames(stream)) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    finally:
        stream.close()
    assert keep(engine, found.id, name) == f"orchestrator-kept-{routine_name}"
    assert find(engine, name) is None and find(engine, found.id).name == f"orchestrator-kept-{routine_name}"
    remove(engine, found.id)
    remove(engine, found.id)  # a gone container is fine
    with pytest.raises(engines.NotFound):
        engine.inspect(found.id)


@pytest.mark.parametrize("params,args,where,says", [
    ({}, {}, "executors[0].params", "image"),
    ({"image": "has space:1"}, {}, "executors[0].params.image", "not an image reference"),
    ({"image": "x:1"}, {"mounts": [{"source": "nowhere", "target": "/in"}]},
     "executors[0].tasks[0].args.mounts[0].source", "does not exist"),
    ({"image": "x:1"}, {"mounts": [{"source": ".", "target": "relative"}]},
     "executors[0].tasks[0].args.mounts[0].target", "absolute path"),
    ({"image": "x:1"}, {"resources": {"cpus": 1, "disk": "1g"}}, "executors[0].tasks[0].args.resources", "disk"),
    ({"image": "x:1"}, {"resources": {"memory": "lots"}}, "executors[0].tasks[0].args.resources.memory",
     "is not a size"),
    ({"image": "x:1"}, {"resources": {"memory": "1m"}}, "executors[0].tasks[0].args.resources.memory", "minimum"),
], ids=["no-image", "bad-image", "mount-missing", "mount-target", "unknown-resource", "memory-unparsable",
        "memory-too-small"])
def test_bad_input_is_refused_at_validation_with_its_path(cli: Any, tmp_path: Path, params: dict[str, Any],
                                                          args: dict[str, Any], where: str, says: str) -> None:
    import json

    doc = {"routine_name": "bad", "executors": [
        {"name": "box", "executor": "docker", "params": params, "tasks": [{"task": "run", "args": args}]}]}
    path = tmp_path / "routine.json"
    path.write_text(json.dumps(doc))
    proc = cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    line = next(line for line in proc.stderr.splitlines() if where in line)
    assert says in line


def test_relative_mount_sources_resolve_against_the_routine_folder(tmp_path: Path) -> None:
    from orchestrator.routine.load import load_routine

    (tmp_path / "conf").mkdir()
    path = docker_routine(tmp_path, "resolve", [{"task": "run", "args": {"mounts": [
        {"source": "conf", "target": "/conf"}, {"source": str(tmp_path), "target": "/abs"}]}}])
    (step,) = load_routine(path).steps
    mounts = step.tasks[0].args["mounts"]
    assert mounts[0]["source"] == str(tmp_path / "conf") and mounts[1]["source"] == str(tmp_path)


def test_doctor_reports_daemon_and_image(cli: Any, docker_client: Any, busybox_image: str, tmp_path: Path) -> None:
    import json

    def doctor(params: dict[str, Any]) -> dict[str, Any]:
        doc = {"routine_name": "doc", "executors": [
            {"name": "box", "executor": "docker", "params": params, "tasks": [{"task": "run"}]}]}
        (tmp_path / "routine.json").write_text(json.dumps(doc))
        proc = cli("doctor", str(tmp_path / "routine.json"), "--json")
        return next(item for item in json.loads(proc.stdout) if item["subject"].startswith("step box"))

    assert doctor({"image": busybox_image, "pull": "never"})["problems"] == []
    (problem,) = doctor({"image": "orchestrator-test/absent:0", "pull": "never"})["problems"]
    assert "not on the daemon" in problem
    (problem,) = doctor({"image": busybox_image, "docker_host": f"unix://{tmp_path}/no.sock"})["problems"]
    assert "does not answer" in problem


def test_light_commands_do_not_import_the_docker_sdk(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "conf").mkdir()
    path = docker_routine(tmp_path, "light", [{"task": "run", "args": {"mounts": [{"source": "conf", "target": "/c"}],
                                                                       "resources": {"memory": "1g"}}}])
    code = ("import sys\nfrom orchestrator.cli import main\n"
            f"rc = main(['validate', {str(path)!r}])\nprint(rc, 'docker' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.splitlines()[-1].split() == ["0", "False"], proc.stderr


def _spawn(args: list[str], env: dict[str, str]) -> Any:
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def log_position_saved(home: Path, run_id: str) -> bool:
    """Whether the container's record under ``home`` holds a log position past the start."""
    import json

    for path in (home / "state").rglob(f"remote/{run_id}/*.json"):
        try:
            logs = json.loads(path.read_text()).get("logs") or {}
        except (OSError, ValueError):  # being replaced right now
            continue
        if any(int(value or 0) > 0 for value in logs.values()):
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("when,code", [("running", 0), ("exited", 0), ("exited", 5)],
                         ids=["reattach-running", "finished-ok", "finished-failed"])
def test_kill_9_then_resume_reattaches_to_the_same_container(
        docker_client: Any, busybox_image: str, routine_name: str, tmp_path: Path, plugin_site: Path,
        orchestrator_home: Path, when: str, code: int) -> None:
    import os
    import signal
    import uuid

    from conftest import cli_env
    from orchestrator.runs.store import open_store

    (tmp_path / "s").mkdir()
    script = f"echo first; while [ ! -e /s/go ]; do sleep 0.05; done; echo second; exit {code}"
    call = {"task": "run", "args": {"command": ["sh", "-c", script], "mounts": [{"source": "s", "target": "/s"}]}}
    path = docker_routine(tmp_path, routine_name, [call])
    env, old = cli_env(plugin_site, orchestrator_home), str(uuid.uuid4())
    since = time.time()
    child = _spawn(["run", str(path), "--run-id", old], env)
    wait_until(lambda: "first" in run_logs(old), what="the container's first line in the run log")
    # the log position is saved just after the line (a kill in between copies the line twice,
    # by design: never lost); this test is about continuing from a saved position
    wait_until(lambda: log_position_saved(orchestrator_home, old), what="the saved log position")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    (container,) = containers(docker_client, routine_name)
    assert container.status == "running"
    if when == "exited":
        (tmp_path / "s" / "go").touch()
        wait_until(lambda: docker_client.containers.get(container.id).status == "exited", what="the container's exit")

    resume = _spawn(["resume", old], env)
    store = open_store()
    new = wait_until(lambda: [r.run_id for r in store.list_runs(routine_name) if r.run_id != old],
                     what="the resumed run")[0]
    wait_until(lambda: any("re-attaching" in line for line in run_logs(new)), what="the re-attach")
    (tmp_path / "s" / "go").touch()
    out, err = resume.communicate(timeout=120)

    assert resume.returncode == (0 if code == 0 else 1), err
    logs = run_logs(new)
    assert "second" in logs and "first" not in logs  # continued where the killed run's log stopped
    assert [e["id"] for e in created_events(docker_client, routine_name, since)] == [container.id]
    (task,) = store.tasks(new)
    if code:
        assert task.status == "failed" and f"exited with code {code}" in task.error
    else:
        assert task.status == "succeeded" and task.metrics["execution_metadata"]["reattached"] is True
    assert containers(docker_client, routine_name) == []


def test_a_log_line_without_a_timestamp_is_kept_and_does_not_move_the_position() -> None:
    import logging

    from executors.docker.logs import LogPump

    seen: list[str] = []
    logger = logging.getLogger("test-docker-unstamped")
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        pump = LogPump(None, "c" * 64, logger)
        pump._line("stdout", b"2026-11-30T11:21:23.100000000Z first")
        pump._line("stdout", b"no stamp on this one")
        pump._line("stdout", b"2026-11-30T11:21:23.100000000Z first")  # a re-read after reconnect
        pump._line("stdout", b"2026-11-30T11:21:24Z second")
    finally:
        logger.removeHandler(handler)
    assert seen == ["first", "no stamp on this one", "second"]
    assert pump.positions["stdout"] == 1796037684 * 1_000_000_000
