"""The execution-tracking SDK's names, over :func:`orchestrator.track` and :class:`TaskMetrics`.

Code written for that SDK runs unchanged and is recorded in the run store::

    from orchestrator.compat import ETLMetrics, track_pipeline_execution

    @track_pipeline_execution(pipeline_id="orders", watermark="2026-01-01")
    def load(watcher_context):
        rows = copy_since(watcher_context.watermark)
        watcher_context.next_watermark = "2026-11-30"
        return ETLMetrics(inserts=rows, total_rows=rows)

    result = load()            # ExecutionResult(execution_id=..., result=ETLMetrics(...))
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

from .executor import Context, TaskMetrics
from .runs.track import _UNSET, track

__all__ = [
    "ETLMetrics",
    "ETLResult",
    "ExecutionResult",
    "WatcherContext",
    "track_pipeline_execution",
]


@dataclasses.dataclass
class ETLMetrics(TaskMetrics):
    """The SDK's metrics: inserts, updates, soft_deletes, total_rows, execution_metadata."""


@dataclasses.dataclass
class ETLResult(ETLMetrics):
    """Metrics plus the SDK's verdict: ``completed_successfully=False`` records
    a failed execution."""

    completed_successfully: bool = True


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """What a tracked call returns in the SDK: the execution id and the function's own result."""

    execution_id: str
    result: Any
    status: str = "succeeded"


class WatcherContext:
    """The SDK's ``watcher_context``: a view of the run's :class:`Context` under the SDK's names."""

    def __init__(self, context: Context, pipeline_id: str, next_watermark: Any = None) -> None:
        self._context = context
        self.pipeline_id = pipeline_id
        if next_watermark is not None:
            context.next_watermark = next_watermark

    @property
    def execution_id(self) -> str:
        return self._context.run_id

    @property
    def watermark(self) -> Any:
        return self._context.watermark

    @property
    def next_watermark(self) -> Any:
        return self._context.next_watermark

    @next_watermark.setter
    def next_watermark(self, value: Any) -> None:
        self._context.next_watermark = value

    @property
    def logger(self) -> Any:
        return self._context.logger


def track_pipeline_execution(
    pipeline_id: str,
    active: bool = True,
    watermark: Any = None,
    next_watermark: Any = None,
    parent_execution_id: str | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., ExecutionResult]]:
    """Record each call as a run of ``pipeline_id``.

    A ``watermark`` given here is what the function sees; without it (None), the one saved by the
    last successful call. ``next_watermark`` is saved on success unless the function sets
    ``watcher_context.next_watermark`` itself. ``options`` (``store``, ``allow_concurrent``) go to
    :func:`orchestrator.track`.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., ExecutionResult]:
        # The SDK passed watcher_context only to functions that name it; others are called with
        # their own arguments alone.
        wants_watcher = "watcher_context" in inspect.signature(fn).parameters

        def call(*args: Any, context: Context, **kwargs: Any) -> Any:
            watcher = WatcherContext(context, pipeline_id, next_watermark)
            if wants_watcher:
                kwargs["watcher_context"] = watcher
            return fn(*args, **kwargs)

        # Named like the function (its task name in the store), but without functools.wraps:
        # the engine must see `call`'s own `context` parameter, not the function's signature.
        call.__name__, call.__qualname__, call.__module__ = (
            fn.__name__,
            fn.__qualname__,
            fn.__module__,
        )
        tracked = track(
            pipeline_id,
            active=active,
            # The SDK's None means "the saved watermark"; track() tells that apart from an explicit
            # None by its own _UNSET marker.
            watermark=_UNSET if watermark is None else watermark,
            parent_execution_id=parent_execution_id,
            **options,
        )(call)

        # Callers see the function's own name and signature, and get the SDK's ExecutionResult
        # rather than track()'s outcome.
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> ExecutionResult:
            outcome = tracked(*args, **kwargs)
            return ExecutionResult(outcome.execution_id, outcome.value, outcome.status)

        return wrapper

    return decorate
