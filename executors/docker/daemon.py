"""The Docker daemon through the Docker SDK: a client, pulls, the doctor's probe.

The SDK is imported here, inside functions, only when a build, a pull, a cleanup, ``check()``
or a daemon that is not on a local socket needs it (``engine`` runs containers without it).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Literal

from orchestrator import NotRetryable

PullPolicy = Literal["never", "missing", "always"]


class ImageUnavailable(NotRetryable):
    """The image is not on the daemon and the pull policy forbids (or failed) fetching it."""


# The SDK's default pool is 10: past five containers at once, urllib3 would drop connections after
# each call and open new ones (and warn "connection pool is full").
POOL_SIZE = 64
"""Connections kept per daemon: each running container holds two (its log stream and its wait)."""
# Parallel steps ask for the client from their own threads on first use: the lock keeps two of them
# from making two clients for one daemon, one dropped with its connections open.
_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def connect(docker_host: str | None, **options: Any) -> Any:
    """A client for ``docker_host``, or the environment's (``DOCKER_HOST``,
    else the local socket)."""
    import docker

    if docker_host:
        return docker.DockerClient(base_url=docker_host, **options)
    return docker.from_env(**options)


def shared_client(docker_host: str | None) -> Any:
    """The process's one client for this daemon, made on first use.

    Every step has its own executor; a client each would ask the daemon for its API version again
    and open fresh connections. The shared one negotiates once and reuses its pool.
    """
    # Keyed on DOCKER_HOST's value at this call, not on "no docker_host": after the environment
    # changes (a test's daemon, an embedding program) the client talks to the daemon it now names.
    key = docker_host or "env:" + os.environ.get("DOCKER_HOST", "")
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = connect(docker_host, max_pool_size=POOL_SIZE)
        return client


def pull_image(client: Any, image: str, logger: logging.Logger | logging.LoggerAdapter) -> str:
    """Pull ``image``; its id. The run task calls this only when the daemon said it is missing
    (or the policy is ``always``): looking first would cost a call for every container."""
    from docker.errors import APIError

    logger.info("pulling image %s", image)
    try:
        return client.images.pull(*_repository_tag(image)).id
    except APIError as exc:
        raise ImageUnavailable(
            f"image {image} could not be pulled: {exc.explanation or exc}"
        ) from None


def missing_image(image: str) -> ImageUnavailable:
    return ImageUnavailable(f"image {image} is not on the Docker daemon and pull is 'never'; "
                            "build or load it first, or set pull: missing")


def _repository_tag(image: str) -> tuple[str, str | None]:
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(image)
    return repository, tag or ("latest" if "@" not in image else None)


def probe(docker_host: str | None, image: str | None, pull: PullPolicy) -> list[str]:
    """``check()``: the daemon answers, and the image is there or can be pulled."""
    try:
        import docker  # noqa: F401
    except ImportError:
        return ["the Docker SDK is not installed: pip install 'lake-orchestrator[docker]'"]
    where = docker_host or "DOCKER_HOST / the local socket"
    try:
        client = connect(docker_host)
        client.version()
    except Exception as exc:
        return [f"Docker daemon at {where} does not answer ({type(exc).__name__}: {exc}); "
                "start dockerd or set docker_host"]
    try:
        return _image_problems(client, image, pull)
    finally:
        client.close()


def _image_problems(client: Any, image: str | None, pull: PullPolicy) -> list[str]:
    from docker.errors import ImageNotFound

    if not image:
        return []
    try:
        client.images.get(image)
        return []
    except ImageNotFound:
        pass
    if pull == "never":
        return [f"image {image} is not on the daemon and pull is 'never'"]
    try:
        # Asks the registry for the manifest only: the doctor says whether a pull would work
        # without downloading anything (no side effect, and no minutes spent on a large image).
        client.images.get_registry_data(image)
        return []
    except Exception as exc:
        return [f"image {image} is not on the daemon and cannot be pulled: {exc}"]


def daemon_version(client: Any) -> str:
    return str(client.version().get("Version", "?"))
