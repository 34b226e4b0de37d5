"""Alerts (`notify:`) and lateness (`expect:`, `orchestrate check`): real receivers on loopback
(an HTTP server, an SMTP server, SNS on the moto server), through the CLI."""
from __future__ import annotations

import email
import email.policy
import json
import socket
import time

import pytest

from conftest import use_moto

TOKEN = "T0KEN-xyz-very-secret"


def routine(notify: list, fail: bool = False, name: str = "alerted", **extra) -> dict:
    task = {"task": "fail", "args": {"message": "broke"}} if fail else {"task": "say", "args": {"text": "hi"}}
    return {"routine_name": name, "notify": notify, **extra,
            "executors": [{"name": "work", "executor": "echo", "tasks": [task]}]}


def logs(cli, run_id: str) -> str:
    shown = cli("logs", run_id)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_webhook_retries_then_delivers_slack_json_with_the_url_masked(cli, write_routine, http_capture):
    http_capture.script = [500]
    url = f"{http_capture.url}/hooks/{TOKEN}"
    doc = routine([{"when": ["failure"], "webhook": url, "retries": 2, "retry_delay": 0},
                   {"when": ["success"], "webhook": f"{http_capture.url}/never"}], fail=True)
    done = cli(str(write_routine(doc)), "--json")
    assert done.returncode == 1, done.stderr  # the task's failure, not the notifier's
    run_id = json.loads(done.stdout)["run_id"]
    assert [r["path"] for r in http_capture.requests] == [f"/hooks/{TOKEN}"] * 2  # failed once, then sent
    body = http_capture.bodies()[-1]
    assert body["event"] == "failure" and body["run_id"] == run_id and body["status"] == "failed"
    assert "alerted failed" in body["text"] and "work.fail RuntimeError: broke" in body["text"]
    assert body["failed_tasks"][0]["task"] == "fail"
    text = logs(cli, run_id)
    assert "notified webhook (attempt 2)" in text
    assert TOKEN not in text + done.stdout + done.stderr
    assert TOKEN not in cli("show", run_id, "--json").stdout


