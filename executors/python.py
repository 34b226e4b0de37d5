"""A tiny generic executor: call a function from a Python file next to the routine.

By default each call runs in a child process (``executors._python_child``), because only a
process can be stopped from outside: a timeout or a cancel terminates it, then kills it.
``in_process: true`` calls the function in this process instead: no start-up cost and shared
state, but a function that ignores ``context.check_cancelled()`` cannot be stopped.
"""
from __future__ import annotations

import threading
from typing import Annotated, Any, Iterable

from orchestrator.executor import CodeLocation, Context, Executor, Place, accepts_context, task
from orchestrator.hookspecs import hookimpl


class PythonExecutor(Executor):
    """Glue code that needs no executor of its own (preparing test data, small fixes)."""

    name = "python"

    def __init__(
        self,
        path: Annotated[CodeLocation, "A .py file; relative to the routine's folder"],
        in_process: Annotated[bool, "Call in this process: faster, but a timeout or cancel cannot "
                                    "stop a function that ignores cancellation"] = False,
    ) -> None:
        self.path = str(path)
        self.in_process = in_process
        # Under a lock: cancel() runs on another thread while calls start and end.
        self._calls: set[Any] = set()
        self._lock = threading.Lock()

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        """The file must exist and be readable; it is read, never imported."""
        from .staging.loader import code_problem

        path = str(params.get("path") or "")
        if path and (problem := code_problem(path)) is not None:
            yield "path", problem

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        """``call``'s function must be defined at the top level of the file and take ``kwargs``
        (checked with ``ast``, never imported)."""
        from .staging.loader import code_problem
        from .staging.signature import call_problems

        path, function = str(params.get("path") or ""), args.get("function")
        if (
            task != "call"
            or not path
            or not isinstance(function, str)
            or code_problem(path) is not None
        ):
            return
        kwargs = args.get("kwargs") or {}
        if not function.isidentifier():
            yield "function", f"{function!r} is not a Python function name"
        elif (problem := code_problem(path, (function,))) is not None:
            yield "function", problem
        elif isinstance(kwargs, dict):
            # We supply context ourselves, so a function that requires it is not missing an
            # argument.
            yield from call_problems(path, function, kwargs, kwargs_key="kwargs",
                                     function_key="function", supplied=("context",))

    @classmethod
    def task_places(cls, task: str, args: dict[str, Any],
                    params: dict[str, Any]) -> Iterable[Place]:
        """``call`` runs ``function`` from ``path`` (code) and hands it ``kwargs``: the strings
        among them that name local paths are data locations to whoever checks them."""
        from .staging.locations import local_path_strings

        path, function = params.get("path"), args.get("function")
        if task != "call":
            return
        if isinstance(path, str) and path and isinstance(function, str):
            yield Place("function", path, "code", (function,))
        for key, value in local_path_strings(args.get("kwargs") or {}, "kwargs"):
            yield Place(key, value)

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Any:
        """What the task reads and writes, for lineage events (``executors/lineage.py``)."""
        from . import lineage

        return lineage.python(result)

    @task
    def call(self, function: Annotated[str, "Name of a function in the file"],
             kwargs: Annotated[dict | None, "Keyword arguments for the function"] = None,
             context: Context | None = None) -> Any:
        """Import the file afresh; call ``function(**kwargs)``, with ``context=`` if it takes one.

        Returns what the function returned: metrics (a TaskMetrics, or a dict of metric names)
        become the task's metrics, any other value its result. Runs in a child process unless
        ``in_process``."""
        if not self.in_process:
            return self._call_in_child(function, kwargs or {}, context)
        from .staging.loader import function_of, load_file

        # A routine from an event may call only functions the file defines, not names it imports
        # (see loader.function_of); the child applies the same rule.
        own_only = context is not None and not context.trusted
        fn = function_of(load_file(self.path), function, own_only)
        extra = {"context": context} if context is not None and accepts_context(fn) else {}
        return fn(**(kwargs or {}), **extra)

    def cancel(self) -> None:
        """Terminate the child processes of the calls in flight (killed after a grace period)."""
        with self._lock:
            # stop() outside the lock: it signals a process, and each call's own finally takes the
            # lock to discard itself.
            calls = list(self._calls)
        for call in calls:
            call.stop()

    def _call_in_child(self, function: str, kwargs: dict[str, Any],
                       context: Context | None) -> Any:
        from ._python_child import ChildCall

        call = ChildCall(self.path, function, kwargs, context)
        with self._lock:
            self._calls.add(call)
        try:
            return call.run()
        finally:
            with self._lock:
                self._calls.discard(call)


@hookimpl
def register_executors() -> list[type]:
    return [PythonExecutor]
