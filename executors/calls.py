"""Which call of a task this is: the key that ties an attempt, a retry and a resume to one piece
of remote work (a query, a job run, a container), so that none of them starts it twice."""
from __future__ import annotations

from typing import Any

from orchestrator.executor import Context

from .aws.record import RemoteRecord


class CallKeys:
    """Counts the calls of each task in one step. Mixed into executors that record remote work."""

    _ordinals: dict[str, int]

    def _ordinal_table(self) -> dict[str, int]:
        # Lazily, so a class mixing this in owes us no setup call in its constructor.
        if not hasattr(self, "_ordinals"):
            self._ordinals = {}
        return self._ordinals

    def call_key(self, context: Context) -> str:
        """``task-n``: the n-th call of this task in this step, the same for every attempt of it."""
        ordinals = self._ordinal_table()
        count = ordinals.get(context.task, 0)
        # A retry keeps the key of the call it retries, so it finds that call's record and
        # re-attaches to its remote work; with nothing counted yet there is no earlier call to share
        # a key with.
        if context.attempt <= 1 or count == 0:
            count += 1
            ordinals[context.task] = count
        return f"{context.task}-{count}"

    def restore(self, context: Context, succeeded_in: str) -> bool:
        """A call skipped by a resume still counts, so the calls after it keep the keys the resumed
        run used (and re-attach to its remote work instead of starting it again)."""
        ordinals = self._ordinal_table()
        ordinals[context.task] = ordinals.get(context.task, 0) + 1
        # Nothing else to rebuild: the skipped call's remote work is finished, and only its key
        # matters for the calls after it.
        return True

    def record(self, context: Context, call_key: str, unit: str,
               *digest_parts: Any) -> RemoteRecord:
        """What this call remembers of ``unit`` of its remote work (a query, a job run, a
        container); ``digest_parts`` are what was asked, so a changed routine starts afresh."""
        return RemoteRecord.for_call(context, call_key, unit, *digest_parts)
