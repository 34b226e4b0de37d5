"""A loopback reverse proxy that injects faults into AWS API traffic. Standard library only.

Point a client's endpoint (``AWS_ENDPOINT_URL``, ``--endpoint-url``) at ``proxy.url``; each request is
forwarded to the upstream server (moto) unless the policy picks a fault for it:

- an error answer: S3 XML (``503 SlowDown``) or awsJson (``__type`` + ``x-amzn-ErrorType``);
- a TCP reset before forwarding (the server never saw the request);
- a TCP reset *after* forwarding (the server applied the request, the reply is lost).

Policies: ``FirstN`` (the first matching requests get the listed faults, in order; what the tests
use), ``ByOperation`` (the same, per operation name) and ``Rate`` (each request independently, with
probability p, gets a fault drawn from a list; seeded). A fault may also be a made-up answer
(``Fault.answer``), for replies the upstream cannot give. The proxy counts requests and injected
faults by operation (``ListObjectsV2``, ``CopyObject``, ``DeleteObjects``, ``StartJobRun``, ...),
parsed from the method, path, query and headers; with ``record=True`` it also keeps every request
(operation, method, path, headers, body), so a test can check what a client really sent.

In a test::

    proxy = FaultProxy(endpoint, [(500, "InternalServerException", "boom")], match="GetJobRun")

As a process of its own (so its CPU is not the client's)::

    python bench/faultproxy.py --upstream http://127.0.0.1:5000 --rate 0.05 --seed 1 --stats stats.json

prints its URL on the first line of stdout and writes its counts to ``--stats`` when it ends (SIGTERM).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import http.client
import json
import random
import signal
import socket
import struct
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping

__all__ = ["Fault", "FirstN", "ByOperation", "Rate", "FaultProxy", "Request", "operation", "SLOWDOWN",
           "RESET", "RESET_AFTER", "KINDS"]


@dataclasses.dataclass(frozen=True)
class Fault:
    """What the proxy does instead of (or after) forwarding one request."""

    name: str
    status: int = 0  # 0: reset the connection instead of answering
    code: str = ""
    message: str = ""
    xml: bool = False  # S3-style XML error body, else awsJson
    after: bool = False  # forward first: the upstream applies the request, its reply is lost
    payload: bytes = b""  # answer with exactly this body (XML when ``xml``) instead of an error

    @classmethod
    def json_error(cls, status: int, code: str, message: str, after: bool = False) -> "Fault":
        return cls(f"{status} {code}", status, code, message, after=after)

    @classmethod
    def answer(cls, name: str, status: int, payload: bytes, after: bool = False) -> "Fault":
        """A made-up XML reply, e.g. a DeleteObjects result with per-key errors moto never gives."""
        return cls(name, status, xml=True, after=after, payload=payload)

    def body(self) -> tuple[str, bytes]:
        if self.payload:
            return "application/xml" if self.xml else "application/x-amz-json-1.1", self.payload
        if self.xml:
            text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                    f"<Message>{self.message}</Message><RequestId>faultproxy</RequestId></Error>")
            return "application/xml", text.encode()
        return "application/x-amz-json-1.1", json.dumps({"__type": self.code, "message": self.message}).encode()


SLOWDOWN = Fault("503 SlowDown", 503, "SlowDown", "Please reduce your request rate.", xml=True)
RESET = Fault("reset")
RESET_AFTER = Fault("reset after", after=True)
KINDS = {"slowdown": SLOWDOWN, "reset": RESET, "reset_after": RESET_AFTER}

Policy = Callable[[str], "Fault | None"]


class FirstN:
    """The first requests whose target contains ``match`` get ``faults``, one each, in order."""

    def __init__(self, faults: Iterable[Fault], match: str = "") -> None:
        self.faults, self.match = list(faults), match
        self.lock = threading.Lock()

    def __call__(self, target: str) -> Fault | None:
        with self.lock:
            if self.faults and self.match in target:
                return self.faults.pop(0)
        return None


class ByOperation:
    """The first requests of each named operation get its faults, one each, in order."""

    by_operation = True  # called with the operation name instead of the target

    def __init__(self, faults: Mapping[str, Iterable[Fault]]) -> None:
        self.faults = {op: list(items) for op, items in faults.items()}
        self.lock = threading.Lock()

    def __call__(self, operation: str) -> Fault | None:
        with self.lock:
            pending = self.faults.get(operation)
            return pending.pop(0) if pending else None


class Rate:
    """Each request gets a fault with probability ``p``, drawn from ``faults`` (seeded)."""

    def __init__(self, p: float, faults: Iterable[Fault] = tuple(KINDS.values()), seed: int = 1) -> None:
        self.p, self.kinds = p, list(faults)
        self.random = random.Random(seed)
        self.lock = threading.Lock()

    def __call__(self, target: str) -> Fault | None:
        with self.lock:
            if self.kinds and self.random.random() < self.p:
                return self.random.choice(self.kinds)
        return None


# ---------------------------------------------------------------------- naming requests

S3_POST = {"delete": "DeleteObjects", "uploads": "CreateMultipartUpload", "uploadId": "CompleteMultipartUpload"}


def _s3_object_op(method: str, query: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return "HeadObject" if method == "HEAD" else S3_POST.get(next(iter(query), ""), "POST object")


def _s3_bucket_op(method: str, query: Mapping[str, Any]) -> str:
    if method == "GET":
        if query.get("list-type") == ["2"]:
            return "ListObjectsV2"
        if "uploads" in query:
            return "ListMultipartUploads"
        return "ListObjectVersions" if "versions" in query else "ListObjects" if not query else f"GET ?{next(iter(query))}"
    if method == "POST":
        return S3_POST.get(next(iter(query), ""), "POST bucket")
    sub = next(iter(query), "")
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, method) + (
        f" ?{sub}" if sub else "")


def _service(headers: Mapping[str, str]) -> str:
    """The signing service from ``Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/...``."""
    credential = headers.get("Authorization", "").partition("Credential=")[2].split(",")[0].split("/")
    return credential[3] if len(credential) > 3 else ""


def operation(method: str, path: str, headers: Mapping[str, str]) -> str:
    """The API operation of one request: X-Amz-Target's action, or the S3 operation (path-style URLs)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    service = _service(headers)
    url = urllib.parse.urlsplit(path)
    if service not in ("", "s3"):
        return f"{service} {method} {url.path}"
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    parts = url.path.lstrip("/").split("/", 1)
    if len(parts) == 2 and parts[1]:
        return _s3_object_op(method, query, headers)
    return _s3_bucket_op(method, query)


