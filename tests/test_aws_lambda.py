"""The Lambda handler, called in-process with a fake context, against DynamoDB and S3 on a loopback moto server.

(moto's Lambda never runs our code, notes/moto.md 1.1, so invoking through it would test nothing.)
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lambda_fixtures import FakeContext, LambdaAws, write_file
from orchestrator.aws_lambda import runner as aws_lambda
from orchestrator.aws_lambda.runner import InvalidEvent, JsonLinesRenderer, LambdaRunner, RunFailed
from orchestrator.executor import Cancelled, Context, Executor, task
from orchestrator.hookspecs import hookimpl

SECRET = "tok-SUPER-s3cr3t-9876"

FUNCTIONS = """
import json, logging, pathlib, time
import boto3
from orchestrator.executor import TaskMetrics, current_context

def note(out, **values):
    pathlib.Path(out).write_text(json.dumps(values))
    return TaskMetrics(total_rows=len(values), execution_metadata={"wrote": out})

def archive(bucket, key, dest):
    s3 = boto3.client("s3")
    s3.copy_object(Bucket=dest, Key=key, CopySource={"Bucket": bucket, "Key": key})
    return TaskMetrics(inserts=1)

def boom():
    raise ValueError("boom: the source table is missing")

def flaky(counter):
    path = pathlib.Path(counter)
    tries = int(path.read_text()) if path.exists() else 0
    path.write_text(str(tries + 1))
    if tries == 0:
        raise RuntimeError("first try fails")

def leak(token):
    print("using token", token)
    logging.getLogger("user.code").warning("token is %s", token)
    raise PermissionError(f"token {token} was rejected")

def stay(started):
    pathlib.Path(started).write_text("started")
    context = current_context()
    limit = time.monotonic() + 30
    while time.monotonic() < limit:
        if context.wait(0.1):
            context.check_cancelled()
    raise AssertionError("never cancelled")
