"""The ``metadata`` executor as a plugin. Light: the executor module imports no database driver,
no pyarrow and no DuckDB; they load when a task needs them."""
from __future__ import annotations

from orchestrator import hookimpl


@hookimpl
def register_executors() -> list[type]:
    from .executor import MetadataExecutor

    return [MetadataExecutor]
