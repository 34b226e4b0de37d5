"""A real AWS API on loopback for the Athena, Redshift and Glue tests (moto ThreadedMotoServer).

Code under test uses real boto3 clients over HTTP. Where moto cannot produce an outcome (a failed
query with a reason, a Redshift statement that finishes, BatchStopJobRun, Glue log streams), the
``*_sim`` fixtures patch moto's *in-process* backend or response classes, as notes/moto.md
describes; the product code sees only ordinary API answers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import use_moto

ACCOUNT, REGION = "123456789012", "us-east-1"
HOLD = {"progression": "manual", "times": 1_000_000}
MODELS = ("athena::execution", "glue::job_run", "glue::crawl")

__all__ = ["aws", "s3", "athena_sim", "redshift_sim", "glue_sim", "fault_proxy", "AwsEnv", "run_routine",
           "write_json", "ACCOUNT", "REGION", "HOLD"]


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 S3 client on an emptied moto server; the environment points every new client there too."""
    import boto3

    use_moto(moto_server, monkeypatch)
    client = boto3.client("s3")
    assert client.meta.endpoint_url.startswith("http://127.0.0.1:"), client.meta.endpoint_url
    return client


def _post(url: str, body: Any = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST")).close()


@dataclasses.dataclass
class AwsEnv:
    """The moto endpoint, boto3 clients on it, and state-manager transitions (unset on teardown)."""

    endpoint: str
    tmp: Path
    _set: set[str] = dataclasses.field(default_factory=set)

    def client(self, service: str) -> Any:
        import boto3

        client = boto3.client(service, region_name=REGION)
        assert client.meta.endpoint_url.startswith("http://127.0.0.1:"), client.meta.endpoint_url
        return client

    def set_transition(self, model: str, transition: dict[str, Any]) -> None:
        _post(f"{self.endpoint}/moto-api/state-manager/set-transition", {"model_name": model, "transition": transition})
        self._set.add(model)

    def unset_all(self) -> None:
        for model in self._set | set(MODELS):
            _post(f"{self.endpoint}/moto-api/state-manager/unset-transition", {"model_name": model})
        self._set.clear()

    def env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in ENV_KEYS if k in os.environ}


ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
            "AWS_MAX_ATTEMPTS", "ORCHESTRATOR_HOME")