"""


class SlowRemote(Executor):
    """Stands for an executor with remote work: its task ends only when ``cancel()`` stops that work."""

    name = "slow_remote"
    cancels: list[float] = []

    def __init__(self) -> None:
        self.stopped = False

    def cancel(self) -> None:
        SlowRemote.cancels.append(time.monotonic())
        self.stopped = True

    @task
    def wait(self, context: Context) -> None:
        limit = time.monotonic() + 30
        while not self.stopped and time.monotonic() < limit:
            time.sleep(0.05)
        raise Cancelled("remote job stopped")


class SlowRemotePlugin:
    @hookimpl
    def register_executors(self) -> list[type]:
        return [SlowRemote]


@pytest.fixture
def lam(lambda_aws: LambdaAws, dynamo_store: Any, lambda_registry: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Any:
    """A runner on the real plugins + DynamoDB store, code allowlisted under tmp/code, a bucket for routines."""
    code = write_file(tmp_path / "code" / "functions.py", FUNCTIONS)
    monkeypatch.setenv("ORCHESTRATOR_STORE", f"dynamodb://{dynamo_store.table}")
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST", str(code.parent))
    monkeypatch.delenv("ORCHESTRATOR_LAMBDA_MARGIN_SECONDS", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_ROUTINE", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", raising=False)
    s3 = lambda_aws.client("s3")
    s3.create_bucket(Bucket="routines")

    class Lam:
        runner = LambdaRunner(lambda_registry)
        store = dynamo_store
        functions = str(code)
        out = tmp_path / "out"

        def call(self, event: Any, seconds: float = 60) -> dict[str, Any]:
            return self.runner.handle(event, FakeContext(seconds))

    Lam.out.mkdir()
    Lam.s3 = s3
    return Lam()


def python_routine(functions: str, function: str, kwargs: dict[str, Any] | None = None, name: str = "lambda_test",
                   params: dict[str, Any] | None = None, **task_fields: Any) -> dict[str, Any]:
    return {"routine_name": name, "params": params or {}, "executors": [
        {"name": "work", "executor": "python", "params": {"path": functions},
         "tasks": [{"task": "call", "args": {"function": function, "kwargs": kwargs or {}}, **task_fields}]}]}


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_inline_routine_runs_and_is_recorded(lam: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = lam.out / "note.json"
    routine = python_routine(lam.functions, "note", {"out": str(out), "day": "${params.day}"}, params={"day": "x"})
    summary = lam.call({"routine": routine, "params": {"day": "2026-11-21"}})
    assert json.loads(out.read_text()) == {"day": "2026-11-21"}
    assert summary["status"] == "succeeded" and summary["deadline"] is False
    [task_summary] = summary["tasks"]
    assert (task_summary["status"], task_summary["attempts"], task_summary["metrics"]["total_rows"]) == ("succeeded", 1, 1)
    assert task_summary["duration"] >= 0 and task_summary["error"] is None
    json.dumps(summary)
    record = lam.store.get_run(summary["run_id"])
    assert (record.status, record.routine, record.routine_file, record.params) == ("succeeded", "lambda_test", "inline routine", {"day": "2026-11-21"})
    assert [t.status for t in lam.store.tasks(summary["run_id"])] == ["succeeded"]
    lam.call({"routine": routine, "params": {"day": "2026-11-22"}})


def test_routine_from_s3(lam: Any) -> None:
    out = lam.out / "from-s3.json"
    lam.s3.put_object(Bucket="routines", Key="daily/routine.json",
                      Body=json.dumps(python_routine(lam.functions, "note", {"out": str(out), "source": "s3"})).encode())
    summary = lam.call({"routine": "s3://routines/daily/routine.json"})
    assert summary["status"] == "succeeded"
    assert json.loads(out.read_text()) == {"source": "s3"}
    assert lam.store.get_run(summary["run_id"]).routine_file == "s3://routines/daily/routine.json"
    with pytest.raises(InvalidEvent, match="cannot read routine s3://routines/missing.json: NoSuchKey"):
        lam.call({"routine": "s3://routines/missing.json"})


def test_packaged_routine_is_trusted_but_must_stay_in_the_package(lam: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "package"
    write_file(package / "own_code.py", "def hello(out):\n    open(out, 'w').write('hi')\n")
    out = lam.out / "hello.txt"
    write_file(package / "routines" / "hello.json", json.dumps({"routine_name": "hello", "executors": [
        {"name": "h", "executor": "python", "params": {"path": "../own_code.py"},
         "tasks": [{"task": "call", "args": {"function": "hello", "kwargs": {"out": str(out)}}}]}]}))
    write_file(tmp_path / "outside.json", json.dumps(python_routine(lam.functions, "note", {"out": str(out)})))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(package))
    assert lam.call({"routine": "routines/hello.json"})["status"] == "succeeded"
    assert out.read_text() == "hi"
    with pytest.raises(InvalidEvent, match="outside the Lambda package root"):
        lam.call({"routine": "../outside.json"})


def test_s3_notification_runs_the_configured_routine_once_per_object(lam: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for bucket in ("landing", "archive"):
        lam.s3.create_bucket(Bucket=bucket)
    keys = ["in/orders 2026=11.csv", "in/refunds.csv"]
    for key in keys:
        lam.s3.put_object(Bucket="landing", Key=key, Body=b"id,amount\n1,2\n")
    routine = {"routine_name": "on_upload", "executors": [
        {"name": "archive", "executor": "python", "params": {"path": lam.functions},
         "tasks": [{"task": "call", "args": {"function": "archive",
                                              "kwargs": {"bucket": "${params.bucket}", "key": "${params.key}", "dest": "archive"}}}]}]}
    monkeypatch.setenv("ORCHESTRATOR_ROUTINE", json.dumps(routine))
    records = [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "landing"}, "object": {"key": "in/orders+2026%3D11.csv"}}},
               {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "landing"}, "object": {"key": "in/gone.csv"}}},
               {"eventSource": "aws:s3", "eventName": "ObjectCreated:CompleteMultipartUpload",
                "s3": {"bucket": {"name": "landing"}, "object": {"key": "in/refunds.csv"}}}]
    summary = lam.call({"Records": records})
    assert [r["status"] for r in summary["runs"]] == ["succeeded", "succeeded"]
    archived = sorted(o["Key"] for o in lam.s3.list_objects_v2(Bucket="archive")["Contents"])
    assert archived == sorted(keys)
    params = [lam.store.get_run(r["run_id"]).params for r in summary["runs"]]
    assert params[0] == {"bucket": "landing", "key": keys[0], "s3_uri": f"s3://landing/{keys[0]}"}


def test_scheduled_event_passes_the_scheduled_time(lam: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = lam.out / "scheduled.json"
    lam.s3.put_object(Bucket="routines", Key="nightly.json", Body=json.dumps(
        python_routine(lam.functions, "note", {"out": str(out), "at": "${params.scheduled_time}"})).encode())
    monkeypatch.setenv("ORCHESTRATOR_ROUTINE", "s3://routines/nightly.json")
    event = {"version": "0", "id": "53dc4d37", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2026-11-21T06:00:00Z", "region": "us-east-1",
             "resources": ["arn:aws:events:us-east-1:123456789012:rule/nightly"], "detail": {}}
    assert lam.call(event)["status"] == "succeeded"
    assert json.loads(out.read_text()) == {"at": "2026-11-21T06:00:00Z"}


def test_deadline_cancels_the_run_before_lambda_would_kill_it(lam: Any, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    started = lam.out / "started"
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_MARGIN_SECONDS", "1")
    # The python child gets half the cancel grace (at most 3 s) between SIGTERM and SIGKILL; with
    # the default 10 s that is 3 s, more than this 1 s margin, and a child slow to exit once made
    # the run end at 5.2 s. Half a second fits in the margin, as a deployment's grace should.
    monkeypatch.setenv("ORCHESTRATOR_CANCEL_GRACE", "1")
    begin = time.monotonic()
    with pytest.raises(RunFailed) as failed:
        lam.call({"routine": python_routine(lam.functions, "stay", {"started": str(started)})}, seconds=3)
    elapsed = time.monotonic() - begin
    assert started.exists()
    assert 1.7 < elapsed < 3.0, elapsed
    summary = failed.value.summary
    assert (summary["status"], summary["deadline"], summary["tasks"][0]["status"]) == ("cancelled", True, "cancelled")
    assert lam.store.get_run(summary["run_id"]).status == "cancelled"
    assert [t.status for t in lam.store.tasks(summary["run_id"])] == ["cancelled"]
    assert "deadline" in [line["event"] for line in json_lines(capsys.readouterr().out)]
    lam.call({"routine": python_routine(lam.functions, "note", {"out": str(lam.out / "after")})})


def test_deadline_calls_the_executors_cancel_with_the_default_margin(lam: Any, lambda_registry: Any) -> None:
    """With 2.4 s left and the 10 s default margin capped at half, the cancel comes at about 1.2 s."""
    lambda_registry.register(SlowRemotePlugin(), name="slow-remote")
    SlowRemote.cancels.clear()
    with pytest.raises(RunFailed, match="cancelled"):
        lam.call({"routine": {"routine_name": "remote", "executors": [
            {"name": "job", "executor": "slow_remote", "tasks": ["wait"]}]}}, seconds=2.4)
    assert len(SlowRemote.cancels) == 1


def test_deadline_timer_fires_the_capped_margin_before_the_end() -> None:
    """The timer's interval is what the deadline depends on; wall-clock timings belong in bench/."""
    context = type("Ctx", (), {"get_remaining_time_in_millis": lambda self: 2400})()
    for margin, interval in ((10.0, 1.2), (0.5, 1.9), (0.0, 2.4)):
        timer = aws_lambda.cancel_at(context, lambda: None, margin)
        assert timer is not None and timer.interval == pytest.approx(interval)
        timer.cancel()
    assert aws_lambda.cancel_at(object(), lambda: None, 1.0) is None


