"""publish against a real HTTP server on loopback, with failures injected."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from metadata_fixtures import context, executor
from test_metadata_sql import sqlite_source

TOKEN = "sekrit-token-123"


class Api:
    """Replies scripted per request: ("ok"), ("status", code, headers), ("slow", seconds)."""

    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.received: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                step = server.script.pop(0) if server.script else ("ok",)
                server.received.append({"headers": dict(self.headers), "body": body, "reply": step[0]})
                if step[0] == "slow":
                    time.sleep(step[1])
                code, headers = (step[1], step[2] if len(step) > 2 else {}) if step[0] == "status" else (200, {})
                try:
                    self.send_response(code)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metadata"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict]:
        return [r for r in self.received if r["reply"] == "ok"]


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def publishing(tmp_path, api: Api, **params):
    return executor(source=sqlite_source(tmp_path), target=f"sqlite:///{tmp_path}/m.db", api_url=api.url,
                    api_token=TOKEN, api_timeout=1.0, mode="exact", **params)


def test_retries_500_and_429_with_retry_after_and_a_slow_reply_with_one_key(tmp_path, api, caplog):
    api.script = [("status", 500), ("status", 429, {"Retry-After": "1"}), ("slow", 2.5)]
    meta = publishing(tmp_path, api)
    ctx = context(tmp_path, run_id="run-p")
    meta.extract(ctx)
    meta.profile(ctx)
    started = time.monotonic()
    metrics = meta.publish(ctx)
    waited = time.monotonic() - started
    meta.close()
    assert [r["reply"] for r in api.received] == ["status", "status", "slow", "ok"]
    keys = {r["headers"]["Idempotency-Key"] for r in api.received}
    assert keys == {"run-p/meta/publish:1/1"}
    assert {r["headers"]["Authorization"] for r in api.received} == {f"Bearer {TOKEN}"}
    assert waited >= 1.0  # Retry-After was honoured
    body = api.accepted()[0]["body"]
    assert body["run_id"] == "run-p" and len(body["columns"]) == 5 and body["page"] == body["pages"] == 1
    assert metrics.execution_metadata["attempts"] == 4
    assert "HTTP 429" in caplog.text and TOKEN not in caplog.text
    assert TOKEN.encode() not in (tmp_path / "m.db").read_bytes()


def test_large_payloads_are_sent_in_pages_each_with_its_key(tmp_path, api):
    meta = publishing(tmp_path, api, page_bytes=600)
    ctx = context(tmp_path, run_id="run-q")
    meta.extract(ctx)
    meta.profile(ctx)
    meta.publish(ctx)
    meta.close()
    pages = api.accepted()
    assert len(pages) > 2
    assert [p["headers"]["Idempotency-Key"] for p in pages] == [f"run-q/meta/publish:{i}/{len(pages)}"
                                                                for i in range(1, len(pages) + 1)]
    assert sum(len(p["body"].get("columns", [])) for p in pages) == 5


def test_a_client_error_is_not_retried_and_fails_once(tmp_path, api):
    from executors.metadata.publish import PublishError

    api.script = [("status", 401)]
    meta = publishing(tmp_path, api)
    ctx = context(tmp_path)
    meta.extract(ctx)
    with pytest.raises(PublishError, match="refused: HTTP 401") as caught:
        meta.publish(ctx)
    meta.close()
    assert caught.value.retryable is False and len(api.received) == 1


def test_a_resumed_publish_reuses_the_first_runs_key(tmp_path, api):
    meta = publishing(tmp_path, api)
    ctx = context(tmp_path, run_id="run-2")
    ctx.resumed_from = "run-1"
    meta.publish(ctx)
    meta.close()
    assert api.accepted()[0]["headers"]["Idempotency-Key"].startswith("run-1/meta/publish:")


def test_token_stays_out_of_the_run_store_and_output(cli, write_routine, tmp_path, api, orchestrator_home):
    api.script = [("status", 503)]
    routine = write_routine({"routine_name": "m", "executors": [{"name": "meta", "executor": "metadata", "params": {
        "source": sqlite_source(tmp_path), "target": f"sqlite:///{tmp_path}/m.db", "api_url": api.url,
        "api_token": "${env.PLATFORM_TOKEN}"}, "tasks": ["extract", "publish"]}]})
    proc = cli("run", str(routine), "--json", env={"PLATFORM_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    for path in orchestrator_home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert api.accepted()[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_backoff_starts_again_for_each_page(api):
    from executors.metadata.publish import Publisher

    pauses: list[float] = []
    publisher = Publisher(api.url, base_delay=0.01, max_delay=60, page_bytes=300,
                          wait=lambda seconds: pauses.append(seconds) or False)
    api.script = [("status", 500)] * 3 + [("ok",), ("status", 503), ("ok",)]
    pages = publisher.publish({"columns": [{"name": f"c{i}", "note": "x" * 100} for i in range(4)]}, "k")
    assert pages >= 2 and publisher.attempts == 6
    for number, pause in enumerate(pauses[:3]):
        ceiling = 0.01 * 2 ** number
        assert ceiling / 2 <= pause <= ceiling, (number, pauses)
    assert 0.005 <= pauses[3] <= 0.01, "the second page's first retry waits the first delay"
