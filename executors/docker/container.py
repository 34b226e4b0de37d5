"""One task's container: named by its token so it is created at most once, then waited for or stopped.

The name ``orchestrator-<token>`` makes creation idempotent on the daemon itself: a second create
with the same token (a retry after a lost reply, a resume after a crash) is refused with a
conflict and the existing container is used. Labels say which routine, run, step and task a
container belongs to, for finding and cleaning up.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

LABEL_PREFIX = "orchestrator."
NAME_PREFIX = "orchestrator-"
KEPT_PREFIX = "orchestrator-kept-"
WAIT_TICK = 0.05


def container_name(token: str) -> str:
    return NAME_PREFIX + token


def labels(routine: str, run_id: str, step: str, task: str, token: str) -> dict[str, str]:
    return {f"{LABEL_PREFIX}{key}": value for key, value in
            (("routine", routine), ("run", run_id), ("step", step), ("task", task), ("token", token))}


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a container ended: its exit code, whether the kernel killed it for memory, Docker's error."""

    code: int
    oom_killed: bool
    error: str | None = None


class ContainerFailed(RuntimeError):
    """A container exited non-zero: the message carries the code, OOM and the last stderr lines."""

    def __init__(self, name: str, image: str, end: Exit, stderr_tail: list[str]) -> None:
        self.exit_code, self.oom_killed, self.stderr_tail = end.code, end.oom_killed, stderr_tail
        text = f"container {name} ({image}) exited with code {end.code}"
        if end.oom_killed:
            text += " (killed for memory: raise resources.memory)"
        if end.error:
            text += f": {end.error}"
        if stderr_tail:
            text += "; last stderr lines:\n" + "\n".join(f"  {line}" for line in stderr_tail)
        super().__init__(text)


def find(client: Any, ref: str) -> Any | None:
    """The container with this id or name, or None."""
    from docker.errors import NotFound

    try:
        return client.containers.get(ref)
    except NotFound:
        return None


def create(client: Any, name: str, image: str, options: dict[str, Any]) -> tuple[Any, bool]:
    """``(container, created)``: a new container, or the one already holding ``name``."""
    from docker.errors import APIError

    try:
        return client.containers.create(image, name=name, detach=True, **options), True
    except APIError as exc:
        if exc.status_code != 409:
            raise
    existing = find(client, name)
    if existing is None:
        raise RuntimeError(f"container {name}: the daemon reported a name conflict but has no such container")
    return existing, False


def wait(api: Any, container_id: str, stop_requested: Callable[[], bool]) -> Exit | None:
    """Block until the container exits (its :class:`Exit`) or a stop is requested (None)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def waiter() -> None:
        try:
            box["result"] = api.wait(container_id)
        except BaseException as exc:  # re-raised in the task thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=waiter, name=f"wait-{container_id[:12]}", daemon=True).start()
    while not done.wait(WAIT_TICK):
        if stop_requested():
            return None
    if "error" in box:
        raise box["error"]
    return exit_of(api, container_id, box["result"])


def exit_of(api: Any, container_id: str, result: dict[str, Any] | None = None) -> Exit:
    state = api.inspect_container(container_id)["State"]
    code = (result or {}).get("StatusCode", state.get("ExitCode"))
    error = ((result or {}).get("Error") or {}).get("Message") or state.get("Error") or None
    return Exit(int(code if code is not None else -1), bool(state.get("OOMKilled")), error)


def stop(api: Any, container_id: str, grace: float) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL (Docker's own stop); a gone container is fine."""
    from docker.errors import NotFound

    try:
        api.stop(container_id, timeout=max(0, int(round(grace))))
    except NotFound:
        pass


def remove(api: Any, container_id: str) -> None:
    """Remove the container and its anonymous volumes; a gone container is fine."""
    from docker.errors import NotFound

    try:
        api.remove_container(container_id, v=True, force=True)
    except NotFound:
        pass


def keep(api: Any, container_id: str, name: str) -> str:
    """Rename a failed container kept for debugging: its token is free again, and cleanup knows it."""
    kept = KEPT_PREFIX + name.removeprefix(NAME_PREFIX)
    api.rename(container_id, kept)
    return kept