def test_failed_task_raises_and_is_recorded(lam: Any) -> None:
    with pytest.raises(RunFailed, match="boom: the source table is missing") as failed:
        lam.call({"routine": python_routine(lam.functions, "boom")})
    summary = failed.value.summary
    assert (summary["status"], summary["deadline"], summary["tasks"][0]["error_type"]) == ("failed", False, "ValueError")
    assert lam.store.get_run(summary["run_id"]).status == "failed"
    assert lam.call({"routine": python_routine(lam.functions, "note", {"out": str(lam.out / "x")})})["status"] == "succeeded"


@pytest.mark.parametrize("executor, json_path", [
    ({"name": "stage", "executor": "staging", "params": {"parent_directory": "landing", "dump_directory": "dump",
                                                          "transform": "/opt/evil/t.py:run"}, "tasks": ["transfer"]},
     "executors[0].params.transform"),
    ({"name": "stage", "executor": "staging", "params": {"parent_directory": "landing", "dump_directory": "dump",
                                                          "py_exec_path": "py_exec"}, "tasks": ["transfer"]},
     "executors[0].params.py_exec_path"),
    ({"name": "work", "executor": "python", "params": {"path": "CODE-evil/functions.py"},
      "tasks": [{"task": "call", "args": {"function": "note", "kwargs": {"out": "OUT"}}}]},
     "executors[0].params.path"),
])
def test_event_routine_naming_code_outside_the_allowlist_is_refused(lam: Any, executor: dict[str, Any],
                                                                    json_path: str) -> None:
    """``CODE-evil`` shares a string prefix with the allowlisted folder, but is not inside it."""
    out = lam.out / "ran"
    text = json.dumps({"routine_name": "evil", "executors": [executor]})
    text = text.replace("CODE", str(Path(lam.functions).parent)).replace("OUT", str(out))
    Path(str(Path(lam.functions).parent) + "-evil").mkdir()
    Path(str(Path(lam.functions).parent) + "-evil/functions.py").write_text(FUNCTIONS)
    with pytest.raises(InvalidEvent) as refused:
        lam.call({"routine": json.loads(text)})
    message = str(refused.value)
    assert json_path in message and "ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST" in message and "\n" not in message
    assert message.startswith("inline routine: ")
    assert not out.exists()
    assert lam.store.list_runs(routine="evil") == []


