"""The Docker Engine API calls a container's lifecycle needs, in the Engine API's own JSON.

A task running a container makes five calls (create, start, logs, wait, remove). On the local
daemon's unix socket they go through a minimal HTTP client (``wire``): importing the Docker
SDK (requests, urllib3) takes longer than a short container runs, 0.1 s on an idle machine and
half a second under load. Any other address (``tcp://`` with or without TLS, ``ssh://``) goes
through the SDK, which knows those transports. Both speak the same :class:`Engine` protocol and
raise the same errors. Building, pulling and cleaning up use the SDK directly.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from . import wire

DEFAULT_SOCKET = "/var/run/docker.sock"
CALL_TIMEOUT = 60.0
"""Seconds a short call may take (the SDK's default); ``wait`` and followed logs have none."""


class EngineError(Exception):
    """The daemon refused a call: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class NotFound(EngineError):
    """No such container (or network, or other object the call names)."""


class NoSuchImage(NotFound):
    """``create`` was given an image the daemon does not have."""


class Conflict(EngineError):
    """The name is taken (``create``) or the container is busy."""


def error_for(status: int, message: str, creating: bool = False) -> EngineError:
    """A 404 from create is a missing image only when it says so (a missing network is not)."""
    if status == 404:
        # The daemon answers 404 to create both for a missing image and for a missing network; only
        # the first may start a pull, or a typo in `network` would pull the image and fail again.
        missing_image = creating and "no such image" in message.lower()
        return NoSuchImage(status, message) if missing_image else NotFound(status, message)
    # 409 is what makes creation idempotent: a second create under a taken name lands here, and
    # container.create takes the existing container instead.
    return Conflict(status, message) if status == 409 else EngineError(status, message)


class Stream(Protocol):
    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


class Engine(Protocol):
    """What the executor asks of a daemon; ids are container ids or names."""

    def create(self, name: str, config: dict[str, Any]) -> str: ...

    def start(self, ref: str) -> None: ...

    def wait(self, ref: str) -> dict[str, Any]: ...

    def inspect(self, ref: str) -> dict[str, Any]: ...

    def logs(self, ref: str, params: dict[str, Any]) -> Stream: ...

    def stop(self, ref: str, seconds: int) -> None: ...

    def remove(self, ref: str) -> None: ...

    def rename(self, ref: str, name: str) -> None: ...


class SocketEngine:
    """The Engine API over a unix socket: a connection per call (a unix socket connects in
    microseconds), the API version asked once (``/_ping``, as the CLI does)."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Asked once per engine, and engines are one per daemon per process: the lock keeps
        # parallel steps from each pinging on their first call.
        self._version: str | None = None
        self._lock = threading.Lock()

    def create(self, name: str, config: dict[str, Any]) -> str:
        answer = self._call("POST", "/containers/create", {"name": name}, config, creating=True)
        return str(answer["Id"])

    def start(self, ref: str) -> None:
        self._call("POST", f"/containers/{ref}/start")

    def wait(self, ref: str) -> dict[str, Any]:
        # No timeout: the daemon answers wait only when the container exits, which may be hours
        # away; cancel does not interrupt this call but stops the container, which ends it.
        return dict(self._call("POST", f"/containers/{ref}/wait", timeout=None))

    def inspect(self, ref: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/containers/{ref}/json"))

    def logs(self, ref: str, params: dict[str, Any]) -> Stream:
        # A followed stream is silent while the program is: a read timeout would cut a quiet
        # container.
        return self._call("GET", f"/containers/{ref}/logs", params, timeout=None, stream=True)

    def stop(self, ref: str, seconds: int) -> None:
        # The daemon answers stop once the container is gone, up to the grace period after SIGTERM:
        # this call's timeout must outlast the grace, or a long grace would read as a failed stop.
        self._call("POST", f"/containers/{ref}/stop", {"t": seconds},
                   timeout=CALL_TIMEOUT + seconds)

    def remove(self, ref: str) -> None:
        # v: anonymous volumes go with the container rather than pile up on the daemon; force: the
        # cancel path removes a container whose stop may have failed, which a plain remove refuses.
        self._call("DELETE", f"/containers/{ref}", {"v": 1, "force": 1})

    def rename(self, ref: str, name: str) -> None:
        self._call("POST", f"/containers/{ref}/rename", {"name": name})

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                response = wire.request(self.path, "HEAD", "/_ping", timeout=CALL_TIMEOUT)
                response.close()
                self._version = response.header("API-Version") or "1.41"
            return self._version

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None,
              body: Any = None, timeout: float | None = CALL_TIMEOUT, stream: bool = False,
              creating: bool = False) -> Any:
        query = f"?{urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        response = wire.request(
            self.path, method, f"/v{self.version()}{path}{query}", data, timeout
        )
        if response.status >= 400:
            text = response.read().decode("utf-8", "replace")
            response.close()
            try:
                # The daemon's errors are {"message": ...}; a proxy in front of it may answer text
                # or HTML, which is shown as it is.
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            raise error_for(response.status, message.strip(), creating)
        if stream:
            return response
        answer = response.read()
        response.close()
        # start, stop, remove and rename answer 204 with no body.
        return json.loads(answer) if answer.strip() else {}


