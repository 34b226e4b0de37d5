"""The Redshift executor, through the Redshift Data API (provisioned clusters or Serverless).

Statements are submitted with a deterministic ``ClientToken`` and their ids recorded, so a retry
re-attaches. Waiting uses the Data API's long polling (``WaitTimeSeconds`` on DescribeStatement)
when the installed SDK has it, and falls back to backoff when the server answers at once.
Rows affected (``ResultRows``) feed the metrics.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Any, Iterable, Iterator, Literal

from orchestrator.executor import Context, Location, TaskMetrics, task
from orchestrator.hookspecs import hookimpl

from .aws import tablespec as spec
from .aws.states import poll_loop, sdk
from .aws.clients import check_service, read_text
from .aws.executor import AwsExecutor
from .aws.inflight import RemoteOps

# Well under the clients' 60 s read timeout (clients.retry_config), so a held call is never
# taken for a lost answer and retried.
LONG_POLL_SECONDS = 10
COPY_FORMATS = {
    "csv": "FORMAT AS CSV",
    # 'auto' matches JSON keys and Avro fields to columns by name; without it COPY needs a
    # JSONPaths file.
    "json": "FORMAT AS JSON 'auto'",
    "parquet": "FORMAT AS PARQUET",
    "orc": "FORMAT AS ORC",
    "avro": "FORMAT AS AVRO 'auto'",
}
# UNLOAD writes fewer formats than COPY reads: no ORC or Avro.
UNLOAD_FORMATS = {"csv": "FORMAT AS CSV", "json": "FORMAT AS JSON", "parquet": "FORMAT AS PARQUET"}


class RedshiftExecutor(AwsExecutor):
    """Run SQL, COPY, UNLOAD and CREATE TABLE through the Data API;
    rows affected go into the metrics."""

    name = "redshift"
    service = "redshift-data"

    def __init__(
        self,
        database: Annotated[str, "Database name"],
        cluster_identifier: Annotated[
            str | None, "Provisioned cluster (with db_user or secret_arn)"
        ] = None,
        db_user: Annotated[str | None, "Database user (temporary credentials)"] = None,
        secret_arn: Annotated[str | None, "Secrets Manager ARN with the credentials"] = None,
        workgroup_name: Annotated[str | None, "Redshift Serverless workgroup"] = None,
        region: Annotated[str | None, "AWS region; default from the environment"] = None,
    ) -> None:
        self.database = database
        self.cluster_identifier = cluster_identifier
        self.db_user = db_user
        self.secret_arn = secret_arn
        self.workgroup_name = workgroup_name
        self._aws_setup(region)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        cluster, workgroup = params.get("cluster_identifier"), params.get("workgroup_name")
        if bool(cluster) == bool(workgroup):
            yield "cluster_identifier", (
                "give exactly one of cluster_identifier (provisioned) "
                "and workgroup_name (Serverless)"
            )
        if cluster and not (params.get("db_user") or params.get("secret_arn")):
            yield "db_user", "a provisioned cluster needs db_user or secret_arn"
        if params.get("db_user") and params.get("secret_arn"):
            yield "secret_arn", "give db_user or secret_arn, not both"

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        checks = {
            "run_sql": _sql_problems,
            "copy_from_s3": _copy_problems,
            "unload_to_s3": _unload_problems,
            "create_table": _create_problems,
        }
        return checks.get(task, lambda a: iter(()))(args)

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        """``run_sql`` (inline SQL: one statement, or several as one transaction) and
        ``copy_from_s3`` → ExecuteStatement / BatchExecuteStatement, then DescribeStatement with
        growing waits until FINISHED (FAILED or ABORTED fail, with Redshift's error). Others, and
        several statements outside a transaction (run one by one), run in the Lambda."""
        target = {"Database": params["database"]}
        for field, param in (("ClusterIdentifier", "cluster_identifier"), ("DbUser", "db_user"),
                             ("SecretArn", "secret_arn"), ("WorkgroupName", "workgroup_name")):
            if params.get(param):
                target[field] = params[param]
        if task == "run_sql" and args.get("sql") is not None:
            statements = spec.split_statements(args["sql"], "redshift")
        elif task == "copy_from_s3":
            return _copy_state(target, args)
        else:
            return None
        if len(statements) == 1:
            request = {**target, "Sql": statements[0]}
            if args.get("parameters"):
                # Parameter values are strings in the Data API (Redshift casts them); a YAML number
                # would fail the request's type check.
                request["Parameters"] = [{"name": str(k), "value": str(v)}
                                         for k, v in args["parameters"].items()]
            action = "executeStatement"
        elif args.get("transaction"):
            request, action = {**target, "Sqls": statements}, "batchExecuteStatement"
        else:
            return None
        return _statement_loop(action, request)

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Any:
        """What the task reads and writes, for lineage events (``executors/lineage.py``)."""
        from . import lineage

        return lineage.redshift(task, args, params)

    def check(self) -> list[str]:
        """Describing an unknown statement proves endpoint,
        credentials and permission without touching a cluster."""
        probe = "00000000-0000-4000-8000-000000000000"
        return check_service(self.aws, "redshift-data", lambda c: c.describe_statement(Id=probe),
                             ok_codes=("ResourceNotFoundException", "ValidationException"))

    # ------------------------------------------------------------------ tasks

    @task
    def run_sql(
        self,
        context: Context,
        sql: Annotated[str | None, "One or several statements separated by ;"] = None,
        sql_file: Annotated[Location | None, "A .sql file (local or s3://) instead of sql"] = None,
        parameters: Annotated[dict | None, "Named :parameters (single statement)"] = None,
        transaction: Annotated[
            bool, "Run several statements as one transaction (BatchExecuteStatement)"
        ] = False,
    ) -> TaskMetrics:
        """Run the statements; in one transaction they all land or none does."""
        # Counted before reading sql_file can fail: a retry must find the count this attempt made
        # (see AthenaExecutor.run_query).
        key = self.call_key(context)
        statements = spec.split_statements(
            sql if sql is not None else read_text(str(sql_file), self.aws), "redshift"
        )
        if not statements:
            raise ValueError("no SQL statement to run")
        if parameters and len(statements) > 1:
            raise ValueError("parameters need exactly one statement")
        # One BatchExecuteStatement runs its statements as one transaction. Otherwise each statement
        # has its own record, so a retry re-attaches to the finished ones and goes on from there.
        if transaction and len(statements) > 1:
            return _metrics([self._run(context, key, 0, statements, None)])
        return _metrics(
            [self._run(context, key, i, [s], parameters) for i, s in enumerate(statements)]
        )

    @task
    def copy_from_s3(
        self,
        context: Context,
        table: Annotated[str, "Target table (or schema.table)"],
        s3_path: Annotated[str, "s3:// prefix or manifest to load"],
        iam_role: Annotated[str, "IAM role ARN Redshift assumes to read S3"],
        format: Annotated[
            Literal["csv", "json", "parquet", "orc", "avro"], "Source format"
        ] = "csv",
        options: Annotated[
            list[str] | None, "Extra COPY options, e.g. IGNOREHEADER 1, TIMEFORMAT 'auto'"
        ] = None,
        columns: Annotated[list[str] | None, "Target column list"] = None,
    ) -> TaskMetrics:
        """COPY from S3; rows loaded are reported as inserts."""
        key = self.call_key(context)
        sql = _copy_sql(table, s3_path, iam_role, format, options, columns)
        return _metrics([self._run(context, key, 0, [sql], None)], inserted=True)

    @task
    def unload_to_s3(
        self,
        context: Context,
        sql: Annotated[str, "The SELECT to unload"],
        s3_path: Annotated[str, "s3:// prefix for the output files"],
        iam_role: Annotated[str, "IAM role ARN Redshift assumes to write S3"],
        format: Annotated[Literal["csv", "json", "parquet"], "Output format"] = "parquet",
        options: Annotated[
            list[str] | None, "Extra UNLOAD options, e.g. PARTITION BY (dt), ALLOWOVERWRITE"
        ] = None,
    ) -> TaskMetrics:
        """UNLOAD a query's result to S3."""
        key = self.call_key(context)
        # The SELECT goes in as a string literal, with its quotes and backslashes escaped.
        statement = (
            f"UNLOAD ({spec.redshift_literal(sql.strip().rstrip(';'))}) "
            f"TO {spec.redshift_literal(s3_path)} "
            f"IAM_ROLE {spec.redshift_literal(_checked_role(iam_role))} {UNLOAD_FORMATS[format]}"
        )
        # Options are appended as written; validation kept ';' and comments out of them
        # (_option_problems), so they cannot end the statement.
        statement += "".join(f" {option}" for option in options or [])
        return _metrics([self._run(context, key, 0, [statement], None)])

    @task
    def create_table(
        self,
        context: Context,
        table: Annotated[str, "Table name (or schema.table)"],
        columns: Annotated[list[dict], "[{name, type}] with Redshift types"],
        if_not_exists: Annotated[bool, "Do nothing if the table exists"] = True,
        distkey: Annotated[str | None, "Distribution key column"] = None,
        sortkey: Annotated[list[str] | None, "Sort key columns"] = None,
    ) -> TaskMetrics:
        """CREATE TABLE rendered from a validated spec."""
        key = self.call_key(context)
        body = ",\n".join(
            f"  {spec.sql_name(c['name'])} {c['type'].strip().upper()}" for c in columns
        )
        sql = (
            f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{spec.sql_name(table)} "
            f"(\n{body}\n)"
        )
        if distkey:
            sql += f" DISTKEY({spec.sql_name(distkey)})"
        if sortkey:
            sql += f" SORTKEY({', '.join(spec.sql_name(c) for c in sortkey)})"
        return _metrics([self._run(context, key, 0, [sql], None)])

    # ------------------------------------------------------------------ statements

    def _target(self) -> dict[str, str]:
        target = {"Database": self.database}
        for field, value in (
            ("ClusterIdentifier", self.cluster_identifier),
            ("DbUser", self.db_user),
            ("SecretArn", self.secret_arn),
            ("WorkgroupName", self.workgroup_name),
        ):
            # Only what is set: the Data API refuses a cluster and a workgroup together, or a user
            # and a secret.
            if value:
                target[field] = value
        return target

    def _run(
        self, context: Context, key: str, index: int, sqls: list[str], parameters: dict | None
    ) -> dict[str, Any]:
        # The target is part of the digest: the same SQL on another cluster or database is other
        # work.
        record = self.record(context, key, f"s{index}", sqls, parameters, self._target())
        def find_orphan(token: str, since: float, known: frozenset) -> str | None:
            return self._find_orphan(token, known)

        def submit(token: str) -> str:
            return self._submit(sqls, parameters, token)

        result = self.remote_work(self._ops(), record, context).run(submit, find_orphan=find_orphan)
        d = result.description
        info = {
            "id": result.remote_id,
            "state": "succeeded",
            "raw_state": result.raw_state,
            "reattached": result.reattached,
            "sql": _short("; ".join(sqls)),
            "result_rows": _rows(d.get("ResultRows")),
            "has_result_set": d.get("HasResultSet"),
            "duration_ms": _ms(d.get("Duration")),
        }
        if d.get("SubStatements"):
            info["sub_statements"] = [
                {
                    "id": s.get("Id"),
                    "raw_state": s.get("Status"),
                    "result_rows": _rows(s.get("ResultRows")),
                }
                for s in d["SubStatements"]
            ]
        context.logger.info(
            "redshift statement %s %s: %s rows",
            result.remote_id,
            result.raw_state,
            info["result_rows"],
        )
        return info

    def _submit(self, sqls: list[str], parameters: dict | None, token: str) -> str:
        client = self.aws.client("redshift-data")
        # ClientToken cannot be searched for; the name derived from it can (_find_orphan).
        request: dict[str, Any] = {**self._target(), "ClientToken": token,
                                   "StatementName": statement_name(token)}
        if len(sqls) > 1:
            return client.batch_execute_statement(Sqls=sqls, **request)["Id"]
        if parameters:
            request["Parameters"] = [
                {"name": str(k), "value": str(v)} for k, v in parameters.items()
            ]
        return client.execute_statement(Sql=sqls[0], **request)["Id"]

    def _find_orphan(self, token: str, known: frozenset) -> str | None:
        """The statement submitted with ``token`` whose id was never recorded, found by the name it
        was given (the Data API lists no statements by ClientToken); the first if several."""
        name = statement_name(token)
        client = self.aws.client("redshift-data")
        # Any status: a lost submission may have finished, failed or still be queued. moto has no
        # ListStatements; there the look-up fails, is logged, and the reused token is the only
        # guard.
        page = client.list_statements(StatementName=name, Status="ALL", MaxResults=100)
        found = [s for s in page.get("Statements") or []
                 if s.get("StatementName") == name and s.get("Id") not in known]
        # The earliest is the lost submission; any later one is a retry of it.
        found.sort(key=lambda s: str(s.get("CreatedAt") or ""))
        return found[0]["Id"] if found else None

    def _ops(self) -> RemoteOps:
        client = self.aws.client("redshift-data")
        # Asked once per ops: the answer depends only on the installed botocore.
        long_poll = _supports_long_poll(client)

        def describe(statement_id: str) -> dict[str, Any]:
            extra = {"WaitTimeSeconds": LONG_POLL_SECONDS} if long_poll else {}
            return client.describe_statement(Id=statement_id, **extra)

        return RemoteOps(
            engine="redshift",
            what="statement",
            describe=describe,
            state_of=lambda d: d.get("Status"),
            reason_of=_reason,
            stop=lambda statement_id: client.cancel_statement(Id=statement_id),
            long_poll=LONG_POLL_SECONDS if long_poll else 0.0,
        )


def statement_name(token: str) -> str:
    """The StatementName a statement is submitted with: how a lost submission is found again."""
    return f"orchestrator-{token}"


def _statement_loop(action: str, request: dict[str, Any]) -> dict[str, Any]:
    """Submit, then DescribeStatement with growing waits; CancelStatement when it times out."""
    return poll_loop(
        engine="redshift",
        submit={"Type": "Task", "Resource": sdk("redshiftdata", action), "Parameters": request},
        submit_id="$.Id",
        describe={"Type": "Task", "Resource": sdk("redshiftdata", "describeStatement"),
                  "Parameters": {}},
        id_field="Id", status="$.Status", succeeded=["FINISHED"], failed=["FAILED", "ABORTED"],
        reason="$.Error",
        stop={"Type": "Task", "Resource": sdk("redshiftdata", "cancelStatement"),
              "Parameters": {}})


def _copy_state(target: dict[str, Any], args: dict[str, Any]) -> dict[str, Any] | None:
    """COPY as a loop. A ``${params.X}``/``${run.X}`` in ``s3_path`` is escaped by Step Functions
    itself, as ``redshift_literal`` does here: a JSONata state doubles backslashes and quotes of the
    execution's value before the SQL is put together. References anywhere else (table, role,
    columns, options: names and SQL fragments that are checked, not escaped) run in the Lambda,
    which checks them at run time."""
    from orchestrator.stepfunctions.references import (has_runtime_reference,
                                                       jsonata_redshift_literal, jsonata_string)

    others = {k: v for k, v in args.items() if k != "s3_path"}
    if any(has_runtime_reference(text) for text in _texts(others)):
        return None
    path = str(args["s3_path"])
    marker = "s3://orchestrator-copy-source/"  # stands for the literal while the SQL is built
    try:
        sql = _copy_sql(args["table"], marker if has_runtime_reference(path) else path,
                        args["iam_role"], args.get("format", "csv"), args.get("options"),
                        args.get("columns"))
    except ValueError:  # checked when the Lambda runs it
        return None
    if not has_runtime_reference(path):
        return _statement_loop("executeStatement", {**target, "Sql": sql})
    before, _, after = sql.partition(spec.redshift_literal(marker))
    # A JSON string is a JSONata string literal, so the fixed SQL around the marker is embedded
    # with json.dumps; & concatenates it with the escaped value.
    expression = " & ".join([json.dumps(before),
                             jsonata_redshift_literal(jsonata_string(path)), json.dumps(after)])
    fragment = _statement_loop("executeStatement", {**target, "Sql.$": "$.copy.sql"})
    # A JSONata state in a JSONPath state machine (each state picks its query language): the
    # escaping needs string replacement, which JSONPath's intrinsic functions lack.
    fragment["States"]["Quote values"] = {
        "Type": "Pass", "QueryLanguage": "JSONata", "Next": "Submit",
        "Output": "{% $merge([$states.input, {\"copy\": {\"sql\": " + expression + "}}]) %}"}
    fragment["StartAt"] = "Quote values"
    return fragment


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _copy_sql(table: str, s3_path: str, iam_role: str, format: str = "csv",
              options: list[str] | None = None, columns: list[str] | None = None) -> str:
    cols = f" ({', '.join(spec.sql_name(c) for c in columns)})" if columns else ""
    sql = (f"COPY {spec.sql_name(table)}{cols} FROM {spec.redshift_literal(s3_path)} "
           f"IAM_ROLE {spec.redshift_literal(_checked_role(iam_role))} {COPY_FORMATS[format]}")
    return sql + "".join(f" {option}" for option in options or [])


def _supports_long_poll(client: Any) -> bool:
    """Whether this botocore's model has DescribeStatement.WaitTimeSeconds (newer SDKs only)."""
    # An older botocore rejects an unknown parameter in its own validation before sending, so the
    # model is asked rather than the call tried.
    shape = client.meta.service_model.operation_model("DescribeStatement").input_shape
    return "WaitTimeSeconds" in shape.members


def _reason(description: dict[str, Any]) -> str | None:
    error = description.get("Error")
    # A batch reports errors per sub-statement: each is kept so the failing one is named.
    for sub in description.get("SubStatements") or []:
        if sub.get("Error"):
            error = f"{error or ''} (statement {sub.get('Id')}: {sub['Error']})".strip()
    sql = " ".join(str(description.get("QueryString", "")).split())
    return (error or "no reason given") + (f"; statement: {sql[:160]}" if sql else "")


def _rows(value: Any) -> int | None:
    # The Data API answers -1 for "no count" (DDL, say); that is unknown, not minus one row.
    return int(value) if isinstance(value, int) and value >= 0 else None


def _ms(nanoseconds: Any) -> float | None:
    return (
        round(nanoseconds / 1e6, 3) if isinstance(nanoseconds, int) and nanoseconds >= 0 else None
    )


def _short(sql: str) -> str:
    return sql if len(sql) <= 500 else sql[:500] + "…"


def _metrics(statements: list[dict[str, Any]], inserted: bool = False) -> TaskMetrics:
    # A SELECT's ResultRows counts rows returned, not written: only statements without a result
    # set add to the rows.
    counts = [
        s["result_rows"]
        for s in statements
        if s["result_rows"] is not None and not s.get("has_result_set")
    ]
    total = sum(counts) if counts else None
    return TaskMetrics(inserts=total if inserted else None, total_rows=total,
                       execution_metadata={"engine": "redshift", "statements": statements})


# ---------------------------------------------------------------------- validation helpers

def _sql_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    has_sql, has_file = args.get("sql") is not None, args.get("sql_file") is not None
    if has_sql == has_file:
        yield "sql", "give exactly one of sql and sql_file"
    elif has_sql and not spec.split_statements(str(args["sql"]), "redshift"):
        yield "sql", "no SQL statement found"
    elif (
        has_sql
        and args.get("parameters")
        and len(spec.split_statements(str(args["sql"]), "redshift")) > 1
    ):
        yield "parameters", "parameters need exactly one statement"


def _s3_and_role(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    problem = spec.s3_problem(args.get("s3_path"), "s3_path")
    if problem:
        yield "s3_path", problem
    problem = spec.iam_role_problem(args.get("iam_role"))
    if problem:
        yield "iam_role", problem


def _checked_role(iam_role: str) -> str:
    """The role ARN, re-checked at run time (validation may have been skipped):
    it is pasted into SQL."""
    problem = spec.iam_role_problem(iam_role)
    if problem:
        raise spec.SpecError(problem)
    return iam_role


def _copy_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    problem = spec.qualified_problem(args.get("table"))
    if problem:
        yield "table", problem
    yield from _s3_and_role(args)
    yield from _option_problems(args)
    for i, column in enumerate(args.get("columns") or []):
        if spec.identifier_problem(column):
            yield f"columns[{i}]", spec.identifier_problem(column) or ""


def _unload_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if not str(args.get("sql", "")).strip():
        yield "sql", "a SELECT is required"
    yield from _s3_and_role(args)
    yield from _option_problems(args)


# A quoted literal may hold ';' or '--' harmlessly, so literals are blanked before the check;
# backslash escapes count, since Redshift reads them.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'")


def _option_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """COPY/UNLOAD options are SQL fragments: one option each,
    so no statement end or comment outside quotes."""
    for i, option in enumerate(args.get("options") or []):
        bare = _QUOTED.sub("''", str(option))
        if any(mark in bare for mark in (";", "--", "/*")):
            yield f"options[{i}]", (
                f"{option!r}: an option may not contain ';', '--' or '/*' outside quotes"
            )


def _create_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    problem = spec.qualified_problem(args.get("table"))
    if problem:
        yield "table", problem
    yield from spec.column_problems(args.get("columns"), "redshift")
    names = {c.get("name") for c in args.get("columns") or [] if isinstance(c, dict)}
    for field, values in (
        ("distkey", [args.get("distkey")] if args.get("distkey") else []),
        ("sortkey", args.get("sortkey") or []),
    ):
        for value in values:
            # Otherwise Redshift would only refuse the key when the task runs.
            if value not in names:
                yield field, f"{value!r} is not one of the columns"


@hookimpl
def register_executors() -> list[type]:
    return [RedshiftExecutor]
