"""A real Docker daemon for the docker executor's tests, and a busybox image built locally.

No registry is reachable: the image is a tarball of a folder holding the static busybox binary
and its applet links, imported with ``docker import``. When no daemon answers, ``.ci/docker-up``
is tried once (it starts dockerd as root); only if that fails are the tests skipped, saying why.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).parent.parent
BUSYBOX = Path("/bin/busybox")
IMAGE = "orchestrator-test/busybox:1"
APPLETS = ("sh", "echo", "cat", "sleep", "true", "false", "ls", "touch", "test", "[", "date", "head", "dd", "rm")


def _daemon() -> tuple[Any, str | None]:
    try:
        import docker
    except ImportError:
        return None, "the Docker SDK is not installed (pip install -e '.[docker]')"
    for attempt in range(2):
        try:
            client = docker.from_env()
            client.version()
            return client, None
        except Exception as exc:
            reason = f"no Docker daemon answers ({exc})"
            if attempt == 0:
                subprocess.run([str(REPO / ".ci" / "docker-up")], capture_output=True, timeout=300)
    return None, reason + "; .ci/docker-up could not start one (it needs root and Debian's docker.io)"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client, reason = _daemon()
    if client is None:
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """``orchestrator-test/busybox:1``: static busybox as /bin/busybox with applet links, nothing else."""
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox is missing: install busybox-static (.ci/docker-up does)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "work"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    repository, tag = IMAGE.split(":")
    docker_client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
    return IMAGE


@pytest.fixture
def routine_name() -> Iterator[str]:
    """A routine name of its own per test: containers are found (and afterwards removed) by its label."""
    name = f"dk_{uuid.uuid4().hex[:10]}"
    yield name
    client, _ = _daemon()
    if client is not None:
        for found in containers(client, name):
            found.remove(force=True)
        client.close()


def containers(client: Any, routine: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"orchestrator.routine={routine}"})


def created_events(client: Any, routine: str, since: float) -> list[dict[str, Any]]:
    """Every container the daemon created for ``routine`` since ``since`` (its event log, not its state)."""
    until = time.time() + 1
    events = client.events(since=int(since) - 1, until=int(until), decode=True,
                           filters={"type": "container", "event": "create", "label": f"orchestrator.routine={routine}"})
    return list(events)


def docker_routine(folder: Path, name: str, tasks: list[Any], image: str = IMAGE, **params: Any) -> Path:
    doc = {"routine_name": name, "executors": [
        {"name": "box", "executor": "docker", "params": {"image": image, "pull": "never", **params}, "tasks": tasks}]}
    path = folder / "routine.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def run_logs(run_id: str) -> list[str]:
    from orchestrator.runs.store import open_store

    return [record.message for record in open_store().logs(run_id)]


def wait_until(condition: Any, seconds: float = 60, what: str = "condition") -> Any:
    """Poll ``condition`` until truthy; a bound that only fails a hung test, not a timing check."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {seconds}s")
