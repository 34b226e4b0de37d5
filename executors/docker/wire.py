"""HTTP/1.1 over a unix socket: exactly what the Docker Engine API's answers need, nothing more.

``http.client`` would do, but it imports ``ssl`` and the email parser (20 ms, several times that
on a loaded machine) for a daemon on a local socket. A request here is one connection, closed
by the daemon after its answer; an answer's body has a length, is chunked (streams: logs, wait)
or runs to the end of the connection.
"""
from __future__ import annotations

import socket

# Longest status, header or chunk-size line read: an answer that is not HTTP (a wrong socket)
# cannot make readline buffer without end.
LINE_LIMIT = 65536
# Statuses that never carry a body whatever their headers say (RFC 9112, 6.3), like 1xx and HEAD.
NO_BODY = (204, 304)


class DaemonUnreachable(ConnectionError):
    """Nothing listens on the daemon's socket."""


class ProtocolError(ConnectionError):
    """The answer is not HTTP."""


def request(path: str, method: str, target: str, body: bytes | None = None,
            timeout: float | None = None) -> Response:
    """Send one request on a fresh connection to the socket at ``path``; its answer's head read."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonUnreachable(f"Docker daemon at unix://{path} does not answer ({exc}); "
                                "start dockerd or set docker_host") from None
    # HTTP/1.1 requires a Host, any name on a unix socket. "Connection: close" lets an answer
    # without a length end with the connection, and leaves no keep-alive state to manage.
    head = f"{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
    if body is not None or method in ("POST", "PUT"):
        head += f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n"
    try:
        sock.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
        return Response(sock, method)
    # BaseException: a Ctrl-C while sending or awaiting the head closes the socket too.
    except BaseException:
        sock.close()
        raise


class Response:
    """An answer: ``status``, ``header()``, and ``read(size)``, which returns ``size`` bytes
    unless the body ends first. ``close()`` from another thread ends a blocked ``read``."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock, self.file = sock, sock.makefile("rb")
        parts = self.file.readline(LINE_LIMIT).split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP answer: {b' '.join(parts)[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline(LINE_LIMIT)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        # The body's length: none for HEAD, 1xx, 204 and 304; else Content-Length; else chunked;
        # else (None, not chunked) it runs until the daemon closes the connection.
        self._chunked = "chunked" in self.header("transfer-encoding").lower()
        self._chunk_left, self._ended = 0, False
        no_body = method == "HEAD" or self.status in NO_BODY or self.status < 200
        length = self.header("content-length")
        self._left: int | None = 0 if no_body else int(length) if length.isdigit() else None

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(LINE_LIMIT), b""))
        # size bytes unless the body ends, across chunks: logs.frames reads an 8-byte header, then
        # exactly its payload, and the daemon's chunks do not follow frame boundaries.
        if self._chunked and self._left is None:
            return self._read_chunked(size)
        if self._left is None:
            return self.file.read(size)
        data = self.file.read(min(size, self._left))
        self._left -= len(data)
        return data

    def _read_chunked(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size and not self._ended:
            if self._chunk_left == 0 and not self._next_chunk():
                break
            data = self.file.read(min(size - len(out), self._chunk_left))
            if not data:
                self._ended = True
                break
            out += data
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.file.readline(LINE_LIMIT)  # the line end after each chunk
        return bytes(out)

    def _next_chunk(self) -> bool:
        line = self.file.readline(LINE_LIMIT)
        # A chunk-size line is hex and may carry ";extensions"; an empty line (the connection
        # dropped mid-body) counts as the last chunk rather than an error.
        size = int(line.split(b";")[0].strip() or b"0", 16) if line.strip() else 0
        if size == 0:
            self._ended = True
            while self.file.readline(LINE_LIMIT) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return False
        self._chunk_left = size
        return True

    def close(self) -> None:
        try:
            # shutdown before close: on Linux, closing a socket another thread is blocked reading
            # does not wake that thread; shutdown does, and its read returns the end of the stream.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # Python keeps the descriptor open while a makefile() reader refers to it: close both.
        self.file.close()
        self.sock.close()