class SdkEngine:
    """The same calls through the Docker SDK's low-level client, for tcp, TLS and ssh daemons."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def create(self, name: str, config: dict[str, Any]) -> str:
        with _translated(creating=True):
            return str(self.api.create_container_from_config(config, name)["Id"])

    def start(self, ref: str) -> None:
        with _translated():
            self.api.start(ref)

    def wait(self, ref: str) -> dict[str, Any]:
        with _translated():
            return dict(self.api.wait(ref))

    def inspect(self, ref: str) -> dict[str, Any]:
        with _translated():
            return dict(self.api.inspect_container(ref))

    def logs(self, ref: str, params: dict[str, Any]) -> Stream:
        # Not api.logs(): it inspects the container first (is it a TTY?) and splits the frames
        # itself; LogPump reads the raw multiplexed stream, the same bytes SocketEngine returns.
        url = f"{self.api.base_url}/v{self.api.api_version}/containers/{ref}/logs"
        response = self.api.get(url, params=params, stream=True, timeout=None)
        if response.status_code >= 400:
            raise error_for(response.status_code, response.text)
        return _SdkStream(response)

    def stop(self, ref: str, seconds: int) -> None:
        with _translated():
            self.api.stop(ref, timeout=seconds)

    def remove(self, ref: str) -> None:
        with _translated():
            self.api.remove_container(ref, v=True, force=True)

    def rename(self, ref: str, name: str) -> None:
        with _translated():
            self.api.rename(ref, name)


class _SdkStream:
    def __init__(self, response: Any) -> None:
        self.response = response

    def read(self, size: int) -> bytes:
        return bytes(self.response.raw.read(size))

    def close(self) -> None:
        self.response.close()


class _translated:
    """The SDK's errors as this module's."""

    def __init__(self, creating: bool = False) -> None:
        self.creating = creating

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, traceback: Any) -> Literal[False]:
        from docker.errors import APIError

        if isinstance(exc, APIError) and exc.status_code:
            message = str(exc.explanation or exc)
            raise error_for(exc.status_code, message, self.creating) from exc
        return False


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(docker_host: str | None) -> Engine:
    """The process's engine for this daemon: the socket engine for a unix socket, else the SDK's."""
    from .daemon import shared_client

    address = docker_host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    with _engines_lock:
        engine = _engines.get(address)
        if engine is None:
            if address.startswith("unix://"):
                engine = SocketEngine(address.removeprefix("unix://"))
            else:
                engine = SdkEngine(shared_client(docker_host).api)
            _engines[address] = engine
        return engine
