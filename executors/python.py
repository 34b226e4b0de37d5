"""A tiny generic executor: call a function from a Python file next to the routine."""
from __future__ import annotations

from typing import Annotated, Any

from orchestrator.executor import Executor, Location, TaskMetrics, task
from orchestrator.hookspecs import hookimpl


class PythonExecutor(Executor):
    """Glue code that needs no executor of its own (preparing test data, small fixes)."""

    name = "python"

    def __init__(self, path: Annotated[Location, "A .py file; relative to the routine's folder"]) -> None:
        self.path = str(path)

    @task
    def call(self, function: Annotated[str, "Name of a function in the file"],
             kwargs: Annotated[dict | None, "Keyword arguments for the function"] = None) -> TaskMetrics | None:
        """Import the file afresh and call ``function(**kwargs)``; a returned TaskMetrics is reported."""
        from ._loader import function_of, load_file

        result: Any = function_of(load_file(self.path), function)(**(kwargs or {}))
        return result if isinstance(result, TaskMetrics) else None


@hookimpl
def register_executors() -> list[type]:
    return [PythonExecutor]
