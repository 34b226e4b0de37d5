"""The Glue executor: job runs and crawlers that are waited for, followed in the log, stopped for
real.

A job run is started with an ``--orchestrator_run_token`` argument and its id is recorded at
once, so a retry re-attaches to a run that is still going (or already succeeded) instead of
loading the data twice. While it runs, its CloudWatch output and error streams are copied into
the task's log.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Iterable, Iterator, Literal

from orchestrator.events import SUCCEEDED
from orchestrator.executor import Context, TaskMetrics, task
from orchestrator.hookspecs import hookimpl

from .aws import tablespec as spec
from .aws.states import poll_loop, sdk, sync_task
from .aws.clients import check_service, error_code, transient
from .aws.executor import AwsExecutor
from .aws.inflight import RemoteOps
from .aws.outcomes import RemoteCancelled, RemoteJobError, outcome
from .aws.polling import Backoff, wait_for

# A job argument is the only thing we send that GetJobRuns gives back with each run, so it
# carries the token StartJobRun itself has no field for.
TOKEN_ARG = "--orchestrator_run_token"
DEFAULT_LOG_GROUP = "/aws-glue/jobs"
# The newest runs of the job: a lost start of ours is among them unless 50 others started
# since.
LIVE_LOOKUP_RUNS = 50
# Our own retries of StartJobRun (botocore's are off for it), each after a look-up by token.
START_ATTEMPTS = 4
WorkerType = Literal["Standard", "G.1X", "G.2X", "G.4X", "G.8X", "G.025X", "Z.2X"]


class GlueExecutor(AwsExecutor):
    """Run Glue jobs and crawlers; manage Data Catalog databases and tables
    from declarative specs."""

    name = "glue"
    service = "glue"

    def __init__(
        self,
        catalog_id: Annotated[str | None, "Data Catalog id (account); default the caller's"] = None,
        region: Annotated[str | None, "AWS region; default from the environment"] = None,
    ) -> None:
        self.catalog_id = catalog_id
        self._aws_setup(region)

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        if task == "run_job":
            yield from _job_problems(args)
        elif task in ("create_table", "update_table"):
            if spec.identifier_problem(args.get("database")):
                yield "database", spec.identifier_problem(args.get("database")) or ""
            yield from spec.table_spec_problems(args)
        elif task == "create_database" and spec.identifier_problem(args.get("database")):
            yield "database", spec.identifier_problem(args.get("database")) or ""

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        """``run_job`` → ``glue:startJobRun.sync``; ``run_crawler`` → start, then poll GetCrawler
        with growing waits until the crawler is READY again, failing unless its last crawl
        SUCCEEDED. Catalog tasks (databases, tables) run in the Lambda."""
        if task == "run_job":
            request: dict[str, Any] = {"JobName": args["job_name"]}
            if args.get("arguments"):
                # Job arguments are a map of strings; YAML numbers and booleans go as text.
                request["Arguments"] = {str(k): str(v) for k, v in args["arguments"].items()}
            for field, arg in (
                ("WorkerType", "worker_type"),
                ("NumberOfWorkers", "number_of_workers"),
                ("Timeout", "timeout"),
            ):
                if args.get(arg) is not None:
                    request[field] = args[arg]
            return sync_task("arn:aws:states:::glue:startJobRun.sync", request)
        if task == "run_crawler":
            name = args["crawler_name"]
            ready = {"Variable": "$.seen.state", "StringEquals": "READY"}
            return poll_loop(
                engine="glue-crawler",
                submit={"Type": "Task", "Resource": sdk("glue", "startCrawler"),
                        "Parameters": {"Name": name}},
                describe={"Type": "Task", "Resource": sdk("glue", "getCrawler"),
                          "Parameters": {"Name": name}},
                id_field="Name", seen={"state.$": "$.Crawler.State", "crawler.$": "$.Crawler"},
                # READY with any other last status (FAILED, CANCELLED) fails; READY without a
                # LastCrawl keeps polling, as no crawl has ended yet.
                rules=[{"And": [ready, {"Variable": "$.seen.crawler.LastCrawl.Status",
                                        "StringEquals": "SUCCEEDED"}], "Next": "Succeeded"},
                       {"And": [ready, {"Variable": "$.seen.crawler.LastCrawl.Status",
                                        "IsPresent": True}], "Next": "Failed"}],
                reason="$.Crawler.LastCrawl.ErrorMessage",
                stop={"Type": "Task", "Resource": sdk("glue", "stopCrawler"),
                      "Parameters": {"Name": name}})
        return None

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Any:
        """What the task reads and writes, for lineage events (``executors/lineage.py``)."""
        from . import lineage

        return lineage.glue(task, args, params)

    def check(self) -> list[str]:
        return check_service(
            self.aws, "glue", lambda c: c.get_databases(MaxResults=1, **self._catalog())
        )

    # ------------------------------------------------------------------ jobs

    @task
    def run_job(
        self,
        context: Context,
        job_name: Annotated[str, "The Glue job to run"],
        arguments: Annotated[dict | None, "Job arguments (--key: value)"] = None,
        worker_type: Annotated[WorkerType | None, "Worker type"] = None,
        number_of_workers: Annotated[int | None, "Number of workers"] = None,
        timeout: Annotated[int | None, "Glue's own run timeout, in minutes"] = None,
        follow_logs: Annotated[
            bool, "Copy the run's CloudWatch output/error streams into the task log"
        ] = True,
        log_group: Annotated[
            str | None, "Log group prefix; default the run's LogGroupName or /aws-glue/jobs"
        ] = None,
    ) -> TaskMetrics:
        """Start (or re-attach to) a job run and wait for it; failures carry Glue's ErrorMessage."""
        key = self.call_key(context)
        # Job arguments are a map of strings; stringified before the digest so that 1 and "1" are
        # the same call, as they are for Glue.
        args = {str(k): str(v) for k, v in (arguments or {}).items()}
        record = self.record(
            context, key, "run", job_name, args, worker_type, number_of_workers, timeout
        )
        follower = _LogFollower(self.aws, context, log_group) if follow_logs else None

        def submit(token: str) -> str:
            request: dict[str, Any] = {"JobName": job_name, "Arguments": {**args, TOKEN_ARG: token}}
            for field, value in (
                ("WorkerType", worker_type),
                ("NumberOfWorkers", number_of_workers),
                ("Timeout", timeout),
            ):
                if value is not None:
                    request[field] = value
            return self._start_once(request, token, context)

        work = self.remote_work(self._job_ops(job_name), record, context)
        try:
            result = work.run(submit, find_live=lambda token: self._find_live(job_name, token),
                              on_poll=follower.poll if follower else None)
        except (RemoteJobError, RemoteCancelled):
            # The last lines (often the error) are written as the run ends, after the last poll:
            # drain once more whatever the outcome.
            if follower:
                follower.drain()
            raise
        if follower:
            follower.drain()
        return _job_metrics(job_name, result.description, result.reattached, follower)

    def _job_ops(self, job_name: str) -> RemoteOps:
        glue = self.aws.client

        def stop(run_id: str) -> None:
            errors = (
                glue("glue").batch_stop_job_run(JobName=job_name, JobRunIds=[run_id]).get("Errors")
                or []
            )
            # BatchStopJobRun answers HTTP 200 and lists per-run failures in Errors; unchecked, a
            # stop that did nothing would look delivered. (moto lacks the operation; tests shim it.)
            if errors:
                raise RuntimeError(
                    f"BatchStopJobRun {run_id}: {errors[0].get('ErrorDetail', errors[0])}"
                )

        return RemoteOps(
            engine="glue",
            what=f"job {job_name} run",
            describe=lambda run_id: glue("glue").get_job_run(JobName=job_name, RunId=run_id)[
                "JobRun"
            ],
            state_of=lambda run: run.get("JobRunState"),
            reason_of=lambda run: run.get("ErrorMessage") or run.get("StateDetail"),
            stop=stop,
        )

    def _start_once(self, request: dict[str, Any], token: str, context: Context) -> str:
        """StartJobRun has no idempotency token, so botocore must not retry it blindly: a lost reply
        would start a second run. After any failed attempt, look for our run by token first."""
        client = self.aws.client("glue", total_attempts=1)
        for attempt in range(START_ATTEMPTS):
            try:
                return client.start_job_run(**request)["JobRunId"]
            except Exception as exc:
                # The failure may be a lost reply to a start that worked: look for our token before
                # trying again. A look-up that fails too counts as "not found"; the start's own
                # error decides.
                found = self._quiet_find(request["JobName"], token)
                if found:
                    context.logger.info(
                        "glue StartJobRun answer lost (%s); found our run %s", exc, found
                    )
                    return found
                if attempt == START_ATTEMPTS - 1 or not transient(exc):
                    raise
                # 0.5, 1, 2 s between starts (throttling needs backoff); the wait ends early on
                # cancel.
                if context.wait(min(8.0, 0.5 * 2 ** attempt)):
                    context.check_cancelled()
        # The last attempt returns or raises; this line is for the type checker.
        raise AssertionError("unreachable")

    def _quiet_find(self, job_name: str, token: str) -> str | None:
        try:
            return self._find_live(job_name, token)
        except Exception:
            return None

    def _find_live(self, job_name: str, token: str) -> str | None:
        """A run an earlier attempt started but could not record: same token, not failed."""
        runs = (
            self.aws.client("glue")
            .get_job_runs(JobName=job_name, MaxResults=LIVE_LOOKUP_RUNS)
            .get("JobRuns", [])
        )
        for run in runs:
            # Live or succeeded only: a run of ours that failed or was stopped is history, and
            # RemoteWork starts the next one under a new generation's token.
            if (run.get("Arguments") or {}).get(TOKEN_ARG) == token and outcome(
                "glue", run.get("JobRunState")
            ) in (None, SUCCEEDED):
                return run["Id"]
        return None

    # ------------------------------------------------------------------ crawlers

    @task
    def run_crawler(
        self,
        context: Context,
        crawler_name: Annotated[str, "The crawler to run"],
        max_wait: Annotated[
            int, "Give up waiting after this many seconds (the crawl keeps going)"
        ] = 6
        * 3600,
    ) -> TaskMetrics:
        """Start a crawl and wait for it; a crawl already running is waited for instead of failing.

        A crawler that is STOPPING is not joined (that crawl ends CANCELLED): we wait until it is
        READY and start ours. Our crawl is recognised by its LastCrawl (StartTime, MessagePrefix)
        differing from the one seen before starting, never by comparing clocks.
        """
        deadline = time.monotonic() + max_wait
        before, joined = self._start_crawl(crawler_name, context, deadline)
        if joined:
            context.logger.info(
                "glue crawler %s is already running; waiting for that crawl", crawler_name
            )
        glue = self.aws.client("glue")
        ops = RemoteOps(engine="glue-crawler", what="crawler", describe=self._crawler,
                        state_of=lambda c: _crawl_state(c, before, joined),
                        reason_of=lambda c: (c.get("LastCrawl") or {}).get("ErrorMessage"),
                        stop=lambda name: glue.stop_crawler(Name=name))
        crawler = self._wait_crawler(ops, crawler_name, context, deadline)
        last = crawler.get("LastCrawl") or {}
        return TaskMetrics(
            execution_metadata={
                "engine": "glue",
                "crawler": crawler_name,
                "state": "succeeded",
                "raw_state": last.get("Status"),
                "joined_running_crawl": joined,
                "elapsed_ms": crawler.get("CrawlElapsedTime"),
                "log_group": last.get("LogGroup"),
                "log_stream": last.get("LogStream"),
            }
        )

    def _start_crawl(
        self, name: str, context: Context, deadline: float
    ) -> tuple[tuple[Any, Any] | None, bool]:
        """Start a crawl (or join a RUNNING one); returns the LastCrawl marker seen before
        starting, and joined."""
        glue = self.aws.client("glue")
        for _ in range(START_ATTEMPTS):
            crawler = self._crawler(name)
            if crawler.get("State") == "STOPPING":
                context.logger.info(
                    "glue crawler %s is stopping; waiting until it is READY to start a crawl", name
                )
                crawler = self._wait_until(
                    name, lambda c: c.get("State") != "STOPPING", context, deadline
                )
            # Joined rather than refused: a crawler runs one crawl at a time, and StartCrawler
            # fails with CrawlerRunningException until that crawl ends.
            if crawler.get("State") == "RUNNING":
                return _crawl_marker(crawler), True
            before = _crawl_marker(crawler)
            try:
                glue.start_crawler(Name=name)
                return before, False
            except Exception as exc:
                # Someone started a crawl between our GetCrawler and StartCrawler: look again (and
                # join it).
                if error_code(exc) != "CrawlerRunningException":
                    raise
                context.logger.info(
                    "glue crawler %s was started or stopped by someone else; looking again", name
                )
        raise RuntimeError(
            f"glue crawler {name}: could not start a crawl (its state kept changing)"
        )

    def _wait_until(
        self, name: str, done: Any, context: Context, deadline: float
    ) -> dict[str, Any]:
        try:
            return wait_for(lambda: self._crawler(name), done, context, deadline=deadline)
        except TimeoutError as exc:
            raise TimeoutError(f"glue crawler {name}: {exc}") from None

    def _crawler(self, name: str) -> dict[str, Any]:
        return self.aws.client("glue").get_crawler(Name=name)["Crawler"]

    def _wait_crawler(
        self, ops: RemoteOps, name: str, context: Context, deadline: float
    ) -> dict[str, Any]:
        from orchestrator.executor import Cancelled

        # Not RemoteWork: a crawl has no id of its own and no record; the crawler's name stands for
        # it, and a retry joins the crawl that is running instead of re-attaching by record.
        self._inflight.add(ops, name)
        try:
            crawler = self._wait_until(
                name, lambda c: ops.state_of(c) is not None, context, deadline
            )
        except Cancelled:
            # Only a cancel stops the crawl: a max_wait timeout passes through and leaves it
            # running, as max_wait promises.
            self._inflight.stop(ops, name)
            try:
                final = wait_for(
                    lambda: self._crawler(name),
                    # A stopped crawler stays STOPPING for a while; READY (LastCrawl CANCELLED)
                    # means it is done. 6 s as for other remote work (work.STOP_CONFIRM_SECONDS).
                    lambda c: c.get("State") == "READY",
                    None,
                    deadline=time.monotonic() + 6,
                    backoff=Backoff(first=0.2, ratio=0.5, cap=1.0),
                )
                state = (final.get("LastCrawl") or {}).get("Status")
            except Exception as exc:
                context.logger.warning("glue crawler %s: stop not confirmed: %s", name, exc)
                state = None
            raise RemoteCancelled("glue", "crawler", name, state) from None
        finally:
            self._inflight.discard(ops, name)
        state = ops.state_of(crawler)
        if outcome("glue-crawler", state) != SUCCEEDED:
            raise RemoteJobError("glue", "crawler", name, state or "?", ops.reason_of(crawler))
        return crawler

    # ------------------------------------------------------------------ catalog

    @task
    def create_database(
        self,
        database: Annotated[str, "Database name"],
        description: Annotated[str | None, "Description"] = None,
        location_uri: Annotated[str | None, "Default s3:// location"] = None,
    ) -> TaskMetrics:
        """Create the database unless it exists."""
        body: dict[str, Any] = {"Name": database}
        if description:
            body["Description"] = description
        if location_uri:
            body["LocationUri"] = location_uri
        try:
            # Create, and take AlreadyExists as done: a look-then-create would race with another run
            # creating the same database between the two calls.
            self.aws.client("glue").create_database(DatabaseInput=body, **self._catalog())
            created = True
        except Exception as exc:
            if error_code(exc) != "AlreadyExistsException":
                raise
            created = False
        return TaskMetrics(
            execution_metadata={"engine": "glue", "database": database, "created": created}
        )

    @task
    def create_table(
        self,
        database: Annotated[str, "Database of the table"],
        table: Annotated[str, "Table name"],
        columns: Annotated[list[dict], "[{name, type, comment?}] with Hive types"],
        location: Annotated[str, "s3:// prefix of the table's files"],
        format: Annotated[Literal["csv", "json", "parquet"], "File format"] = "parquet",
        partition_keys: Annotated[list[dict] | None, "[{name, type}] partition columns"] = None,
        serde_properties: Annotated[dict | None, "SerDe parameters"] = None,
        table_properties: Annotated[dict | None, "Table parameters"] = None,
        skip_header: Annotated[bool, "CSV: skip the header line"] = False,
        comment: Annotated[str | None, "Table description"] = None,
        if_exists: Annotated[Literal["update", "skip", "fail"], "When the table exists"] = "update",
    ) -> TaskMetrics:
        """Create a catalog table from a spec (or update/skip/fail when it exists)."""
        # locals() is exactly the task's arguments here (nothing else is assigned yet); keep this
        # the first line.
        table_input = _table_input(locals())
        glue = self.aws.client("glue")
        try:
            glue.create_table(DatabaseName=database, TableInput=table_input, **self._catalog())
            action = "created"
        except Exception as exc:
            if error_code(exc) != "AlreadyExistsException" or if_exists == "fail":
                raise
            if if_exists == "update":
                glue.update_table(DatabaseName=database, TableInput=table_input, **self._catalog())
            action = "updated" if if_exists == "update" else "skipped"
        return TaskMetrics(
            execution_metadata={
                "engine": "glue",
                "database": database,
                "table": table,
                "action": action,
            }
        )

    @task
    def update_table(
        self,
        database: Annotated[str, "Database of the table"],
        table: Annotated[str, "Table name"],
        columns: Annotated[list[dict], "[{name, type, comment?}] with Hive types"],
        location: Annotated[str, "s3:// prefix of the table's files"],
        format: Annotated[Literal["csv", "json", "parquet"], "File format"] = "parquet",
        partition_keys: Annotated[list[dict] | None, "[{name, type}] partition columns"] = None,
        serde_properties: Annotated[dict | None, "SerDe parameters"] = None,
        table_properties: Annotated[dict | None, "Table parameters"] = None,
        skip_header: Annotated[bool, "CSV: skip the header line"] = False,
        comment: Annotated[str | None, "Table description"] = None,
    ) -> TaskMetrics:
        """Replace an existing table's definition with the spec."""
        # locals() is exactly the task's arguments here (nothing else is assigned yet).
        self.aws.client("glue").update_table(
            DatabaseName=database, TableInput=_table_input(locals()), **self._catalog()
        )
        return TaskMetrics(
            execution_metadata={
                "engine": "glue",
                "database": database,
                "table": table,
                "action": "updated",
            }
        )

    def _catalog(self) -> dict[str, str]:
        # No CatalogId means the caller's account; sending None would fail parameter validation.
        return {"CatalogId": self.catalog_id} if self.catalog_id else {}


