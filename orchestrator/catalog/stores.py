"""Where catalog entries and artifacts are kept: a folder, an HTTP(S) API, or a plugin's store.

A store maps keys (``a/b/c``) to bytes. ``write_new`` never replaces an existing key: a published
version is immutable and a content-addressed artifact never changes. ``s3://`` stores come from the
``catalog_store`` plugin hook (the core imports no AWS library).

The HTTP(S) protocol, for a catalog served by any web server or small API:
``GET BASE/KEY`` (200 with the bytes, 404 if absent), ``PUT BASE/KEY`` with ``If-None-Match: *``
(201 created, 412 if the key exists), ``GET BASE/PREFIX/?list`` (a JSON list of the names directly
under the prefix, folders ending in ``/``). ``$ORCHESTRATOR_CATALOG_TOKEN`` is sent as a bearer
token.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError

TOKEN_ENV = "ORCHESTRATOR_CATALOG_TOKEN"
# Seconds per request; without it urlopen waits forever on a server that accepted the connection.
HTTP_TIMEOUT = 60.0


class CatalogStore(Protocol):
    url: str

    def read(self, key: str) -> bytes | None:
        """The key's bytes, or None if it does not exist."""

    def write_new(self, key: str, data: bytes) -> bool:
        """Create the key; False (and nothing written) if it already exists."""

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (``""`` or ending in ``/``); folders end in ``/``."""


class LocalStore:
    """A folder; a new key is linked into place: it appears whole or not at all, and never twice."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.removeprefix("file://")).expanduser().absolute()

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            # NotADirectoryError: a part of the key is a file here, which is the same answer as a
            # missing key.
            return None

    def write_new(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The temp file sits in the target's folder because os.link cannot cross file systems.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                # Flushed to disk before the link: after a crash the key must not exist with empty
                # or short content, since nothing ever rewrites an existing key.
                os.fsync(out.fileno())
            # os.link, not os.replace: replace would silently overwrite a version another publisher
            # created since we looked; link refuses atomically with FileExistsError instead.
            os.link(temporary, target)  # fails if the key exists: never overwrite
            return True
        except FileExistsError:
            return False
        finally:
            # The link (if made) keeps the data under the key, so the temp name is always removed.
            os.unlink(temporary)

    def children(self, prefix: str) -> list[str]:
        folder = self.path(prefix.rstrip("/")) if prefix else self.root
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            e.name + ("/" if e.is_dir() else "")
            for e in entries
            # A writer's temp file is not a key: hide it while a publish is in flight.
            if not e.name.startswith(".incoming-")
        )


class HttpStore:
    """An HTTP(S) catalog API (see the module docstring for the protocol)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base = url.rstrip("/") + "/"

    def request(
        self,
        method: str,
        key: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[int, bytes]:
        # Imported here: a routine run never talks to an HTTP catalog, and urllib costs start-up
        # time.
        import urllib.error
        import urllib.parse
        import urllib.request

        # quote() keeps '/' by default, so a key's folders stay folders on the server.
        url = self.base + urllib.parse.quote(key) + (f"?{query}" if query else "")
        all_headers = dict(headers or {})
        if os.environ.get(TOKEN_ENV):
            all_headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV]}"
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            # urlopen raises on any 4xx/5xx, yet 404 and 412 are answers of the protocol: hand the
            # status back and let each caller decide which codes are fine.
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            # An unreachable catalog is the user's to fix (URL, network, certificate): one line and
            # exit 2, not a traceback.
            raise UserError(f"catalog {self.url}: cannot reach {url}: {reason}") from None

    def read(self, key: str) -> bytes | None:
        status, body = self.request("GET", key)
        if status == 404:
            return None
        self.expect(status, (200,), "GET", key)
        return body

    def write_new(self, key: str, data: bytes) -> bool:
        # If-None-Match: * makes the server refuse (412) to replace an existing key, so two
        # publishers racing for the same version cannot overwrite each other.
        headers = {"If-None-Match": "*", "Content-Type": "application/octet-stream"}
        status, _ = self.request("PUT", key, data, headers)
        if status == 412:
            return False
        self.expect(status, (200, 201, 204), "PUT", key)
        return True

    def children(self, prefix: str) -> list[str]:
        status, body = self.request("GET", prefix, query="list")
        if status == 404:
            return []
        self.expect(status, (200,), "GET", prefix + "?list")
        names = json.loads(body)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f"catalog {self.url}: {prefix}?list must answer a JSON list of names")
        return sorted(names)

    def expect(self, status: int, ok: tuple[int, ...], method: str, key: str) -> None:
        if status not in ok:
            raise UserError(f"catalog {self.url}: {method} {key} answered HTTP {status}")


def open_store(url: str, registry: Any = None) -> CatalogStore:
    """The store for ``url``: a folder or ``file://``, ``http(s)://``, or what a plugin's
    ``catalog_store(url)`` hook returns (``s3://`` is the built-in S3 plugin's)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("", "file"):
        return LocalStore(url)
    if scheme in ("http", "https"):
        return HttpStore(url)
    # Anything else (s3://) comes from a plugin: the core imports no AWS library.
    from ..registry import Registry

    store: CatalogStore | None = (registry or Registry()).hook("catalog_store")(url=url)
    if store is None:
        raise UserError(
            f"catalog {url!r}: no installed plugin stores a catalog at {scheme}:// locations "
            "(built in: a folder, file://, s3://, http:// and https://)"
        )
    return store
