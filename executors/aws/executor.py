"""The base of the AWS executors: clients, in-flight tracking, per-call records, ``cancel()``."""
from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.executor import Context, Executor

from ..calls import CallKeys
from .clients import AwsClients, environment_problems
from .inflight import InFlight
from .record import RemoteRecord, args_digest


class AwsExecutor(CallKeys, Executor):
    """Base of the AWS executors: clients, in-flight tracking, per-call record keys, ``cancel()``."""

    service: ClassVar[str] = ""

    @classmethod
    def check_environment(cls) -> list[str]:
        return environment_problems(AwsClients())

    def _aws_setup(self, region: str | None = None) -> None:
        """In-memory state only: constructors must have no side effects."""
        self._clients = AwsClients(region)
        self._inflight = InFlight()
        self._ordinals: dict[str, int] = {}

    @property
    def aws(self) -> AwsClients:
        return self._clients

    def cancel(self) -> None:
        self._inflight.stop_all()

    def close(self) -> None:
        self._clients.close()

    def record(self, context: Context, call_key: str, unit: str, *digest_parts: Any) -> RemoteRecord:
        folder = context.state_dir("remote", context.run_id)
        key, digest, scope = f"{call_key}.{unit}", args_digest(*digest_parts), f"{context.routine_name}/{context.step}"
        record = RemoteRecord(folder, key, digest, context.run_id, scope=scope, logger=context.logger)
        resumed = context.resumed_from
        if resumed and resumed != context.run_id and not record.data:
            previous = RemoteRecord(context.state_dir("remote", resumed), key, digest, resumed, scope=scope,
                                    logger=context.logger)
            record.previous = previous if previous.data else None
        return record