def test_a_webhook_that_times_out_is_recorded_and_the_run_still_succeeds(cli, write_routine, http_capture):
    http_capture.script = [3.0, 3.0]
    doc = routine([{"when": ["success"], "webhook": f"{http_capture.url}/{TOKEN}", "retries": 1,
                    "retry_delay": 0, "timeout": 0.5}])
    done = cli(str(write_routine(doc)), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert len(http_capture.requests) == 2
    text = logs(cli, result["run_id"])
    assert "notification to webhook failed after 2 attempt(s)" in text and "timed out" in text
    assert TOKEN not in text


def test_email_reaches_a_local_smtp_server(cli, write_routine):
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.mails: list = []

        async def handle_DATA(self, server, session, envelope):
            self.mails.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        doc = routine([{"when": ["failure"], "email": {"to": ["ops@example.test"], "from": "orch@example.test",
                                                       "host": "127.0.0.1", "port": port}}], fail=True)
        done = cli(str(write_routine(doc)), "--json")
    finally:
        controller.stop()
    assert done.returncode == 1
    assert len(inbox.mails) == 1
    mail = inbox.mails[0]
    assert mail.rcpt_tos == ["ops@example.test"] and mail.mail_from == "orch@example.test"
    parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
    assert parsed["Subject"] == "[orchestrator] alerted: failure"
    assert "work.fail RuntimeError: broke" in parsed.get_content()


def test_sns_publishes_to_the_topic_on_moto(cli, write_routine, moto_server, monkeypatch):
    import boto3

    use_moto(moto_server, monkeypatch)
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    done = cli(str(write_routine(routine([{"when": ["failure"], "sns": topic}], fail=True))), "--json")
    assert done.returncode == 1, done.stderr
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    assert len(got) == 1
    envelope = json.loads(got[0]["Body"])
    assert envelope["Subject"] == "orchestrator: alerted failure"
    payload = json.loads(envelope["Message"])
    assert payload["run_id"] == json.loads(done.stdout)["run_id"] and payload["event"] == "failure"
    assert "notified sns " + topic in logs(cli, payload["run_id"])


@pytest.mark.parametrize("notify, where, says", [
    ([{"when": ["failure"], "webhook": "http://127.0.0.1:9/x", "sns": "arn:aws:sns:us-east-1:1:t"}],
     "notify[0]", "exactly one target"),
    ([{"when": ["boom"], "webhook": "http://127.0.0.1:9/x"}], "notify[0].when[0]", "failure"),
    ([{"when": ["late"]}], "notify[0]", "exactly one target"),
], ids=["two-kinds", "unknown-event", "no-target"])
def test_bad_notify_blocks_are_refused_before_running(cli, write_routine, notify, where, says):
    done = cli("validate", str(write_routine(routine(notify))))
    assert done.returncode == 2
    assert where in done.stderr and says in done.stderr


def age_runs(home, routine_name: str, seconds: float, duration: float | None = None) -> None:
    """Move a routine's recorded runs back in time (as if they had run earlier)."""
    from orchestrator.runs.store import SQLiteStore

    store = SQLiteStore(home / "runs.sqlite")
    for run in store.list_runs(routine_name, limit=100):
        ended = run.started - seconds + (duration if duration is not None else (run.ended or run.started) - run.started)
        store.update_run(run.run_id, started=run.started - seconds, ended=ended)


def test_check_reports_stale_routines_and_alerts_once_per_breach(cli, write_routine, http_capture,
                                                                 orchestrator_home):
    path = write_routine(routine([{"when": ["late"], "webhook": f"{http_capture.url}/late"}],
                                 expect={"every": "1h", "within": "30m"}))
    assert cli(str(path)).returncode == 0
    fresh = cli("check", str(path))
    assert fresh.returncode == 0 and fresh.stdout.startswith("ok    alerted"), fresh.stdout
    age_runs(orchestrator_home, "alerted", 2 * 3600)
    late = cli("check", "--json")  # every routine the store knows
    assert late.returncode == 1
    found = json.loads(late.stdout)["routines"]
    assert [r["routine"] for r in found] == ["alerted"] and found[0]["breaches"][0]["kind"] == "stale"
    assert "expected every 1h (+30m grace)" in found[0]["breaches"][0]["text"]
    assert len(http_capture.requests) == 1 and http_capture.bodies()[0]["event"] == "late"
    again = cli("check", str(path))
    assert again.returncode == 1 and "LATE" in again.stdout
    assert len(http_capture.requests) == 1  # the same breach is announced once
    listed = cli("runs")
    assert "LATE alerted: last successful run" in listed.stdout and listed.stdout.count("  LATE") == 1
    assert cli(str(path)).returncode == 0  # a new success ends the breach
    assert cli("check", str(path)).returncode == 0 and "LATE" not in cli("runs").stdout
    age_runs(orchestrator_home, "alerted", 3 * 3600)
    assert cli("check", str(path)).returncode == 1
    assert len(http_capture.requests) == 2  # a new breach, a new alert


def test_check_reports_a_run_that_took_too_long(cli, write_routine, http_capture, orchestrator_home):
    path = write_routine(routine([{"when": ["late"], "webhook": http_capture.url}], name="slowpoke",
                                 expect={"max_duration": "30m"}))
    assert cli(str(path)).returncode == 0
    assert cli("check", str(path)).returncode == 0
    age_runs(orchestrator_home, "slowpoke", 3600, duration=3000)
    slow = cli("check", str(path), "--json")
    assert slow.returncode == 1
    breach = json.loads(slow.stdout)["routines"][0]["breaches"][0]
    assert breach["kind"] == "slow" and "took 50m; at most 30m is expected" in breach["text"]
    assert http_capture.bodies()[0]["breach"] == "slow"


def test_bad_expect_is_refused(cli, write_routine):
    done = cli("validate", str(write_routine(routine([], expect={"every": "daily"}))))
    assert done.returncode == 2 and "expect.every" in done.stderr
    done = cli("validate", str(write_routine(routine([], expect={"within": "1h"}))))
    assert done.returncode == 2 and "expect.within" in done.stderr and "give every too" in done.stderr