@pytest.fixture
def aws(moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """An emptied moto server; the environment points every new boto3 client at it."""
    use_moto(moto_server, monkeypatch, AWS_DEFAULT_REGION=REGION, AWS_MAX_ATTEMPTS="3",
             ORCHESTRATOR_HOME=str(tmp_path / "home"))
    env = AwsEnv(moto_server, tmp_path)
    env.unset_all()
    try:
        yield env
    finally:
        env.unset_all()


# ---------------------------------------------------------------------- Athena

@dataclasses.dataclass
class Rule:
    contains: str
    fields: dict[str, Any]


class AthenaSim:
    """Outcomes moto cannot produce by itself, chosen by a substring of the query text."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def on(self, contains: str, **fields: Any) -> None:
        """fields: state, reason, error_type, scanned, update_count, hold (True: RUNNING until stopped; N: for N polls).

        ``hold`` needs the ``athena::execution`` transition held (``aws.set_transition(..., HOLD)``).
        """
        self.rules.append(Rule(contains, fields))

    def rule(self, query: str) -> dict[str, Any]:
        return next((r.fields for r in self.rules if r.contains in query), {})

    @property
    def backend(self) -> Any:
        from moto.athena.models import athena_backends

        return athena_backends[ACCOUNT][REGION]

    def executions(self, contains: str = "") -> list[Any]:
        return [e for e in self.backend.executions.values() if contains in e.query]

    def advance(self, execution: Any) -> None:
        fields = self.rule(execution.query)
        hold = fields.get("hold")
        if hold and execution.status in ("QUEUED", "RUNNING"):
            execution._polls = getattr(execution, "_polls", 0) + 1
            done = hold is not True and execution._polls > hold
            execution.status = "SUCCEEDED" if done else "RUNNING"
        elif fields.get("state") and execution.status not in ("CANCELLED",):
            execution.status = fields["state"]

    def overlay(self, execution: Any, doc: dict[str, Any]) -> dict[str, Any]:
        fields = self.rule(execution.query)
        status = doc["QueryExecution"]["Status"]
        status["State"] = execution.status
        if execution.status == "FAILED" and fields.get("reason"):
            status["StateChangeReason"] = fields["reason"]
            status["AthenaError"] = {"ErrorCategory": 2, "ErrorType": fields.get("error_type", 1001),
                                     "Retryable": False, "ErrorMessage": fields["reason"]}
        if "scanned" in fields:
            doc["QueryExecution"]["Statistics"]["DataScannedInBytes"] = fields["scanned"]
        return doc


@pytest.fixture
def athena_sim(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> AthenaSim:
    from moto.athena.responses import AthenaResponse

    sim = AthenaSim()
    original_get, original_results = AthenaResponse.get_query_execution, AthenaResponse.get_query_results

    def get_query_execution(self: Any) -> str:
        execution = sim.backend.executions.get(self._get_param("QueryExecutionId"))
        if execution is not None:
            sim.advance(execution)
        doc = json.loads(original_get(self))
        return json.dumps(sim.overlay(execution, doc)) if execution is not None else json.dumps(doc)

    def get_query_results(self: Any) -> str:
        doc = json.loads(original_results(self))
        execution = sim.backend.executions.get(self._get_param("QueryExecutionId"))
        count = sim.rule(execution.query).get("update_count") if execution is not None else None
        if count is not None:
            doc["UpdateCount"] = count
        return json.dumps(doc)

    monkeypatch.setattr(AthenaResponse, "get_query_execution", get_query_execution)
    monkeypatch.setattr(AthenaResponse, "get_query_results", get_query_results)
    return sim


# ---------------------------------------------------------------------- Redshift Data API

class RedshiftSim:
    """Statements finish, fail or stay running by rule; BatchExecuteStatement is shimmed."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.wait_seconds: list[Any] = []
        self.batches: dict[str, list[str]] = {}

    def on(self, contains: str, **fields: Any) -> None:
        """fields: status (FINISHED/FAILED), error, rows, after (describes before it ends), hold."""
        self.rules.append(Rule(contains, fields))

    def rule(self, sql: str) -> dict[str, Any]:
        return next((r.fields for r in self.rules if r.contains in sql), {})

    @property
    def backend(self) -> Any:
        from moto.redshiftdata.models import redshiftdata_backends

        return redshiftdata_backends[ACCOUNT][REGION]

    def statements(self, contains: str = "") -> list[Any]:
        return [s for s in self.backend.statements.values() if contains in s.query_string]

    def advance(self, statement: Any) -> None:
        fields = self.rule(statement.query_string)
        statement._describes = getattr(statement, "_describes", 0) + 1
        if statement.status != "STARTED" or fields.get("hold") or statement._describes < fields.get("after", 1):
            return
        statement.status = fields.get("status", "FINISHED")
        statement.result_rows = fields.get("rows", 0)
        statement._error = fields.get("error") if statement.status == "FAILED" else None

    def describe(self, statement: Any) -> dict[str, Any]:
        doc = dict(statement)
        doc.pop("SubStatements", None)
        if getattr(statement, "_error", None):
            doc["Error"] = statement._error
        sqls = self.batches.get(statement.id)
        if sqls:
            doc["SubStatements"] = [{"Id": f"{statement.id}:{i + 1}", "Status": statement.status, "QueryString": sql,
                                     "ResultRows": self.rule(sql).get("rows", 0)} for i, sql in enumerate(sqls)]
        return doc


@pytest.fixture
def redshift_sim(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> RedshiftSim:
    from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse as Response

    sim = RedshiftSim()

    def describe_statement(self: Any) -> Any:
        sim.wait_seconds.append(self._get_param("WaitTimeSeconds"))
        statement = self.redshiftdata_backend.describe_statement(statement_id=self._get_param("Id"))
        sim.advance(statement)
        return 200, {}, json.dumps(sim.describe(statement))

    def batch_execute_statement(self: Any) -> Any:
        sqls = self._get_param("Sqls")
        statement = self.redshiftdata_backend.execute_statement(
            cluster_identifier=self._get_param("ClusterIdentifier"), database=self._get_param("Database"),
            db_user=self._get_param("DbUser"), parameters=None, secret_arn=self._get_param("SecretArn"),
            sql=";\n".join(sqls))
        sim.batches[statement.id] = sqls
        return 200, {}, json.dumps({"Id": statement.id, "CreatedAt": statement.created_at, "Database": statement.database})

    monkeypatch.setattr(Response, "describe_statement", describe_statement)
    monkeypatch.setattr(Response, "batch_execute_statement", batch_execute_statement, raising=False)
    return sim


# ---------------------------------------------------------------------- Glue

class GlueSim:
    """Job-run outcomes, error messages and CloudWatch log lines by job name; BatchStopJobRun shimmed."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.stop_calls: list[list[str]] = []

    def on(self, job: str, **fields: Any) -> None:
        """fields: state (FAILED/TIMEOUT/…), error, hold, logs [lines], error_logs [lines]."""
        self.jobs[job] = fields

    @property
    def backend(self) -> Any:
        from moto.glue.models import glue_backends

        return glue_backends[ACCOUNT][REGION]

    def runs(self, job: str) -> list[Any]:
        return list(self.backend.jobs[job].job_runs)

    def apply(self, run: Any) -> None:
        fields = self.jobs.get(run.job_name, {})
        if run.status in ("STOPPED", "STOPPING"):
            return
        if fields.get("hold") and run.status == "STARTING":
            run.status = "RUNNING"
        elif fields.get("state"):
            run.status = fields["state"]
        run._error_message = fields.get("error") if run.status not in ("RUNNING", "STARTING", "SUCCEEDED") else None

    def write_logs(self, run: Any) -> None:
        from moto.logs.models import logs_backends

        fields = self.jobs.get(run.job_name, {})
        logs = logs_backends[ACCOUNT][REGION]
        base = run.as_dict()["LogGroupName"]
        for suffix, lines in (("output", fields.get("logs")), ("error", fields.get("error_logs"))):
            if not lines:
                continue
            group = f"{base}/{suffix}"
            if group not in logs.groups:
                logs.create_log_group(group, {})
            logs.create_log_stream(group, run.job_run_id)
            now = int(time.time() * 1000)
            logs.put_log_events(group, run.job_run_id, [{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])


@pytest.fixture
def glue_sim(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> GlueSim:
    from moto.core.responses import ActionResult
    from moto.glue.models import FakeCrawler, FakeJobRun
    from moto.glue.responses import GlueResponse

    sim = GlueSim()
    original_as_dict, original_start, original_get = FakeJobRun.as_dict, GlueResponse.start_job_run, GlueResponse.get_job_run

    def as_dict(self: Any) -> dict[str, Any]:
        doc = original_as_dict(self)
        if getattr(self, "_error_message", None):
            doc["ErrorMessage"] = self._error_message
        return doc

    def start_job_run(self: Any) -> Any:
        result = original_start(self)
        run_id = result.result["JobRunId"]
        run = next(r for r in sim.runs(self._get_param("JobName")) if r.job_run_id == run_id)
        sim.write_logs(run)
        return result

    def get_job_run(self: Any) -> Any:
        run = self.glue_backend.get_job_run(self.parameters.get("JobName"), self.parameters.get("RunId"))
        sim.apply(run)
        return original_get(self)

    def batch_stop_job_run(self: Any) -> Any:
        ids = self._get_param("JobRunIds")
        sim.stop_calls.append(ids)
        done = []
        for run in sim.runs(self._get_param("JobName")):
            if run.job_run_id in ids:
                run.status = "STOPPED"
                done.append({"JobName": run.job_name, "JobRunId": run.job_run_id})
        return ActionResult({"SuccessfulSubmissions": done, "Errors": []})

    original_crawler = FakeCrawler.as_dict

    def crawler_as_dict(self: Any) -> dict[str, Any]:
        """moto names crawl outcomes COMPLETED/STOPPED; the real API says SUCCEEDED/CANCELLED."""
        doc = original_crawler(self)
        last = doc.get("LastCrawl")
        if last:
            last["Status"] = {"COMPLETED": "SUCCEEDED", "STOPPED": "CANCELLED"}.get(last["Status"], last["Status"])
            if getattr(self.crawls[-1], "_error", None):
                last["Status"], last["ErrorMessage"] = "FAILED", self.crawls[-1]._error
        return doc

    monkeypatch.setattr(FakeCrawler, "as_dict", crawler_as_dict)
    monkeypatch.setattr(FakeJobRun, "as_dict", as_dict)
    monkeypatch.setattr(GlueResponse, "start_job_run", start_job_run)
    monkeypatch.setattr(GlueResponse, "get_job_run", get_job_run)
    monkeypatch.setattr(GlueResponse, "batch_stop_job_run", batch_stop_job_run, raising=False)
    return sim


# ---------------------------------------------------------------------- fault proxy

# One implementation for the tests and the benchmarks: bench/faultproxy.py (stdlib only).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from faultproxy import Fault, FaultProxy, FirstN  # noqa: E402


class OperationFirstN(FirstN):
    """Like ``FirstN`` but ``match`` is a whole operation name: ``GetJobRun`` does not match ``GetJobRuns``."""

    def __call__(self, target: str) -> Fault | None:
        return super().__call__(target) if target.rsplit(".", 1)[-1] == self.match else None


@pytest.fixture
def fault_proxy(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(faults: list[tuple[int, str, str]], match: str = "", after: bool = False,
             operation: str | None = None) -> FaultProxy:
        """``operation``: inject into exactly that operation instead of targets containing ``match``."""
        policy = OperationFirstN([Fault.json_error(*f, after=after) for f in faults], operation) if operation else None
        proxy = FaultProxy(aws.endpoint, faults, match, after, policy=policy)
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# ---------------------------------------------------------------------- running routines

def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def run_routine(path: Path) -> Any:
    """Run through the real core (config → plan → engine)."""
    from orchestrator.api import Orchestrator

    return Orchestrator().run(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
