"""The ``docker`` executor plugin: containers on a Docker daemon (the SDK loads
only when a task runs)."""

from __future__ import annotations

from orchestrator import hookimpl


@hookimpl
def register_executors() -> list[type]:
    from .executor import DockerExecutor

    return [DockerExecutor]
