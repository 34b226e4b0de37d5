"""A tiny generic executor: call a function from a Python file next to the routine."""
from __future__ import annotations

from typing import Annotated, Any

from orchestrator.executor import Context, Executor, Location, TaskMetrics, accepts_context, task
from orchestrator.hookspecs import hookimpl


class PythonExecutor(Executor):
    """Glue code that needs no executor of its own (preparing test data, small fixes)."""

    name = "python"

    def __init__(self, path: Annotated[Location, "A .py file; relative to the routine's folder"]) -> None:
        self.path = str(path)

    @task
    def call(self, function: Annotated[str, "Name of a function in the file"],
             kwargs: Annotated[dict | None, "Keyword arguments for the function"] = None,
             context: Context | None = None) -> TaskMetrics | None:
        """Import the file afresh and call ``function(**kwargs)``, with ``context=`` if it takes one;
        a returned TaskMetrics is reported."""
        from ._loader import function_of, load_file

        fn = function_of(load_file(self.path), function)
        extra = {"context": context} if context is not None and accepts_context(fn) else {}
        result: Any = fn(**(kwargs or {}), **extra)
        return result if isinstance(result, TaskMetrics) else None


@hookimpl
def register_executors() -> list[type]:
    return [PythonExecutor]