def _table_input(args: dict[str, Any]) -> dict[str, Any]:
    return spec.table_spec({k: args[k] for k in spec.TABLE_ARGS if k in args}).glue_table_input()


def _crawl_marker(crawler: dict[str, Any]) -> tuple[Any, Any] | None:
    """What identifies the crawler's last crawl: its StartTime and MessagePrefix
    (None before any crawl)."""
    last = crawler.get("LastCrawl")
    return (last.get("StartTime"), last.get("MessagePrefix")) if last else None


def _crawl_state(
    crawler: dict[str, Any], before: tuple[Any, Any] | None, joined: bool
) -> str | None:
    """The crawl's end status once the crawler is READY again and its last crawl is ours.

    Ours is any LastCrawl other than the one seen before we started (the engine's clock is never
    compared with ours); a joined crawl is the one running when we looked.
    """
    if crawler.get("State") != "READY":
        return None
    if not joined and _crawl_marker(crawler) == before:
        return None
    return (crawler.get("LastCrawl") or {}).get("Status")


def _job_metrics(
    job_name: str, run: dict[str, Any], reattached: bool, follower: "_LogFollower | None"
) -> TaskMetrics:
    return TaskMetrics(
        execution_metadata={
            "engine": "glue",
            "job_name": job_name,
            "run_id": run.get("Id"),
            "state": "succeeded",
            "raw_state": run.get("JobRunState"),
            "reattached": reattached,
            "execution_time_s": run.get("ExecutionTime"),
            # Glue sets DPUSeconds only for Flex and auto-scaling runs; None otherwise.
            "dpu_seconds": run.get("DPUSeconds"),
            "worker_type": run.get("WorkerType"),
            "number_of_workers": run.get("NumberOfWorkers"),
            "log_lines": follower.lines if follower else None,
        }
    )


