"""One task's container: named by its token so it is created at most once, then waited for or
stopped.

The name ``orchestrator-<token>`` makes creation idempotent on the daemon itself: a second create
with the same token (a retry after a lost reply, a resume after a crash) is refused with a
conflict and the existing container is used. Labels say which routine, run, step and task a
container belongs to, for finding and cleaning up.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .engine import Engine

LABEL_PREFIX = "orchestrator."
NAME_PREFIX = "orchestrator-"
# cleanup tells a kept failure from a crashed run's container by this prefix alone.
KEPT_PREFIX = "orchestrator-kept-"
# How often the task thread looks for a cancel while the wait call blocks: the bound on how late a
# cancel is noticed (the benchmark's cancel target is under a second).
WAIT_TICK = 0.05


def container_name(token: str) -> str:
    return NAME_PREFIX + token


def labels(routine: str, run_id: str, step: str, task: str, token: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}{key}": value
        for key, value in (
            ("routine", routine),
            ("run", run_id),
            ("step", step),
            ("task", task),
            ("token", token),
        )
    }


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a container ended: its exit code, whether the kernel killed it for
    memory, Docker's error."""

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


@dataclasses.dataclass(frozen=True)
class Found:
    """A container as the executor needs it. Plain data, not the SDK's model, which costs an
    inspect call to build and another to refresh."""

    id: str
    name: str
    status: str
    token: str | None


def find(engine: Engine, ref: str) -> Found | None:
    """The container with this id or name, or None."""
    from .engine import NotFound

    try:
        info = engine.inspect(ref)
    except NotFound:
        return None
    token = (info["Config"].get("Labels") or {}).get(LABEL_PREFIX + "token")
    return Found(info["Id"], info["Name"].lstrip("/"), info["State"]["Status"], token)


def create(engine: Engine, name: str, body: dict[str, Any]) -> tuple[Found, bool]:
    """``(container, created)``: a new container, or the one already holding ``name``.

    ``body`` is the Engine API's create body; a missing image raises ``NoSuchImage``.
    """
    from .engine import Conflict

    try:
        token = (body.get("Labels") or {}).get(LABEL_PREFIX + "token")
        return Found(engine.create(name, body), name, "created", token), True
    # The name is taken: an attempt of this call whose answer was lost already created it.
    except Conflict:
        pass
    existing = find(engine, name)
    # Removed between the conflict and the lookup (by hand, by another process): none to attach to.
    if existing is None:
        raise RuntimeError(
            f"container {name}: the daemon reported a name conflict but has no such container"
        )
    return existing, False


def wait(engine: Engine, container_id: str, stop_requested: Callable[[], bool]) -> Exit | None:
    """Block until the container exits (its :class:`Exit`) or a stop is requested (None)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def waiter() -> None:
        try:
            box["result"] = engine.wait(container_id)
        except BaseException as exc:  # re-raised in the task thread
            box["error"] = exc
        finally:
            done.set()

    # The wait call has no timeout and cannot be interrupted, so it blocks in a thread of its own; a
    # daemon thread, so one still blocked after a cancel never holds the process open.
    threading.Thread(target=waiter, name=f"wait-{container_id[:12]}", daemon=True).start()
    while not done.wait(WAIT_TICK):
        if stop_requested():
            return None
    if "error" in box:
        raise box["error"]
    return exit_of(engine, container_id, box["result"])


def exit_of(engine: Engine, container_id: str, answer: dict[str, Any]) -> Exit:
    """The exit ``wait`` reported; only a failure costs an inspect (was it killed for memory?)."""
    code = answer.get("StatusCode")
    error = (answer.get("Error") or {}).get("Message") or None
    if code == 0:
        return Exit(0, False, error)
    state = engine.inspect(container_id)["State"]
    code = state.get("ExitCode") if code is None else code
    error = error or state.get("Error") or None
    # -1 when neither wait nor inspect knows the code: still a failure, never taken for a success.
    return Exit(int(code if code is not None else -1), bool(state.get("OOMKilled")), error)


def stop(engine: Engine, container_id: str, grace: float) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL (Docker's own stop); a gone container is fine."""
    from .engine import NotFound

    try:
        engine.stop(container_id, max(0, int(round(grace))))
    except NotFound:
        pass


def remove(engine: Engine, container_id: str) -> None:
    """Remove the container and its anonymous volumes; a gone container is fine."""
    from .engine import NotFound

    try:
        engine.remove(container_id)
    except NotFound:
        pass


def keep(engine: Engine, container_id: str, name: str) -> str:
    """Rename a failed container kept for debugging: its token is free again,
    and cleanup knows it."""
    kept = KEPT_PREFIX + name.removeprefix(NAME_PREFIX)
    engine.rename(container_id, kept)
    return kept
