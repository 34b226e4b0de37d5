"""Track code that lives outside routines: a decorator that records an execution around a function.

@track("orders_export")
def export(context):
    rows = ...
    context.next_watermark = max_updated_at
    return TaskMetrics(inserts=rows)

result = export()          # Tracked(execution_id=..., status="succeeded", metrics=TaskMetrics(...))
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import threading
import time
import uuid
from typing import Any, Callable

from ..executor import Context, TaskMetrics, accepts_context
from ..masking import masked_traceback
from ..returns import kept_result
from .recorder import LogCapture, parent_run_id
from .store import RunRecord, RunStore, TaskRecord, open_store

_UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class Tracked:
    """What a tracked call returns: the execution id, how it ended, the metrics and the function's
    result."""

    execution_id: str
    status: str
    metrics: TaskMetrics | None
    value: Any = None


def track(
    pipeline: str,
    *,
    active: bool = True,
    parent_execution_id: str | None = None,
    watermark: Any = _UNSET,
    store: RunStore | None = None,
    allow_concurrent: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Tracked]]:
    """Record each call of the decorated function as a run of ``pipeline`` (one task, named after
    the function).

    The function gets a ``Context`` if it takes ``context``; its ``watermark`` is the one saved by
    the last successful call (or ``watermark`` given here) and ``next_watermark`` is saved when it
    succeeds. It should return ``TaskMetrics`` (or None). ``active=False`` records a skipped
    execution and does not call it. Exceptions are recorded, then re-raised.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Tracked]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Tracked:
            return _Execution(
                store or open_store(), pipeline, fn, parent_execution_id, watermark
            ).call(active, allow_concurrent, args, kwargs)

        return wrapper

    return decorate


class _Execution:

    def __init__(
        self,
        store: RunStore,
        pipeline: str,
        fn: Callable[..., Any],
        parent: str | None,
        watermark: Any,
    ) -> None:
        self.store, self.pipeline, self.fn = store, pipeline, fn
        self.run = RunRecord(
            run_id=str(uuid.uuid4()),
            routine=pipeline,
            routine_file=f"{fn.__module__}.{fn.__qualname__}",
            parent_run_id=parent or parent_run_id(),
        )
        self.task = TaskRecord(
            id=str(uuid.uuid4()),
            run_id=self.run.run_id,
            step=pipeline,
            executor="python",
            task=fn.__name__,
            step_index=0,
            task_index=0,
            attempt=1,
        )
        self.watermark = watermark

    def call(
        self, active: bool, allow_concurrent: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Tracked:
        self.store.start_run(self.run, allow_concurrent)
        if not active:
            self.task.attempt = 0
            return self.finish("skipped", None, error="pipeline is inactive (active=False)")
        context = self.context()
        if accepts_context(self.fn):
            kwargs = {**kwargs, "context": context}
        try:
            with LogCapture(self.store, self.run.run_id), context.active():
                value = self.fn(*args, **kwargs)
        except BaseException as exc:
            self.task.error_type = type(exc).__name__
            self.task.traceback = masked_traceback(exc, frozenset())
            self.finish(
                "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed",
                None,
                error=str(exc),
            )
            raise
        metrics = TaskMetrics.from_value(value)
        if getattr(value, "completed_successfully", True) is False:
            return self.finish(
                "failed",
                metrics,
                value=value,
                error="the function reported completed_successfully=False",
            )
        if context.next_watermark is not None:
            self.store.set_watermark(
                self.pipeline,
                self.pipeline,
                self.fn.__name__,
                context.next_watermark,
                self.run.run_id,
            )
        return self.finish("succeeded", metrics, value=value)

    def context(self) -> Context:
        saved = self.store.get_watermark(self.pipeline, self.pipeline, self.fn.__name__)
        return Context(
            run_id=self.run.run_id,
            run_date=dt.date.today().isoformat(),
            routine_name=self.pipeline,
            step=self.pipeline,
            task=self.fn.__name__,
            cancel_event=threading.Event(),
            watermark=saved if self.watermark is _UNSET else self.watermark,
        )

    def finish(
        self, status: str, metrics: TaskMetrics | None, value: Any = None, error: str | None = None
    ) -> Tracked:
        now = time.time()
        self.task.status, self.task.ended, self.task.error = status, now, error
        self.task.metrics = metrics.to_dict() if metrics else None
        self.task.result = kept_result(value) if metrics is None else None
        self.store.record_task(self.task)
        self.store.update_run(self.run.run_id, status=status, ended=now, heartbeat=now)
        return Tracked(self.run.run_id, status, metrics, value)