class _LogFollower:
    """Copies a job run's CloudWatch output and error streams into the task log as they grow."""

    def __init__(self, clients: Any, context: Context, log_group: str | None) -> None:
        self.clients, self.context, self.log_group = clients, context, log_group
        self.tokens: dict[str, str | None] = {}
        self.run_id: str | None = None
        self.base: str | None = None
        self.lines = 0

    def poll(self, run: dict[str, Any]) -> None:
        self.run_id = run.get("Id")
        # Taken on every poll: LogGroupName is known only once the run has been described.
        self.base = (self.log_group or run.get("LogGroupName") or DEFAULT_LOG_GROUP).rstrip("/")
        self.drain()

    def drain(self) -> None:
        if not self.run_id or not self.base:
            return
        for suffix in ("output", "error"):
            try:
                self._read(f"{self.base}/{suffix}", suffix)
            except Exception as exc:
                # A stream exists only once the run has logged something, and logs:GetLogEvents may
                # not be granted: neither is worth a message. Logs are a courtesy; they never fail
                # the task.
                if error_code(exc) not in ("ResourceNotFoundException", "AccessDeniedException"):
                    self.context.logger.debug("glue logs %s/%s: %s", self.base, suffix, exc)

    def _read(self, group: str, label: str) -> None:
        logs = self.clients.client("logs")
        while True:
            request: dict[str, Any] = {
                "logGroupName": group,
                # Glue names each run's stream after the run id.
                "logStreamName": self.run_id,
                # Without it the first page is the stream's tail, and the run's first lines would be
                # skipped.
                "startFromHead": True,
            }
            if self.tokens.get(group):
                request["nextToken"] = self.tokens[group]
            page = logs.get_log_events(**request)
            for event in page.get("events", []):
                self.lines += 1
                self.context.logger.info(
                    "[glue %s %s] %s", self.run_id, label, event.get("message", "").rstrip()
                )
            token = page.get("nextForwardToken")
            # At the end of a stream GetLogEvents returns the token it was given; that token is
            # where the next drain starts.
            if not page.get("events") or token == self.tokens.get(group):
                self.tokens[group] = token
                return
            self.tokens[group] = token


def _job_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if not str(args.get("job_name", "")).strip():
        yield "job_name", "a job name is required"
    for key in args.get("arguments") or {}:
        if not str(key).startswith("--"):
            yield f"arguments.{key}", "Glue job arguments are named --name"
        if key == TOKEN_ARG:
            yield f"arguments.{key}", "reserved: the orchestrator sets it to find its own runs"
    for field in ("number_of_workers", "timeout"):
        value = args.get(field)
        if value is not None and (not isinstance(value, int) or value <= 0):
            yield field, "must be a positive integer"


@hookimpl
def register_executors() -> list[type]:
    return [GlueExecutor]