# ---------------------------------------------------------------------- the proxy

@dataclasses.dataclass(frozen=True)
class Request:
    """One request as the proxy received it (kept when ``record=True``)."""

    operation: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
              "trailer", "upgrade"}


class FaultProxy:
    """A threaded loopback HTTP/1.1 reverse proxy in front of ``upstream`` (``http://host:port``).

    ``FaultProxy(upstream, faults, match, after)``: the first requests whose target (X-Amz-Target, or
    the path) contains ``match`` are answered with the awsJson errors ``faults`` = [(status, code,
    message), ...]; with ``after`` each is forwarded first. ``policy=`` replaces that with any policy.
    ``seen`` lists every request's target; ``counts`` and ``injected`` count them by operation;
    with ``record`` every request is kept whole in ``requests``.
    """

    def __init__(self, upstream: str, faults: Iterable[tuple[int, str, str]] = (), match: str = "",
                 after: bool = False, *, policy: Policy | None = None, port: int = 0,
                 record: bool = False) -> None:
        self.upstream = upstream.split("//", 1)[-1].rstrip("/")
        self.policy: Policy = policy or FirstN([Fault.json_error(*f, after=after) for f in faults], match)
        self.seen: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[tuple[str, str]] = collections.Counter()
        self.record = record
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def faults(self) -> list[Fault]:
        """The faults a ``FirstN`` policy has still to inject (empty for other policies)."""
        return self.policy.faults if isinstance(self.policy, FirstN) else []

    def decide(self, method: str, path: str, headers: Mapping[str, str],
               body: bytes = b"") -> Fault | None:
        target = headers.get("X-Amz-Target") or path
        op = operation(method, path, headers)
        by_operation = getattr(self.policy, "by_operation", False)
        fault = self.policy(op) if by_operation else self.policy(target)
        with self.lock:
            self.seen.append(target)
            if self.record:
                self.requests.append(Request(op, method, path, dict(headers.items()), body))
            self.counts[op] += 1
            if fault:
                self.injected[(op, fault.name)] += 1
        return fault

    def stats(self) -> dict[str, Any]:
        with self.lock:
            faults: dict[str, dict[str, int]] = {}
            for (op, name), n in sorted(self.injected.items()):
                faults.setdefault(name, {})[op] = n
            return {"requests": sum(self.counts.values()), "by_operation": dict(self.counts.most_common()),
                    "faults": sum(self.injected.values()), "faults_by_kind": faults}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_class(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"proxy": proxy})


