"""The Athena executor: run queries and manage external tables, waiting smartly and cancelling for
real.

Each statement is one query execution with a deterministic ``ClientRequestToken`` and a record
of its id under the step's state folder, so a retry re-attaches instead of running it twice.
Statistics (bytes scanned, run time, output location) and ``UpdateCount`` go into the metrics.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Iterable, Iterator, Literal

from orchestrator.executor import Context, Location, NotRetryable, TaskMetrics, task
from orchestrator.hookspecs import hookimpl

from .aws import tablespec as spec
from .aws.clients import check_service, read_text
from .aws.executor import AwsExecutor
from .aws.inflight import RemoteOps
from .aws.work import RemoteResult, StopRemote, closest_submission
from .aws.states import sync_task

# Athena's own rule for workgroup names: a typo fails validation instead of the first query.
WORKGROUP = re.compile(r"^[a-zA-Z0-9._-]{1,128}$")
CTAS_FORMATS = ("parquet", "orc", "json", "textfile", "avro")
# GetQueryResults' largest page: kept rows come from one page and are never paginated.
MAX_RESULT_ROWS = 1000
# Each candidate costs one GetQueryExecution; this bounds the orphan look-up to 100 calls.
ORPHAN_SCAN = 100


class CostGuardExceeded(NotRetryable, RuntimeError):
    """A query scanned more bytes than ``max_bytes_scanned`` allows;
    retrying would only scan them again."""


class AthenaExecutor(AwsExecutor):
    """Run Athena queries and DDL; each query's id, state,
    bytes scanned and run time land in the metrics."""

    name = "athena"
    service = "athena"

    def __init__(
        self,
        output_location: Annotated[str, "s3:// prefix where Athena writes query results"],
        database: Annotated[str, "Default database of the queries"] = "default",
        workgroup: Annotated[str, "Athena workgroup"] = "primary",
        catalog: Annotated[str, "Data catalog"] = "AwsDataCatalog",
        max_bytes_scanned: Annotated[
            int | None, "Cost guard: fail (and stop) a query scanning more bytes"
        ] = None,
        region: Annotated[str | None, "AWS region; default from the environment"] = None,
    ) -> None:
        self.output_location = output_location
        self.database = database
        self.workgroup = workgroup
        self.catalog = catalog
        self.max_bytes_scanned = max_bytes_scanned
        self._aws_setup(region)

    # ------------------------------------------------------------------ validation

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        problem = spec.s3_problem(params.get("output_location"), "output_location")
        if problem:
            yield "output_location", problem
        if "database" in params and spec.identifier_problem(params["database"]):
            yield "database", spec.identifier_problem(params["database"]) or ""
        if "workgroup" in params and not WORKGROUP.fullmatch(str(params["workgroup"])):
            yield "workgroup", f"illegal workgroup name {params['workgroup']!r}"
        limit = params.get("max_bytes_scanned")
        if limit is not None and (
            # bool is an int subclass: true is not a byte count.
            not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0
        ):
            yield "max_bytes_scanned", "must be a positive number of bytes"

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        checks = {
            "run_query": _query_problems,
            "create_table": _create_table_problems,
            "repair_table": _repair_problems,
            "create_table_as": _ctas_problems,
            "drop_table": _drop_problems,
        }
        return checks.get(task, lambda a: iter(()))(args)

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        """``run_query`` of one inline statement: ``athena:startQueryExecution.sync``. Others run in
        the Lambda: DDL rendered by our table specs, several statements in order, ``sql_file``,
        and any query under a ``max_bytes_scanned`` guard (which stops a query while it runs;
        for a native query, set the workgroup's per-query data limit instead)."""
        if task != "run_query" or args.get("sql") is None or params.get("max_bytes_scanned"):
            return None
        statements = spec.split_statements(args["sql"])
        if len(statements) != 1:
            return None
        request: dict[str, Any] = {
            "QueryString": statements[0],
            "QueryExecutionContext": {"Database": params.get("database", "default"),
                                      "Catalog": params.get("catalog", "AwsDataCatalog")},
            "ResultConfiguration": {"OutputLocation": params["output_location"]},
            "WorkGroup": params.get("workgroup", "primary")}
        if args.get("parameters"):
            # The API takes strings only; a number in YAML would fail its type check.
            request["ExecutionParameters"] = [str(p) for p in args["parameters"]]
        return sync_task("arn:aws:states:::athena:startQueryExecution.sync", request)

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Any:
        """What the task reads and writes, for lineage events (``executors/lineage.py``)."""
        from . import lineage

        return lineage.athena(task, args, params)

    def check(self) -> list[str]:
        return check_service(
            self.aws, "athena", lambda c: c.get_work_group(WorkGroup=self.workgroup)
        )

    # ------------------------------------------------------------------ tasks

    @task
    def run_query(
        self,
        context: Context,
        sql: Annotated[str | None, "One or several statements separated by ;"] = None,
        sql_file: Annotated[Location | None, "A .sql file (local or s3://) instead of sql"] = None,
        parameters: Annotated[
            list[str] | None, "ExecutionParameters for ? placeholders (single statement)"
        ] = None,
        result_rows: Annotated[
            int, "Keep up to this many result rows in the metrics (0: none)"
        ] = 0,
    ) -> TaskMetrics:
        """Run each statement in order; stop at the first failure."""
        # Counted before anything can fail (reading sql_file, say): a retry of this call must find
        # the count this attempt made, or it would take the previous call's key and its work.
        key = self.call_key(context)
        text = sql if sql is not None else read_text(str(sql_file), self.aws)
        statements = spec.split_statements(text)
        if not statements:
            raise ValueError("no SQL statement to run")
        if parameters and len(statements) > 1:
            raise ValueError("parameters need exactly one statement")
        return self._run_statements(context, key, statements, parameters, result_rows)

    @task
    def create_table(
        self,
        context: Context,
        table: Annotated[str, "Table name (or database.table)"],
        columns: Annotated[list[dict], "[{name, type, comment?}] with Hive types"],
        location: Annotated[str, "s3:// prefix of the table's files"],
        format: Annotated[Literal["csv", "json", "parquet"], "File format"] = "parquet",
        partition_keys: Annotated[list[dict] | None, "[{name, type}] partition columns"] = None,
        serde_properties: Annotated[dict | None, "SerDe properties (e.g. field.delim)"] = None,
        table_properties: Annotated[dict | None, "TBLPROPERTIES"] = None,
        skip_header: Annotated[bool, "CSV: skip the header line"] = False,
        comment: Annotated[str | None, "Table comment"] = None,
        if_not_exists: Annotated[bool, "Do nothing if the table exists"] = True,
    ) -> TaskMetrics:
        """CREATE EXTERNAL TABLE rendered from a validated spec."""
        args = dict(
            table=table,
            columns=columns,
            location=location,
            format=format,
            partition_keys=partition_keys,
            serde_properties=serde_properties,
            table_properties=table_properties,
            skip_header=skip_header,
            comment=comment,
        )
        ddl = spec.table_spec(args).athena_ddl(self.database, if_not_exists)
        return self._run_statements(context, self.call_key(context), [ddl], None, 0)

    @task
    def repair_table(
        self,
        context: Context,
        table: Annotated[str, "Table name (or database.table)"],
        partitions: Annotated[
            list[dict] | None, "[{values: {key: value}, location?}]: ADD PARTITION instead of MSCK"
        ] = None,
    ) -> TaskMetrics:
        """Load partitions: MSCK REPAIR TABLE, or ALTER TABLE ADD IF NOT EXISTS
        PARTITION for listed ones."""
        name = spec.hive_qualified(table, self.database)
        # MSCK lists the whole table location, slow on big tables; naming the partitions adds just
        # them. IF NOT EXISTS lets a retry or re-run add what is already there without failing.
        if not partitions:
            return self._run_statements(
                context, self.call_key(context), [f"MSCK REPAIR TABLE {name}"], None, 0
            )
        parts = " ".join(_partition_clause(p) for p in partitions)
        return self._run_statements(
            context,
            self.call_key(context),
            [f"ALTER TABLE {name} ADD IF NOT EXISTS {parts}"],
            None,
            0,
        )

    @task
    def create_table_as(
        self,
        context: Context,
        table: Annotated[str, "New table name (or database.table)"],
        sql: Annotated[str, "The SELECT whose result becomes the table"],
        location: Annotated[str, "s3:// prefix for the table's files (must be empty)"],
        format: Annotated[
            Literal["parquet", "orc", "json", "textfile", "avro"], "File format"
        ] = "parquet",
        partitioned_by: Annotated[
            list[str] | None, "Partition columns (last columns of the SELECT)"
        ] = None,
    ) -> TaskMetrics:
        """CTAS: rows written are reported as inserts."""
        props = [
            f"format = {spec.quote_literal(format.upper())}",
            f"external_location = {spec.quote_literal(location)}",
        ]
        if partitioned_by:
            props.append(
                "partitioned_by = ARRAY["
                + ", ".join(spec.quote_literal(c) for c in partitioned_by)
                + "]"
            )
        name = spec.sql_name(table if "." in table else f"{self.database}.{table}")
        # The SELECT becomes the tail of one statement: a ';' left at its end would cut it in two.
        statement = f"CREATE TABLE {name} WITH ({', '.join(props)}) AS\n{sql.strip().rstrip(';')}"
        return self._run_statements(context, self.call_key(context), [statement], None, 0)

    @task
    def drop_table(
        self,
        context: Context,
        table: Annotated[str, "Table name (or database.table)"],
        if_exists: Annotated[bool, "Do nothing if the table is missing"] = True,
    ) -> TaskMetrics:
        """DROP TABLE (the files in S3 stay: external tables own no data)."""
        statement = (
            f"DROP TABLE {'IF EXISTS ' if if_exists else ''}"
            f"{spec.hive_qualified(table, self.database)}"
        )
        return self._run_statements(context, self.call_key(context), [statement], None, 0)

    # ------------------------------------------------------------------ queries

    def _run_statements(
        self,
        context: Context,
        key: str,
        statements: list[str],
        parameters: list[str] | None,
        result_rows: int,
    ) -> TaskMetrics:
        queries: list[dict[str, Any]] = []
        for index, statement in enumerate(statements):
            # Between statements: a cancel that comes as one query ends starts no further one.
            context.check_cancelled()
            queries.append(self._run_one(context, key, index, statement, parameters, result_rows))
        return _metrics(queries)

    def _run_one(
        self,
        context: Context,
        key: str,
        index: int,
        sql: str,
        parameters: list[str] | None,
        result_rows: int,
    ) -> dict[str, Any]:
        record = self.record(
            # The digest holds all that decides what the query does: the same SQL against another
            # database is other work, and must not re-attach to this one's.
            context, key, f"q{index}", sql, parameters, self.database, self.workgroup, self.catalog
        )
        # RemoteWork.run checks this too; here it fails with the cost guard's own (not retryable)
        # type.
        if record.data.get("refused"):
            raise CostGuardExceeded(
                record.data["refused"] + " in an earlier attempt; not submitting it again"
            )
        def find_orphan(token: str, since: float, known: frozenset) -> str | None:
            return self._find_orphan(sql, parameters, since, known)

        work = self.remote_work(self._ops(), record, context)
        result = work.run(lambda token: self._start(sql, parameters, token),
                          on_poll=self._guard_while_running, find_orphan=find_orphan)
        info = _query_info(result, sql)
        # Again at the end: a query can finish between two polls having scanned past the limit. It
        # cannot be stopped any more, but it still fails the task.
        self._guard(info)
        # GetQueryResults is one more call; DML is the statement type whose result has an
        # UpdateCount.
        if info.get("statement_type") == "DML" or result_rows:
            info.update(self._results(result.remote_id, result_rows))
        context.logger.info(
            "athena query %s %s: %s bytes scanned in %s ms",
            result.remote_id,
            result.raw_state,
            info["bytes_scanned"],
            info["total_ms"],
        )
        return info

    def _ops(self) -> RemoteOps:
        return RemoteOps(
            engine="athena",
            what="query",
            describe=self._describe,
            state_of=lambda d: d.get("Status", {}).get("State"),
            reason_of=_reason,
            stop=self._stop,
        )

    def _start(self, sql: str, parameters: list[str] | None, token: str) -> str:
        request: dict[str, Any] = {
            "QueryString": sql,
            "ClientRequestToken": token,
            "QueryExecutionContext": {"Database": self.database, "Catalog": self.catalog},
            "ResultConfiguration": {"OutputLocation": self.output_location},
            "WorkGroup": self.workgroup,
        }
        if parameters:
            # The API takes strings only; a number in YAML would fail its type check.
            request["ExecutionParameters"] = [str(p) for p in parameters]
        return self.aws.client("athena").start_query_execution(**request)["QueryExecutionId"]

    def _find_orphan(self, sql: str, parameters: list[str] | None, since: float,
                     known: frozenset) -> str | None:
        """A query submitted around ``since`` whose id was never recorded.

        Athena does not tell which ClientRequestToken started a query, so it is matched by what
        was sent: text, database, workgroup, parameters, and submission time. Only the newest
        ``ORPHAN_SCAN`` queries of the workgroup are looked at; past them, the reused token is
        what keeps the query from running twice.
        """
        client = self.aws.client("athena")
        ids: list[str] = []
        # 50 is ListQueryExecutions' largest page; the scan relies on Athena listing the newest
        # executions first.
        request: dict[str, Any] = {"WorkGroup": self.workgroup, "MaxResults": 50}
        while len(ids) < ORPHAN_SCAN:
            page = client.list_query_executions(**request)
            ids.extend(page.get("QueryExecutionIds") or [])
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
        # Compared stripped and case-folded: the description need not echo whitespace or the
        # database's case as sent.
        sent = {"sql": sql.strip(), "database": self.database.lower(),
                "parameters": [str(p) for p in parameters or []]}
        candidates = []
        for query_id in ids[:ORPHAN_SCAN]:
            # The step's other statements are not orphans even when their text is the same (one
            # statement twice in a script).
            if query_id in known:
                continue
            description = self._describe(query_id)
            submitted = description.get("Status", {}).get("SubmissionDateTime")
            if submitted is not None and _sent(description) == sent:
                # botocore parses SubmissionDateTime into an aware datetime; timestamp() makes it
                # epoch seconds like the time.time() our record saved.
                candidates.append((query_id, submitted.timestamp()))
        return closest_submission(candidates, since)

    def _describe(self, query_id: str) -> dict[str, Any]:
        return self.aws.client("athena").get_query_execution(QueryExecutionId=query_id)[
            "QueryExecution"
        ]

    def _stop(self, query_id: str) -> None:
        self.aws.client("athena").stop_query_execution(QueryExecutionId=query_id)

    def _guard_while_running(self, description: dict[str, Any]) -> None:
        """Stop a running query as soon as its scanned bytes pass the cost guard."""
        # DataScannedInBytes grows while the query runs, so the guard stops it part-way instead of
        # after the whole scan is paid for.
        scanned = description.get("Statistics", {}).get("DataScannedInBytes") or 0
        if self.max_bytes_scanned is not None and scanned > self.max_bytes_scanned:
            raise StopRemote(
                CostGuardExceeded(
                    _guard_message(
                        description.get("QueryExecutionId", "?"),
                        scanned,
                        self.max_bytes_scanned,
                        "stopped",
                    )
                )
            )

    def _guard(self, info: dict[str, Any]) -> None:
        if self.max_bytes_scanned is not None and info["bytes_scanned"] > self.max_bytes_scanned:
            raise CostGuardExceeded(
                _guard_message(
                    info["id"], info["bytes_scanned"], self.max_bytes_scanned, "finished"
                )
            )

    def _results(self, query_id: str, keep: int) -> dict[str, Any]:
        """UpdateCount (rows written by INSERT/CTAS) and up to ``keep`` result rows."""
        page = self.aws.client("athena").get_query_results(
            # keep + 1: a SELECT's first row is its header (see _rows). One row when only
            # UpdateCount is wanted: the smallest page.
            QueryExecutionId=query_id, MaxResults=min(MAX_RESULT_ROWS, keep + 1) if keep else 1)
        out: dict[str, Any] = {}
        if page.get("UpdateCount") is not None:
            out["update_count"] = int(page["UpdateCount"])
        if keep:
            rows = _rows(page.get("ResultSet", {}))
            out["rows"] = rows[:keep]
            out["rows_truncated"] = len(rows) > keep or bool(page.get("NextToken"))
        return out


def _query_info(result: RemoteResult, sql: str) -> dict[str, Any]:
    d = result.description
    stats = d.get("Statistics", {})
    return {
        "id": result.remote_id,
        "state": "succeeded",
        "raw_state": result.raw_state,
        "reattached": result.reattached,
        "statement_type": d.get("StatementType"),
        # Capped: metrics are stored with every run and shown in reports; the routine has the full
        # text.
        "sql": sql if len(sql) <= 500 else sql[:500] + "…",
        "bytes_scanned": int(stats.get("DataScannedInBytes") or 0),
        "engine_ms": stats.get("EngineExecutionTimeInMillis"),
        "total_ms": stats.get("TotalExecutionTimeInMillis"),
        "output_location": d.get("ResultConfiguration", {}).get("OutputLocation"),
    }


def _sent(description: dict[str, Any]) -> dict[str, Any]:
    """What a described query was started with, in the form ``_find_orphan`` compares."""
    database = description.get("QueryExecutionContext", {}).get("Database", "")
    return {"sql": str(description.get("Query", "")).strip(), "database": str(database).lower(),
            "parameters": [str(p) for p in description.get("ExecutionParameters") or []]}


def _metrics(queries: list[dict[str, Any]]) -> TaskMetrics:
    counts = [q["update_count"] for q in queries if "update_count" in q]
    written = sum(counts) if counts else None
    return TaskMetrics(
        inserts=written,
        total_rows=written,
        execution_metadata={
            "engine": "athena",
            "queries": queries,
            "bytes_scanned": sum(q["bytes_scanned"] for q in queries),
        },
    )


def _rows(result_set: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows as dicts; Athena repeats the header as the first row of a SELECT result."""
    names = [
        c.get("Name") or c.get("Label")
        for c in result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
    ]
    rows = [
        [cell.get("VarCharValue") for cell in row.get("Data", [])]
        for row in result_set.get("Rows", [])
    ]
    if not names and rows:
        names, rows = [str(v) for v in rows[0]], rows[1:]
    elif rows and rows[0] == names:
        rows = rows[1:]
    return [dict(zip(names, row)) for row in rows]


def _reason(description: dict[str, Any]) -> str | None:
    status = description.get("Status", {})
    # AthenaError (message, category, type) is more precise than StateChangeReason when present;
    # moto sends neither, so both are optional.
    error = status.get("AthenaError") or {}
    reason = error.get("ErrorMessage") or status.get("StateChangeReason")
    if reason and error.get("ErrorType") is not None:
        reason += (
            f" (ErrorCategory {error.get('ErrorCategory')}, ErrorType {error.get('ErrorType')})"
        )
    # The query's start says which statement of a script failed.
    sql = " ".join(str(description.get("Query", "")).split())
    where = f"; query: {sql[:160]}" if sql else ""
    return (reason or "no reason given") + where


def _guard_message(query_id: str, scanned: int, limit: int, how: str) -> str:
    return (f"athena query {query_id} scanned {scanned} bytes, over max_bytes_scanned={limit} "
            f"(cost guard; query {how})")


def _partition_clause(partition: dict[str, Any]) -> str:
    # ALTER TABLE ADD PARTITION is Hive DDL: Hive's backslash-escaped literals, not Trino's.
    values = ", ".join(
        f"{spec.hive_name(k)} = {spec.hive_literal(v)}" for k, v in partition["values"].items()
    )
    clause = f"PARTITION ({values})"
    return clause + (
        f" LOCATION {spec.hive_literal(partition['location'])}" if partition.get("location") else ""
    )


# ---------------------------------------------------------------------- validation helpers

def _query_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    has_sql, has_file = args.get("sql") is not None, args.get("sql_file") is not None
    if has_sql == has_file:
        yield "sql", "give exactly one of sql and sql_file"
    if has_sql and not spec.split_statements(str(args["sql"])):
        yield "sql", "no SQL statement found"
    if args.get("parameters") and has_sql and len(spec.split_statements(str(args["sql"]))) > 1:
        yield "parameters", "parameters need exactly one statement"
    rows = args.get("result_rows", 0)
    # One place of the 1,000-row page goes to a SELECT's header row.
    if not isinstance(rows, int) or not 0 <= rows <= MAX_RESULT_ROWS - 1:
        yield "result_rows", (
            f"must be between 0 and {MAX_RESULT_ROWS - 1}; "
            "read larger results from the output location"
        )


def _create_table_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield from spec.table_spec_problems(args)


def _repair_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    problem = spec.qualified_problem(args.get("table"))
    if problem:
        yield "table", problem
    yield from spec.partition_problems(args.get("partitions"))


def _ctas_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield from _drop_problems(args)
    if not str(args.get("sql", "")).strip():
        yield "sql", "a SELECT is required"
    problem = spec.s3_problem(args.get("location"))
    if problem:
        yield "location", problem
    for i, column in enumerate(args.get("partitioned_by") or []):
        problem = spec.identifier_problem(column)
        if problem:
            yield f"partitioned_by[{i}]", problem


def _drop_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    problem = spec.qualified_problem(args.get("table"))
    if problem:
        yield "table", problem


@hookimpl
def register_executors() -> list[type]:
    return [AthenaExecutor]
