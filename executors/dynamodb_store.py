"""The run store in one DynamoDB table, for hosts without lasting disk (AWS Lambda, containers).

Enable it with ``ORCHESTRATOR_STORE=dynamodb://TABLE``; create the table once with
``DynamoDBStore("TABLE").create_table()`` (on-demand billing, keys ``pk``/``sk`` as strings).

Single-table layout (``#`` inside names is escaped, so keys never collide)::

    pk                          sk                                  what
    RUN#<run id>                META                                the run record
    RUN#<run id>                TASK#<step:05>#<task:05>#<task id>  one task execution (attempt)
    RUN#<run id>                LOG#<seq:020>                       one log line; seq per run,
                                                                    increasing
    RUN#<run id>                LOGSEQ                              the run's log sequence counter
    WM#<routine>#<step>#<task>  WM                                  a watermark
    LOCK#<routine>              LOCK                                who holds the routine

The lock item has ``run_id`` (the exclusive holder), ``concurrent_runs`` (a string set of runs
started with ``allow_concurrent``) and ``lock_version``, bumped on every change: a start writes the
lock only if ``lock_version`` is what it read, in the same transaction as its run record, so two
simultaneous starts cannot both win. ``list_runs`` scans the table with filters; at scale, add a
GSI on ``routine``/``started``.

boto3 is imported when the first request is made, never at import.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from typing import Any, Iterable

from orchestrator.errors import UserError
from orchestrator.outcome import TERMINAL
from orchestrator.runs.store import (
    DEAD,
    RUNNING,
    LogRecord,
    RoutineBusy,
    RunRecord,
    RunStore,
    TaskRecord,
    is_dead,
)

META, LOCK, WM, LOGSEQ = "META", "LOCK", "WM", "LOGSEQ"
# Each lost round means another start or end changed the lock between our read and our write;
# 25 in a row is a storm, not a race.
CLAIM_ATTEMPTS = 25
# DynamoDB caps an item at 400 KB; a line cut at 100,000 characters stays under it unless
# nearly all of them are 4-byte UTF-8.
MAX_MESSAGE_CHARS = 100_000
# Zero-padded to 20 digits so that sort-key (string) order is numeric order; any int64 fits.
SEQ_WIDTH = 20
# DynamoDB's naming rule, checked before any request: a typo is a UserError, not an AWS error.
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_RUN_FIELDS = tuple(RunRecord.__dataclass_fields__)
_TASK_FIELDS = tuple(TaskRecord.__dataclass_fields__)
_JSON_FIELDS = frozenset({"params", "metrics", "watermark", "next_watermark", "result", "args"})
_INT_FIELDS = frozenset({"pid", "step_index", "task_index", "attempt", "seq"})


class Conflict(Exception):
    """A conditional write lost: someone changed the item since we read it (or our own
    retried write landed)."""


class DynamoDBStore(RunStore):
    """Every method of the :class:`RunStore` contract on one table;
    thread-safe (one boto3 client)."""

    def __init__(self, table: str, client: Any = None) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise UserError(
                f"dynamodb://{table}: a table name is 3-255 letters, digits, '_', '-' or '.'"
            )
        self.table = table
        self._client = client
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """Created on first use so importing and constructing the store stay free
        of boto3 and network."""
        if self._client is None:
            with self._client_lock:
                # Checked again under the lock: two threads may both have seen None.
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    # As the executors' clients: botocore's legacy mode would try a throttled
                    # DynamoDB call 10 times (~25 s).
                    config = Config(retries={"mode": "standard", "total_max_attempts": 5})
                    # A session of its own: boto3's default session is not safe to build clients
                    # from in several threads.
                    self._client = boto3.session.Session().client("dynamodb", config=config)
        return self._client

    def create_table(self, wait: bool = True) -> None:
        """Create the table (on-demand billing) unless it exists;
        tests and first deployments use it."""
        try:
            self.client.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
            )
        except self.client.exceptions.ResourceInUseException:
            # Already there, or being created: the wait below covers both.
            pass
        if wait:
            self.client.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )

    # ------------------------------------------------------------------ runs

    def start_run(self, run: RunRecord, allow_concurrent: bool = False) -> None:
        """Take the routine's lock and write the run in one transaction, retrying on a lost race.

        A lost reply (the transaction landed, the retry then failed its condition) is not mistaken
        for a rival: the next pass reads the lock back, finds this run as holder and writes again. A
        run id already recorded by another process (host, pid) is refused with :class:`UserError`;
        the run item is written only if absent or this process's own, so two processes cannot share
        an id.
        """
        for _ in range(CLAIM_ATTEMPTS):
            if allow_concurrent:
                self._check_run_id(run)
                # A concurrent run joins the lock's set instead of taking it: that needs no read,
                # and it bumps the version, so an exclusive start that read the lock before fails
                # its condition.
                writes = [self._join_lock(run), self._put_run(run)]
            else:
                lock = self._get(_lock_key(run.routine))
                self._check_holders(run, lock)
                self._check_run_id(run)
                writes = [self._take_lock(run, lock), self._put_run(run)]
            try:
                self._transact(writes)
                return
            except Conflict:
                # Short: the rival's write has already landed, so the next read sees it.
                time.sleep(0.01)
        raise RuntimeError(
            f"could not claim routine {run.routine!r} after {CLAIM_ATTEMPTS} attempts "
            "(lock keeps changing)"
        )

    def _check_run_id(self, run: RunRecord) -> None:
        """A run id is used once: refuse one recorded by another process,
        accept our own (a retried start)."""
        item = self._get(_run_key(run.run_id))
        if item is not None and (item.get("host"), _decode("pid", item.get("pid"))) != (
            run.host,
            run.pid,
        ):
            raise UserError(f"run id {run.run_id} is already recorded; a run id is used once")

    def _put_run(self, run: RunRecord) -> dict[str, Any]:
        """The run item, written only if no other process wrote it first (closes the race of
        :meth:`_check_run_id`)."""
        condition = "attribute_not_exists(pk) OR (#host = :host AND #pid = :pid)"
        # A run without a pid stores NULL, which '=' never matches: attribute_type tests for it.
        if run.pid is None:
            condition = (
                "attribute_not_exists(pk) OR (#host = :host AND attribute_type(#pid, :null))"
            )
        values = {":host": _attr(run.host), ":pid": _attr(run.pid)} if run.pid is not None else {
            ":host": _attr(run.host), ":null": _attr("NULL")}
        return {
            "Put": {
                "TableName": self.table,
                "Item": self._run_item(run),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#host": "host", "#pid": "pid"},
                "ExpressionAttributeValues": values,
            }
        }

    def _check_holders(self, run: RunRecord, lock: dict[str, Any] | None) -> None:
        """Raise ``RoutineBusy`` for a live holder; mark dead ones so (the lock
        is then taken over)."""
        if lock is None:
            return
        holders = [lock.get("run_id"), *sorted(lock.get("concurrent_runs") or ())]
        for run_id in filter(None, holders):
            if run_id == run.run_id:
                continue
            other = self.get_run(run_id)
            # A holder whose run is gone or over is stale (its end did not release the lock); the
            # lock is overwritten below.
            if other is None or other.finished:
                continue
            if is_dead(other):
                # Marked so runs lists it as dead rather than running once its lock is taken over.
                self._mark_dead(run_id)
                continue
            raise RoutineBusy(run.routine, run_id)

    def _mark_dead(self, run_id: str) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_run_key(run_id),
                UpdateExpression="SET #s = :dead, #e = :now",
                # Only a run still RUNNING: it may have ended, or been marked by someone else,
                # meanwhile; an ended run's status is never overwritten. status is a DynamoDB
                # reserved word, hence #s.
                ConditionExpression="#s = :running",
                ExpressionAttributeNames={"#s": "status", "#e": "ended"},
                ExpressionAttributeValues={
                    ":dead": _attr(DEAD),
                    ":running": _attr(RUNNING),
                    ":now": _attr(time.time()),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            pass

    def _take_lock(self, run: RunRecord, lock: dict[str, Any] | None) -> dict[str, Any]:
        version = int(lock.get("lock_version", 0)) if lock else 0
        item = {
            **_lock_key(run.routine),
            "run_id": _attr(run.run_id),
            "lock_version": _attr(version + 1),
            "taken": _attr(time.time()),
            "host": _attr(socket.gethostname()),
            "pid": _attr(os.getpid()),
        }
        put: dict[str, Any] = {"TableName": self.table, "Item": item}
        if lock is None:
            # We read no lock: write only if there still is none.
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            # The optimistic lock itself: this write lands only if nobody changed the lock since we
            # read it.
            put["ConditionExpression"] = "lock_version = :lock_version"
            put["ExpressionAttributeValues"] = {":lock_version": _attr(version)}
        return {"Put": put}

    def _join_lock(self, run: RunRecord) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": _lock_key(run.routine),
                # The first concurrent run may find no lock item at all; UpdateItem creates it.
                "UpdateExpression": (
                    "SET lock_version = if_not_exists(lock_version, :zero) + :one "
                    "ADD concurrent_runs :me"
                ),
                "ExpressionAttributeValues": {
                    ":zero": _attr(0),
                    ":one": _attr(1),
                    ":me": {"SS": [run.run_id]},
                },
            }
        }

    def _release(self, routine: str, run_id: str) -> None:
        """Let go of the routine's lock once the run ended;
        conditional, so a new holder is never touched."""
        key = _lock_key(routine)
        lock = self._get(key)
        if lock is None:
            return
        errors = self.client.exceptions.ConditionalCheckFailedException
        values = {":me": _attr(run_id), ":one": _attr(1)}
        try:
            # Sole holder: delete the item. Holder beside concurrent runs: give up only the
            # exclusive claim. A concurrent run: leave the set. Each write is conditional on what we
            # read.
            if lock.get("run_id") == run_id and not lock.get("concurrent_runs"):
                self.client.delete_item(
                    TableName=self.table,
                    Key=key,
                    ConditionExpression="run_id = :me AND attribute_not_exists(concurrent_runs)",
                    ExpressionAttributeValues={":me": values[":me"]},
                )
            elif lock.get("run_id") == run_id:
                self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="REMOVE run_id SET lock_version = lock_version + :one",
                    ConditionExpression="run_id = :me",
                    ExpressionAttributeValues=values,
                )
            elif run_id in (lock.get("concurrent_runs") or ()):
                self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression=(
                        "DELETE concurrent_runs :set SET lock_version = lock_version + :one"
                    ),
                    ConditionExpression="contains(concurrent_runs, :me)",
                    ExpressionAttributeValues={**values, ":set": {"SS": [run_id]}},
                )
        except errors:
            # The lock changed since we read it: it is no longer ours to release.
            pass

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change fields of an existing run (a missing run is left missing);
        a terminal status releases the lock."""
        unknown = set(fields) - set(_RUN_FIELDS) - {"run_id"}
        if unknown or "run_id" in fields:
            raise TypeError(
                f"update_run: cannot set {sorted(unknown | ({'run_id'} & set(fields)))}"
            )
        if not fields:
            return
        # Placeholders for every field: some run fields (status, for one) are DynamoDB reserved
        # words.
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {
            f":v{i}": _attr(_encode(name, value)) for i, (name, value) in enumerate(fields.items())
        }
        try:
            reply = self.client.update_item(
                TableName=self.table,
                Key=_run_key(run_id),
                UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
                # Without it, UpdateItem would create a partial run item for an unknown run id.
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return
        if fields.get("status") in TERMINAL:
            # ALL_NEW gave us the routine, which names the lock, without another read.
            self._release(_value(reply["Attributes"]["routine"]), run_id)

    def get_run(self, run_id: str) -> RunRecord | None:
        item = self._get(_run_key(run_id))
        return _run_from(item) if item else None

    def list_runs(
        self,
        routine: str | None = None,
        status: str | None = None,
        parent: str | None = None,
        limit: int = 20,
    ) -> list[RunRecord]:
        """A Scan with filters, newest first; correct at any size,
        but a GSI on routine/started scales better."""
        names, values = {"#sk": "sk"}, {":meta": _attr(META)}
        conditions = ["#sk = :meta"]
        for i, (field, value) in enumerate(
            (("routine", routine), ("status", status), ("parent_run_id", parent))
        ):
            if value is not None:
                names[f"#c{i}"], values[f":c{i}"] = field, _attr(value)
                conditions.append(f"#c{i} = :c{i}")
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            # A run just started must be listed at once (orchestrate runs right after a start).
            ConsistentRead=True,
        )
        runs = [_run_from(_decode_item(item)) for page in pages for item in page.get("Items", ())]
        # A Scan returns no order: sorted here, so the limit keeps the newest.
        runs.sort(key=lambda r: r.started, reverse=True)
        return runs[:max(limit, 0)]

    # ------------------------------------------------------------------ tasks

    def record_task(self, task: TaskRecord) -> None:
        item = {name: _attr(_encode(name, getattr(task, name))) for name in _TASK_FIELDS}
        # Zero-padded so that string order is step order, then task order.
        sk = f"TASK#{task.step_index:05d}#{task.task_index:05d}#{_escape(task.id)}"
        self.client.put_item(
            TableName=self.table, Item={**item, "pk": _attr(_run_pk(task.run_id)), "sk": _attr(sk)}
        )

    def tasks(self, run_id: str) -> list[TaskRecord]:
        items = self._query(run_id, "begins_with(sk, :p)", {":p": _attr("TASK#")})
        records = [
            TaskRecord(**{name: _decode(name, item.get(name)) for name in _TASK_FIELDS})
            for item in items
        ]
        # The sort key ends in the task id, not the attempt: attempts are ordered here.
        return sorted(records, key=lambda t: (t.step_index, t.task_index, t.attempt))

    # ------------------------------------------------------------------ logs

    def append_logs(self, records: Iterable[LogRecord]) -> None:
        """Reserve a block of sequence numbers per run (an atomic counter),
        then batch-write the lines."""
        by_run: dict[str, list[LogRecord]] = {}
        for record in records:
            by_run.setdefault(record.run_id, []).append(record)
        for run_id, batch in by_run.items():
            last = self._reserve_seq(run_id, len(batch))
            first = last - len(batch) + 1
            items = [self._log_item(record, first + i) for i, record in enumerate(batch)]
            self._batch_put(items)

    def _reserve_seq(self, run_id: str, count: int) -> int:
        reply = self.client.update_item(
            TableName=self.table,
            Key={"pk": _attr(_run_pk(run_id)), "sk": _attr(LOGSEQ)},
            # ADD is atomic across processes and starts a missing counter at 0; the reply is the
            # last number of our block.
            UpdateExpression="ADD seq_counter :n",
            ExpressionAttributeValues={":n": _attr(count)},
            ReturnValues="UPDATED_NEW",
        )
        return int(reply["Attributes"]["seq_counter"]["N"])

    def _log_item(self, record: LogRecord, seq: int) -> dict[str, Any]:
        message = (
            record.message
            if len(record.message) <= MAX_MESSAGE_CHARS
            else record.message[:MAX_MESSAGE_CHARS] + " …[truncated]"
        )
        return {
            "pk": _attr(_run_pk(record.run_id)),
            "sk": _attr(f"LOG#{seq:0{SEQ_WIDTH}d}"),
            "run_id": _attr(record.run_id),
            "seq": _attr(seq),
            "ts": _attr(record.ts),
            "level": _attr(record.level),
            "step": _attr(record.step),
            "task": _attr(record.task),
            "message": _attr(message),
        }

    def _batch_put(self, items: list[dict[str, Any]]) -> None:
        # BatchWriteItem takes at most 25 items per call.
        for start in range(0, len(items), 25):
            requests = {
                self.table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            }
            for attempt in range(8):
                left = (
                    self.client.batch_write_item(RequestItems=requests).get("UnprocessedItems")
                    or {}
                )
                if not left:
                    break
                # Throttled items come back as UnprocessedItems, not as an error: retried with
                # backoff.
                requests = left
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise RuntimeError(
                    f"DynamoDB kept {sum(map(len, requests.values()))} log items unprocessed"
                )

    def logs(self, run_id: str, after: int = 0) -> list[LogRecord]:
        # BETWEEN, not begins_with("LOG"): the LOGSEQ counter item shares the prefix ('S' sorts
        # after '#', so the range leaves it out).
        low, high = f"LOG#{max(after, 0) + 1:0{SEQ_WIDTH}d}", "LOG#" + "9" * SEQ_WIDTH
        items = self._query(
            run_id, "sk BETWEEN :lo AND :hi", {":lo": _attr(low), ":hi": _attr(high)}
        )
        return [
            LogRecord(
                run_id=item["run_id"],
                ts=float(item["ts"]),
                level=item["level"],
                step=item.get("step"),
                task=item.get("task"),
                message=item["message"],
                seq=int(item["seq"]),
            )
            for item in items
        ]

    # ------------------------------------------------------------------ watermarks

    def get_watermark(self, routine: str, step: str, task: str) -> Any:
        item = self._get({"pk": _attr("WM#" + _escape(routine, step, task)), "sk": _attr(WM)})
        return json.loads(item["value"]) if item else None

    def set_watermark(self, routine: str, step: str, task: str, value: Any, run_id: str) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": _attr("WM#" + _escape(routine, step, task)),
                "sk": _attr(WM),
                "value": _attr(json.dumps(value)),
                "routine": _attr(routine),
                "step": _attr(step),
                "task": _attr(task),
                "run_id": _attr(run_id),
                "updated": _attr(time.time()),
            },
        )

    # ------------------------------------------------------------------ plumbing

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        # Strongly consistent: the lock protocol must read what a rival just wrote, or it would keep
        # losing the same race on a stale read.
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        return _decode_item(item) if item else None

    def _query(
        self, run_id: str, sk_condition: str, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression=f"pk = :pk AND {sk_condition}",
            ConsistentRead=True,
            ExpressionAttributeValues={":pk": _attr(_run_pk(run_id)), **values},
        )
        return [_decode_item(item) for page in pages for item in page.get("Items", ())]

    def _transact(self, items: list[dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            # Canceled: a condition failed. Conflict: another transaction was writing the same item.
            # Both mean read again and retry.
            if exc.response.get("Error", {}).get("Code") in (
                "TransactionCanceledException",
                "TransactionConflictException",
            ):
                raise Conflict(str(exc)) from None
            raise

    def _run_item(self, run: RunRecord) -> dict[str, Any]:
        item = {name: _attr(_encode(name, getattr(run, name))) for name in _RUN_FIELDS}
        return {**item, **_run_key(run.run_id)}


def _escape(*parts: str) -> str:
    # Backslashes first: otherwise the part a\ followed by b would join as a\#b, the
    # same key as the one part a#b.
    return "#".join(part.replace("\\", "\\\\").replace("#", "\\#") for part in parts)


def _run_pk(run_id: str) -> str:
    return "RUN#" + _escape(run_id)


def _run_key(run_id: str) -> dict[str, Any]:
    return {"pk": _attr(_run_pk(run_id)), "sk": _attr(META)}


def _lock_key(routine: str) -> dict[str, Any]:
    return {"pk": _attr("LOCK#" + _escape(routine)), "sk": _attr(LOCK)}


def _encode(name: str, value: Any) -> Any:
    """JSON values become JSON strings: DynamoDB maps reject floats and empty keys,
    strings keep any shape."""
    if name in _JSON_FIELDS:
        return None if value is None else json.dumps(value, default=str)
    return value


def _decode(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return None if value is None else json.loads(value)
    # The field decides int or float, not the digits: a float field may hold a whole
    # number, which _value reads back as an int.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if name in _INT_FIELDS else float(value)
    return value


def _attr(value: Any) -> dict[str, Any]:
    """A Python scalar as a DynamoDB attribute value; numbers travel as exact decimal strings."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        # repr is the shortest text that reads back as exactly the same float.
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB: {value!r}")


def _value(attr: dict[str, Any]) -> Any:
    (kind, raw), = attr.items()
    if kind == "N":
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    if kind == "NULL":
        return None
    if kind == "SS":
        return set(raw)
    return raw


def _decode_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _value(attr) for key, attr in item.items()}


def _run_from(item: dict[str, Any]) -> RunRecord:
    return RunRecord(
        **{name: _decode(name, item.get(name)) for name in _RUN_FIELDS if name in item}
    )
