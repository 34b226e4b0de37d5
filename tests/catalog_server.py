"""A real HTTP(S) catalog server on loopback for the tests: the protocol of
orchestrator.catalog.stores
(GET a key, PUT with If-None-Match: * that never overwrites, GET PREFIX/?list), backed by a folder.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import contextlib


class Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    token: str | None = None
    requests: list[tuple[str, str]]

    def log_message(self, *args: Any) -> None:
        pass

    def target(self) -> tuple[Path, str]:
        parts = urllib.parse.urlsplit(self.path)
        key = urllib.parse.unquote(parts.path).lstrip("/")
        assert ".." not in key.split("/")
        return self.root / key, parts.query

    def authorised(self) -> bool:
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return False
        return True

    def reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path))
        if not self.authorised():
            return
        path, query = self.target()
        if query == "list":
            if not path.is_dir():
                return self.reply(404)
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
            return self.reply(200, json.dumps(names).encode())
        if not path.is_file():
            return self.reply(404)
        self.reply(200, path.read_bytes())

    def do_PUT(self) -> None:
        self.requests.append(("PUT", self.path))
        if not self.authorised():
            return
        path, _ = self.target()
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if path.exists() and self.headers.get("If-None-Match") == "*":
            return self.reply(412)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.reply(201)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made with cryptography (a moto dependency)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextlib.contextmanager
def catalog_server(
    root: Path, tls: tuple[Path, Path] | None = None, token: str | None = None
) -> Iterator[Any]:
    """Serve ``root`` on 127.0.0.1 (a free port); yields the server (``.url``, ``.requests``)."""
    root.mkdir(parents=True, exist_ok=True)
    handler = type("BoundHandler", (Handler,), {"root": root, "token": token, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, tls))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/catalog/"
    server.requests = handler.requests
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