class _Handler(BaseHTTPRequestHandler):
    """One client connection (kept alive), with one upstream connection reused for its requests."""

    protocol_version = "HTTP/1.1"
    proxy: FaultProxy
    upstream: http.client.HTTPConnection | None = None

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        body = self._read_body()
        fault = self.proxy.decide(self.command, self.path, self.headers, body)
        if fault and not fault.after:
            return self._inject(fault)
        try:
            reply = self._upstream(body)
        except OSError:
            return self._reset()
        if fault:
            return self._inject(fault)
        self._reply(*reply)

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host", "expect"}}
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(self.proxy.upstream, timeout=120)
            try:
                self.upstream.request(self.command, self.path, body, headers)
                response = self.upstream.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.upstream.close()
                self.upstream = None
                if attempt == 2:
                    raise OSError("upstream failed")
                continue
            if response.will_close:
                self.upstream.close()
                self.upstream = None
            return response.status, response.getheaders(), data
        raise AssertionError("unreachable")

    def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.log_request(status)
        self.send_response_only(status)  # the upstream's Server and Date headers, not ours as well
        length = str(len(data))
        for key, value in headers:
            if key.lower() == "content-length" and self.command == "HEAD":
                length = value
            elif key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        if status not in (204, 304) or self.command == "HEAD":
            self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _inject(self, fault: Fault) -> None:
        if not fault.status:
            return self._reset()
        content_type, payload = fault.body()
        self.send_response(fault.status)
        self.send_header("Content-Type", content_type)
        if not fault.xml:
            self.send_header("x-amzn-ErrorType", fault.code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the client sees a TCP RST, not a clean end of stream."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        if self.upstream is not None:
            self.upstream.close()


# ---------------------------------------------------------------------- command line

def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A fault-injecting reverse proxy (prints its URL, then serves).")
    parser.add_argument("--upstream", required=True, help="http://host:port of the real server")
    parser.add_argument("--rate", type=float, default=0.05, help="probability of a fault per request")
    parser.add_argument("--faults", default=",".join(KINDS), help=f"comma-separated kinds from {sorted(KINDS)}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stats", help="write request and fault counts here (JSON) on exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    policy = Rate(args.rate, [KINDS[k] for k in args.faults.split(",") if k], args.seed)
    proxy = FaultProxy(args.upstream, policy=policy, port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(proxy.url, flush=True)
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        proxy.close()
        if args.stats:
            with open(args.stats, "w") as out:
                json.dump(proxy.stats(), out, indent=2)


if __name__ == "__main__":
    main()
