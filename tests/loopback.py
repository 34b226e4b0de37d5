"""A real HTTP server on 127.0.0.1 that records what it is sent and answers as a test scripts it:
a status per request, or a delay longer than the client's timeout."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest


class Capture:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int | float] = []  # int: answer with that status; float: sleep that long, then 200
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[Any]:
        return [r["json"] for r in self.requests]

    def _handler(self) -> type:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                capture.requests.append({"path": self.path, "body": body, "json": parsed,
                                         "headers": dict(self.headers)})
                action = capture.script.pop(0) if capture.script else 200
                if isinstance(action, float):
                    time.sleep(action)
                    action = 200
                try:
                    self.send_response(action)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (its timeout): what the test wanted
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def http_capture() -> Iterator[Capture]:
    capture = Capture()
    capture.thread.start()
    yield capture
    capture.server.shutdown()
    capture.server.server_close()