def test_s3_routine_is_untrusted_and_an_empty_allowlist_allows_nothing(lam: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = lam.out / "ran"
    lam.s3.put_object(Bucket="routines", Key="r.json",
                      Body=json.dumps(python_routine(lam.functions, "note", {"out": str(out)})).encode())
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST", "")
    with pytest.raises(InvalidEvent, match=r"^s3://routines/r.json: executors\[0\].params.path: .*allowlist: empty"):
        lam.call({"routine": "s3://routines/r.json"})
    assert not out.exists() and lam.store.list_runs() == []


def test_stdout_is_one_json_object_per_event(lam: Any, capsys: pytest.CaptureFixture[str]) -> None:
    counter = lam.out / "tries"
    routine = python_routine(lam.functions, "flaky", {"counter": str(counter)}, retries=1, retry_delay=0)
    summary = lam.call({"routine": routine})
    lines = json_lines(capsys.readouterr().out)
    assert [l["event"] for l in lines] == ["run_started", "task_started", "task_retrying", "task_started",
                                           "task_finished", "run_finished"]
    for line in lines:
        assert set(JsonLinesRenderer.FIELDS) <= set(line)
        assert line["run_id"] == summary["run_id"] and line["routine"] == "lambda_test"
        assert line["ts"].endswith("Z")
    retry, finished, done = lines[2], lines[4], lines[5]
    assert (retry["level"], retry["attempt"], retry["error"]) == ("WARNING", 1, "first try fails")
    assert (finished["status"], finished["attempt"], finished["step"], finished["task"]) == ("succeeded", 2, "work", "call")
    assert isinstance(finished["duration"], float) and done["status"] == "succeeded"
    assert summary["tasks"][0]["attempts"] == 2


def test_secrets_stay_out_of_stdout_the_error_and_the_store(lam: Any, capsys: pytest.CaptureFixture[str]) -> None:
    routine = python_routine(lam.functions, "leak", {"token": "${params.api_token}"}, params={"api_token": "none"})
    with pytest.raises(RunFailed) as failed:
        lam.call({"routine": routine, "params": {"api_token": SECRET}})
    out = capsys.readouterr()
    lines = json_lines(out.out)
    assert any(l["event"] == "output" and "using token ****" == l["message"] for l in lines)
    assert SECRET not in out.out + out.err and SECRET not in str(failed.value)
    run_id = failed.value.summary["run_id"]
    assert any("****" in l.message for l in lam.store.logs(run_id))
    raw = lam.store.client.scan(TableName=lam.store.table)["Items"]
    assert raw and SECRET not in json.dumps(raw)
    assert lam.store.get_run(run_id).params == {"api_token": "****"}


def test_invalid_events_and_routines_raise_one_line(lam: Any) -> None:
    with pytest.raises(InvalidEvent, match="unrecognised event"):
        lam.call({"hello": "world"})
    with pytest.raises(InvalidEvent, match="ORCHESTRATOR_ROUTINE is not set"):
        lam.call({"source": "aws.events", "detail-type": "Scheduled Event", "time": "2026-01-01T00:00:00Z"})
    with pytest.raises(InvalidEvent) as invalid:
        lam.call({"routine": {"routine_name": "bad", "executors": [
            {"name": "a", "executor": "no_such_executor", "tasks": ["x"]},
            {"name": "b", "executor": "python", "params": {}, "tasks": ["call"]}]}})
    message = str(invalid.value)
    assert "\n" not in message and message.startswith("inline routine: ")
    assert "executors[0].executor: unknown executor 'no_such_executor'" in message and "executors[1]" in message
    assert lam.store.list_runs() == []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHESTRATOR_LAMBDA_MARGIN_SECONDS", "soon")
        with pytest.raises(InvalidEvent, match="ORCHESTRATOR_LAMBDA_MARGIN_SECONDS='soon'"):
            lam.call({"routine": python_routine(lam.functions, "note", {"out": str(lam.out / "no")})})
    assert lam.store.list_runs() == [] and not (lam.out / "no").exists()
    assert lam.call({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "landing"}) == {"status": "succeeded", "runs": []}


def test_without_a_store_the_home_defaults_to_lambda_tmp(lambda_registry: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "lambda-tmp" / "orchestrator"
    monkeypatch.delenv("ORCHESTRATOR_HOME")
    monkeypatch.delenv("ORCHESTRATOR_STORE", raising=False)
    monkeypatch.setattr(aws_lambda, "LAMBDA_HOME", str(home))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    write_file(tmp_path / "code.py", "def noop():\n    pass\n")
    write_file(tmp_path / "r.json", json.dumps(python_routine("code.py", "noop")))
    summary = LambdaRunner(lambda_registry).handle({"routine": "r.json"}, FakeContext(30))
    assert summary["status"] == "succeeded"
    assert (home / "runs.sqlite").is_file()


def test_a_leftover_run_of_this_process_does_not_block_the_routine_forever(lam: Any) -> None:
    """Same host and pid look alive to ``is_dead``; in Lambda that is an earlier invocation that never ended."""
    from orchestrator.runs.store import RoutineBusy, RunRecord

    leftover = RunRecord(run_id="leftover-run", routine="lambda_test")
    lam.store.start_run(leftover)
    summary = lam.call({"routine": python_routine(lam.functions, "note", {"out": str(lam.out / "n")})})
    assert summary["status"] == "succeeded"
    assert lam.store.get_run("leftover-run").status == "dead"
    lam.store.start_run(RunRecord(run_id="other-host-run", routine="lambda_test", host="another-sandbox"))
    with pytest.raises(RoutineBusy):
        lam.call({"routine": python_routine(lam.functions, "note", {"out": str(lam.out / "m")})})


# ---------------------------------------------------------------------- untrusted env and paths

def staging_routine(name: str = "stage", **params: Any) -> dict[str, Any]:
    return {"routine_name": name, "executors": [
        {"name": "stage", "executor": "staging", "params": params, "tasks": ["transfer", "post_staging"]}]}


def test_event_routine_reads_only_allowlisted_env_vars(lam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${env.X}`` in an untrusted routine could copy any secret of the function into a folder or S3 key."""
    monkeypatch.setenv("ORCH_TEST_DB_PASSWORD", SECRET)
    monkeypatch.setenv("ORCH_TEST_REGION", "eu-west-3")
    landing = write_file(tmp_path / "landing" / "creds.txt", "creds").parent
    dump = tmp_path / "dump"
    routine = staging_routine("exfil", parent_directory=str(landing), archive_or_delete="delete",
                              dump_directory=str(dump) + "/${env.ORCH_TEST_DB_PASSWORD}")
    lam.s3.put_object(Bucket="routines", Key="exfil.json", Body=json.dumps(routine).encode())
    for allowlist, source, label in [(None, routine, "inline routine"), ("", routine, "inline routine"),
                                     ("ORCH_TEST_REGION", routine, "inline routine"),
                                     (None, "s3://routines/exfil.json", "s3://routines/exfil.json")]:
        if allowlist is None:
            monkeypatch.delenv("ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST", raising=False)
        else:
            monkeypatch.setenv("ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST", allowlist)
        with pytest.raises(InvalidEvent) as refused:
            lam.call({"routine": source})
        message = str(refused.value)
        assert message.startswith(f"{label}: executors[0].params.dump_directory: environment variable "
                                  "ORCH_TEST_DB_PASSWORD is not in ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST"), message
        assert f"(allowed: {allowlist or 'none'})" in message
        assert SECRET not in message and "\n" not in message
    assert not dump.exists() and (landing / "creds.txt").is_file() and lam.store.list_runs() == []

    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST", " ORCH_TEST_REGION , ORCH_TEST_UNSET")
    out = lam.out / "env.json"
    summary = lam.call({"routine": python_routine(lam.functions, "note", {"out": str(out), "region": "${env.ORCH_TEST_REGION}"})})
    assert summary["status"] == "succeeded" and json.loads(out.read_text()) == {"region": "eu-west-3"}
    with pytest.raises(InvalidEvent, match=r"kwargs.x: environment variable ORCH_TEST_UNSET is not set; export it"):
        lam.call({"routine": python_routine(lam.functions, "note", {"out": str(out), "x": "${env.ORCH_TEST_UNSET}"})})


def test_packaged_routines_stay_trusted_for_env_and_paths(lam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "package"
    write_file(package / "code.py", "def note(out, value):\n    open(out, 'w').write(value)\n")
    write_file(package / "env.json", json.dumps(python_routine("code.py", "note", {
        "out": str(lam.out / "env.txt"), "value": "${env.ORCH_TEST_DB_PASSWORD}"})))
    landing = write_file(tmp_path / "landing" / "a.csv", "a").parent
    write_file(package / "stage.json", json.dumps(staging_routine(
        parent_directory=str(landing), dump_directory=str(tmp_path / "dump"), archive_or_delete="delete")))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(package))
    monkeypatch.setenv("ORCH_TEST_DB_PASSWORD", SECRET)
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", str(tmp_path / "nowhere"))
    assert lam.call({"routine": "env.json"})["status"] == "succeeded"
    assert (lam.out / "env.txt").read_text() == SECRET
    assert lam.call({"routine": "stage.json"})["status"] == "succeeded"
    assert (tmp_path / "dump" / "a.csv").read_text() == "a" and not (landing / "a.csv").exists()


OUTSIDE, DATA, ATHENA = "<outside>", "<data>", "<athena>"


@pytest.mark.parametrize("allow, params, json_path, why", [
    ("data", {"parent_directory": OUTSIDE, "dump_directory": DATA + "/dump", "archive_or_delete": "delete"},
     "executors[0].params.parent_directory", "is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("data", {"parent_directory": DATA + "/landing", "dump_directory": OUTSIDE},
     "executors[0].params.dump_directory", "is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("data", {"parent_directory": DATA + "/landing", "dump_directory": "file://" + OUTSIDE},
     "executors[0].params.dump_directory", "is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("data", {"parent_directory": DATA + "/landing", "dump_directory": DATA + "/dump", "archive_directory": OUTSIDE},
     "executors[0].params.archive_directory", "is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("data", {"parent_directory": DATA, "dump_directory": "s3://dump-bucket/in/"},
     "executors[0].params.archive_directory (default)", "_archive' is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("data", {"parent_directory": DATA + "-evil", "dump_directory": DATA + "/dump", "archive_or_delete": "delete"},
     "executors[0].params.parent_directory", "is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("data", ATHENA, "executors[0].tasks[0].args.sql_file", "is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"),
    ("tmp", {"parent_directory": "TMP", "dump_directory": "s3://dump-bucket/in/", "archive_or_delete": "delete"},
     "executors[0].params.parent_directory", "overlaps the orchestrator home"),
    ("tmp", {"parent_directory": "HOME/state", "dump_directory": "s3://dump-bucket/in/", "archive_or_delete": "delete"},
     "executors[0].params.parent_directory", "overlaps the orchestrator home"),
])
def test_event_routine_naming_local_paths_outside_the_path_allowlist_is_refused(
        lam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orchestrator_home: Path, allow: str,
        params: Any, json_path: str, why: str) -> None:
    """``<data>-evil`` shares a string prefix with the allowlisted folder, but is not inside it."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    write_file(data / "landing" / "a.csv", "a")
    write_file(outside / "secret.txt", "secret")
    write_file(Path(str(data) + "-evil") / "b.csv", "b")
    write_file(orchestrator_home / "state" / "journal.jsonl", "{}")
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", str(data if allow == "data" else tmp_path))
    if params == ATHENA:
        routine = {"routine_name": "stage", "executors": [{"executor": "athena", "params": {
            "database": "db", "output_location": "s3://results-bucket/out/"},
            "tasks": [{"task": "run_query", "args": {"sql_file": str(outside / "secret.txt")}}]}]}
    else:
        text = json.dumps(staging_routine(**params)).replace(OUTSIDE, str(outside)).replace(DATA, str(data))
        routine = json.loads(text.replace('"TMP"', json.dumps(str(tmp_path))).replace("HOME", str(orchestrator_home)))
    with pytest.raises(InvalidEvent) as refused:
        lam.call({"routine": routine})
    message = str(refused.value)
    assert message.startswith(f"inline routine: {json_path}: "), message
    assert why in message and "\n" not in message
    if "ALLOWLIST" in why:
        assert message.endswith(f"(path allowlist: {data})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code", "data", "data-evil", "orchestrator-home", "out", "outside"]
    assert (outside / "secret.txt").is_file() and (data / "landing" / "a.csv").is_file()
    assert lam.store.list_runs() == []


def test_path_allowlist_defaults_to_tmp_and_never_admits_the_code_allowlist(lam: Any, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Data where code is imported from could become code: the code allowlist is no place for data."""
    with pytest.raises(InvalidEvent, match=r"^inline routine: executors\[0\].params.parent_directory: "
                                           r"'/var/task/landing' is outside .*\(path allowlist: /tmp\)$"):
        lam.call({"routine": staging_routine(parent_directory="/var/task/landing", dump_directory="s3://dump-bucket/in/",
                                             archive_or_delete="delete")})
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", "")
    with pytest.raises(InvalidEvent, match=r"is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST \(path allowlist: empty"):
        lam.call({"routine": staging_routine(parent_directory=str(tmp_path / "landing"),
                                             dump_directory="s3://dump-bucket/in/", archive_or_delete="delete")})
    code = Path(lam.functions).parent
    write_file(code / "landing" / "a.csv", "a")
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", str(code))
    with pytest.raises(InvalidEvent, match=rf"params.parent_directory: '{code}/landing' overlaps {code} in "
                                           "ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST"):
        lam.call({"routine": staging_routine(parent_directory=str(code / "landing"), dump_directory=str(code / "dump"))})
    assert sorted(p.name for p in code.iterdir()) == ["functions.py", "landing"]
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", "relative/dir")
    with pytest.raises(InvalidEvent, match="ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST: prefixes must be absolute paths"):
        lam.call({"routine": staging_routine(parent_directory="landing", dump_directory="dump")})


def test_event_routine_staging_inside_the_path_allowlist_runs(lam: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    write_file(data / "landing" / "2026" / "a.csv", "a")
    lam.s3.create_bucket(Bucket="dump-bucket")
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", f"{tmp_path / 'elsewhere'},{data}/")
    summary = lam.call({"routine": staging_routine(parent_directory=str(data / "landing"), dump_directory="s3://dump-bucket/in/")})
    assert summary["status"] == "succeeded"
    assert lam.s3.get_object(Bucket="dump-bucket", Key="in/2026/a.csv")["Body"].read() == b"a"
    assert (data / "landing_archive" / "2026" / "a.csv").is_file()


# ---------------------------------------------------------------------- malformed S3 records

@pytest.mark.parametrize("s3, message", [
    ({}, "event.Records[1].s3.bucket is missing: not an S3 event notification record"),
    ({"bucket": {"name": "landing"}}, "event.Records[1].s3.object is missing"),
    ({"bucket": {}, "object": {"key": "in/a.csv"}}, "event.Records[1].s3.bucket.name is missing"),
    ({"bucket": "landing", "object": {"key": "in/a.csv"}}, "event.Records[1].s3.bucket.name is missing"),
    ({"bucket": {"name": "landing"}, "object": {"size": 3}}, "event.Records[1].s3.object.key is missing"),
    ({"bucket": {"name": "landing"}, "object": {"key": 5}}, "event.Records[1].s3.object.key must be a non-empty string, got 5"),
    ({"bucket": {"name": ""}, "object": {"key": "in/a.csv"}}, "event.Records[1].s3.bucket.name must be a non-empty string"),
])
def test_s3_record_missing_fields_is_an_invalid_event(lam: Any, monkeypatch: pytest.MonkeyPatch, s3: dict[str, Any],
                                                      message: str) -> None:
    out = lam.out / "ran"
    monkeypatch.setenv("ORCHESTRATOR_ROUTINE", json.dumps(python_routine(lam.functions, "note", {"out": str(out)})))
    good = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "landing"}, "object": {"key": "in/a.csv"}}}
    with pytest.raises(InvalidEvent) as invalid:
        lam.call({"Records": [good, {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": s3}]})
    assert str(invalid.value).startswith(message) and "\n" not in str(invalid.value)
    assert not out.exists() and lam.store.list_runs() == []
    removed = {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": s3}
    assert aws_lambda.parse_event({"Records": [removed]}) == []
