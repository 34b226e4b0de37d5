"""The base of the AWS executors: clients, in-flight tracking, per-call records, ``cancel()``."""
from __future__ import annotations

from typing import ClassVar

from orchestrator.executor import Context, Executor

from ..calls import CallKeys
from .clients import AwsClients, environment_problems
from .inflight import InFlight, RemoteOps
from .record import RemoteRecord
from .work import RemoteWork


class AwsExecutor(CallKeys, Executor):
    """Base of the AWS executors: clients, in-flight tracking, remote work, ``cancel()``."""

    service: ClassVar[str] = ""

    @classmethod
    def check_environment(cls) -> list[str]:
        # A throwaway AwsClients without a region: doctor calls this with no routine, hence no
        # params.
        return environment_problems(AwsClients())

    def _aws_setup(self, region: str | None = None) -> None:
        """In-memory state only: constructors must have no side effects."""
        self._clients = AwsClients(region)
        self._inflight = InFlight()
        # Per task name: how many calls of it this step has made, for call keys that tell the second
        # call of a task from a retry of the first.
        self._ordinals: dict[str, int] = {}

    @property
    def aws(self) -> AwsClients:
        return self._clients

    def cancel(self) -> None:
        self._inflight.stop_all()

    def close(self) -> None:
        self._clients.close()

    def remote_work(self, ops: RemoteOps, record: RemoteRecord, context: Context) -> RemoteWork:
        """One piece of remote work of this task call, stoppable by :meth:`cancel`."""
        return RemoteWork(ops, record, context, self._inflight)
