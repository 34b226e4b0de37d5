"""Lineage: each task says what it read and wrote, and a configured run emits OpenLineage events
(START, then COMPLETE/FAIL/ABORT, per task, under the run as parent) through the openlineage-python
client, to a loopback HTTP server or a JSON-lines file. Unconfigured, nothing is emitted or imported.

Every event captured is checked for the fields the OpenLineage spec requires, rebuilt through the
client's classes generated from the spec (their validators run), and validated against
the spec's JSON schema (2-0-2 and the facets emitted) when that is at hand: the schema ships in no
package and is public reference data, which is not committed here. Put ``OpenLineage.json`` and
``facets/{ParentRunFacet,ErrorMessageRunFacet,JobTypeJobFacet}.json`` from the OpenLineage
repository's ``spec/`` in ``shared/openlineage/`` beside the repository, or point
``OPENLINEAGE_SPEC_DIR`` at such a folder."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from loopback import Capture
from orchestrator.executor import Dataset
from orchestrator.lineage.sql import tables

REPO = Path(__file__).resolve().parent.parent
FACET_FILES = {"parent": "ParentRunFacet.json", "errorMessage": "ErrorMessageRunFacet.json",
               "jobType": "JobTypeJobFacet.json"}
KEY = "ol-Sekret-Key-5521"
CODE = '''
def load(rows):
    return {"rows": rows, "lineage": {"inputs": ["s3://lake/raw/orders.csv"],
                                      "outputs": [{"namespace": "postgres://db:5432",
                                                   "name": "sales.public.orders"}]}}

def broken():
    raise ValueError("the load broke")
'''


def schema_folder() -> Path | None:
    """``$OPENLINEAGE_SPEC_DIR``, else ``shared/openlineage/`` beside the repository (or beside
    the folder holding a worktree); None when neither has the schema."""
    candidates = [Path(os.environ["OPENLINEAGE_SPEC_DIR"])] if os.environ.get(
        "OPENLINEAGE_SPEC_DIR") else []
    candidates += [parent / "shared" / "openlineage" for parent in REPO.parents]
    return next((c for c in candidates if (c / "OpenLineage.json").exists()), None)


def required_fields(event: dict[str, Any]) -> None:
    """What the spec requires of a run event, checked without its schema file."""
    assert event["eventType"] in ("START", "COMPLETE", "ABORT", "FAIL", "OTHER")
    assert datetime.datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    assert ":" in event["producer"] and event["schemaURL"].startswith("https://openlineage.io/")
    uuid.UUID(event["run"]["runId"])
    assert event["job"]["namespace"] and event["job"]["name"]
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        assert isinstance(dataset["namespace"], str) and isinstance(dataset["name"], str)
    facets = {**event["run"].get("facets", {}), **event["job"].get("facets", {})}
    for facet in facets.values():
        assert ":" in facet["_producer"] and facet["_schemaURL"].startswith("https://")
    if "parent" in facets:
        uuid.UUID(facets["parent"]["run"]["runId"])
        assert facets["parent"]["job"]["namespace"] and facets["parent"]["job"]["name"]


def through_the_client_model(event: dict[str, Any]) -> None:
    """Rebuild the event from openlineage-python's classes, which are generated from the spec's
    schema and carry its validators (event time, producer and schema URIs, UUID run ids)."""
    from openlineage.client import event_v2
    from openlineage.client.facet_v2 import parent_run

    facets = event["run"].get("facets", {})
    run_facets = {}
    if "parent" in facets:
        parent = facets["parent"]
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent["run"]["runId"]),
            job=parent_run.Job(namespace=parent["job"]["namespace"], name=parent["job"]["name"]))
    rebuilt = event_v2.RunEvent(
        eventType=event_v2.RunState(event["eventType"]), eventTime=event["eventTime"],
        run=event_v2.Run(runId=event["run"]["runId"], facets=run_facets),
        job=event_v2.Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
        producer=event["producer"],
        inputs=[event_v2.InputDataset(namespace=d["namespace"], name=d["name"])
                for d in event.get("inputs", [])],
        outputs=[event_v2.OutputDataset(namespace=d["namespace"], name=d["name"])
                 for d in event.get("outputs", [])])
    assert rebuilt.schemaURL == event["schemaURL"]


@pytest.fixture(scope="module")
def check_event() -> Callable[[dict[str, Any]], None]:
    folder = schema_folder()
    if folder is None:
        def without_schema_file(event: dict[str, Any]) -> None:
            required_fields(event)
            through_the_client_model(event)

        return without_schema_file
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    core = json.loads((folder / "OpenLineage.json").read_text())
    facets = {name: json.loads((folder / "facets" / file).read_text())
              for name, file in FACET_FILES.items()}
    registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in [core, *facets.values()])
    checker = Draft202012Validator.FORMAT_CHECKER

    def check(event: dict[str, Any]) -> None:
        required_fields(event)
        Draft202012Validator(core, registry=registry, format_checker=checker).validate(event)
        for name, facet in {**event["run"].get("facets", {}),
                            **event["job"].get("facets", {})}.items():
            if name in facets:
                Draft202012Validator(facets[name], registry=registry,
                                     format_checker=checker).validate({name: facet})

    return check


def test_the_openlineage_schema_is_at_hand() -> None:
    """Says (as a skip) when the events are checked for required fields only."""
    if schema_folder() is None:
        pytest.skip("OpenLineage JSON schema not found (shared/openlineage/ or "
                    "OPENLINEAGE_SPEC_DIR): events are checked for required fields and through "
                    "the client's spec-generated classes only")


def routine(write_routine: Callable[..., Path], tmp_path: Path, fail: bool = False,
            **extra: Any) -> str:
    (tmp_path / "jobs.py").write_text(CODE)
    landing = tmp_path / "landing"
    landing.mkdir(exist_ok=True)
    (landing / "a.csv").write_text("id\n1\n")
    python_tasks = [{"task": "call", "args": {"function": "load", "kwargs": {"rows": 3}}}]
    if fail:
        python_tasks.append({"task": "call", "args": {"function": "broken"}})
    doc = {"routine_name": "lineage_demo", **extra, "executors": [
        {"name": "stage", "executor": "staging",
         "params": {"parent_directory": "landing", "dump_directory": "dump",
                    "archive_or_delete": "archive"},
         "tasks": ["transfer", "post_staging"]},
        {"name": "load", "executor": "python", "params": {"path": "jobs.py"},
         "tasks": python_tasks}]}
    return str(write_routine(doc))


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["eventType"], e["job"]["name"]) for e in events]


def test_http_events_follow_each_task_and_match_the_schema(
        cli: Callable[..., Any], write_routine: Callable[..., Path], tmp_path: Path,
        http_capture: Capture, check_event: Callable[[dict[str, Any]], None]) -> None:
    path = routine(write_routine, tmp_path, fail=True,
                   lineage={"url": http_capture.url, "api_key": "${env.LINEAGE_TOKEN}",
                            "namespace": "team-a"})
    proc = cli(path, "--json", env={"LINEAGE_TOKEN": KEY})
    assert proc.returncode == 1, proc.stderr
    events = http_capture.bodies()
    assert {r["path"] for r in http_capture.requests} == {"/api/v1/lineage"}
    assert {r["headers"]["Authorization"] for r in http_capture.requests} == {f"Bearer {KEY}"}
    for event in events:
        check_event(event)
    assert summary(events) == [
        ("START", "lineage_demo"),
        ("START", "lineage_demo.stage.transfer"), ("COMPLETE", "lineage_demo.stage.transfer"),
        ("START", "lineage_demo.stage.post_staging"),
        ("COMPLETE", "lineage_demo.stage.post_staging"),
        ("START", "lineage_demo.load.call[0]"), ("COMPLETE", "lineage_demo.load.call[0]"),
        ("START", "lineage_demo.load.call[1]"), ("FAIL", "lineage_demo.load.call[1]"),
        ("FAIL", "lineage_demo")]
    parent = events[0]["run"]["runId"]
    assert parent == json.loads(proc.stdout)["run_id"]
    tasks = events[1:-1]
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in tasks} == {parent}
    assert {e["job"]["namespace"] for e in events} == {"team-a"}
    assert len({e["run"]["runId"] for e in tasks}) == 4  # START and its end share a run
    transfer = tasks[1]
    assert [(d["namespace"], d["name"]) for d in transfer["inputs"]] == \
        [("file", str(tmp_path / "landing"))]
    assert [(d["namespace"], d["name"]) for d in transfer["outputs"]] == \
        [("file", str(tmp_path / "dump"))]
    assert [d["name"] for d in tasks[3]["outputs"]] == [str(tmp_path / "landing_archive")]
    loaded = tasks[5]
    assert [(d["namespace"], d["name"]) for d in loaded["inputs"]] == \
        [("s3://lake", "raw/orders.csv")]
    assert [(d["namespace"], d["name"]) for d in loaded["outputs"]] == \
        [("postgres://db:5432", "sales.public.orders")]
    failed = tasks[7]["run"]["facets"]["errorMessage"]
    assert failed["message"] == "ValueError: the load broke" and "broken" in failed["stackTrace"]
    logs = cli("logs", parent).stdout
    assert "lineage: 10 event(s) sent to " + http_capture.url in logs
    assert KEY not in logs + proc.stdout + proc.stderr + cli("show", parent).stdout


@pytest.mark.parametrize("configured_by", ["routine", "home config"])
def test_the_file_transport_writes_one_json_event_per_line(
        cli: Callable[..., Any], write_routine: Callable[..., Path], tmp_path: Path,
        configured_by: str, check_event: Callable[[dict[str, Any]], None]) -> None:
    file = tmp_path / "events" / "lineage.jsonl"
    file.parent.mkdir()
    extra = {"lineage": {"file": "events/lineage.jsonl"}} if configured_by == "routine" else {}
    if configured_by == "home config":
        assert cli("config", "set", "lineage.file", str(file)).returncode == 0
    path = routine(write_routine, tmp_path, **extra)
    assert cli(path).returncode == 0
    assert cli(path).returncode == 0  # a second run appends
    lines = file.read_text().splitlines()
    assert len(lines) == 2 * 8
    for line in lines:
        check_event(json.loads(line))
    assert [json.loads(line)["eventType"] for line in lines[:2]] == ["START", "START"]


def test_a_failing_endpoint_never_fails_the_run(
        cli: Callable[..., Any], write_routine: Callable[..., Path], tmp_path: Path,
        http_capture: Capture) -> None:
    http_capture.script = [500] * 100
    path = routine(write_routine, tmp_path, lineage={"url": http_capture.url, "timeout": 2})
    proc = cli(path, "--json")
    assert proc.returncode == 0, proc.stderr
    logs = cli("logs", json.loads(proc.stdout)["run_id"]).stdout
    assert "lineage: 8 of 8 event(s) could not be sent to " + http_capture.url in logs


def test_unconfigured_runs_emit_nothing_and_never_import_the_client(
        write_routine: Callable[..., Path], tmp_path: Path, http_capture: Capture,
        orchestrator_home: Path) -> None:
    path = routine(write_routine, tmp_path)
    code = ("import sys; from orchestrator import Orchestrator; "
            f"result = Orchestrator().run({path!r}); "
            "print(result.status, 'openlineage' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**env, "ORCHESTRATOR_HOME": str(orchestrator_home)}, check=True)
    assert quiet.stdout.split() == ["succeeded", "False"], quiet.stderr
    assert http_capture.requests == []
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "ORCHESTRATOR_HOME": str(orchestrator_home),
                               "OPENLINEAGE_URL": http_capture.url}, check=True)
    assert loud.stdout.split() == ["succeeded", "True"], loud.stderr
    assert len(http_capture.requests) == 8  # the environment alone configures it


def test_a_routine_can_turn_lineage_off(cli: Callable[..., Any], write_routine: Callable[..., Path],
                                        tmp_path: Path, http_capture: Capture) -> None:
    path = routine(write_routine, tmp_path, lineage=False)
    assert cli(path, env={"OPENLINEAGE_URL": http_capture.url}).returncode == 0
    assert http_capture.requests == []


def test_a_lineage_block_with_both_or_neither_target_is_refused(
        cli: Callable[..., Any], write_routine: Callable[..., Path], tmp_path: Path) -> None:
    path = routine(write_routine, tmp_path, lineage={"url": "http://x", "file": "y.jsonl"})
    proc = cli("validate", path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"{path}: lineage: give either url (an OpenLineage HTTP "
                                   "endpoint) or file (JSON lines)")


@pytest.mark.parametrize("sql, inputs, outputs", [
    ("SELECT * FROM sales.orders o JOIN customers AS c ON o.c = c.id",
     ["sales.orders", "customers"], []),
    ("INSERT INTO lake.daily SELECT a FROM raw.orders, raw.items i", ["raw.orders", "raw.items"],
     ["lake.daily"]),
    ("WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b ON 1", ["a", "b"], []),
    ("CREATE TABLE IF NOT EXISTS t2 AS SELECT * FROM t1", ["t1"], ["t2"]),
    ('CREATE OR REPLACE VIEW v AS SELECT * FROM "My"."Tab"', ["My.Tab"], ["v"]),
    ("SELECT EXTRACT(year FROM ts) FROM t WHERE id IN (SELECT id FROM u)", ["t", "u"], []),
    ("-- FROM commented\nSELECT 'FROM fake' FROM real_t /* JOIN x */", ["real_t"], []),
    ("DELETE FROM t WHERE id IN (SELECT id FROM u)", ["u"], ["t"]),
    ("MERGE INTO tgt USING src ON tgt.id = src.id", ["src"], ["tgt"]),
    ("SELECT * FROM UNNEST(ARRAY[1]) AS t(x)", [], []),
    ("MSCK REPAIR TABLE orders", [], []),
])
def test_the_sql_parser_names_only_what_it_can_be_sure_of(sql: str, inputs: list[str],
                                                          outputs: list[str]) -> None:
    found = tables(sql)
    assert (found.inputs, found.outputs) == (inputs, outputs)


def test_copy_and_unload_name_their_s3_locations() -> None:
    copy = tables("COPY public.orders (a, b) FROM 's3://bucket/in/' IAM_ROLE 'arn' CSV")
    assert (copy.outputs, copy.input_locations) == (["public.orders"], ["s3://bucket/in/"])
    unload = tables("UNLOAD ('SELECT * FROM sales WHERE d = ''x''') TO 's3://b/out/' IAM_ROLE 'r'")
    assert (unload.inputs, unload.output_locations) == (["sales"], ["s3://b/out/"])


def test_the_aws_and_metadata_executors_name_their_datasets() -> None:
    from executors.athena import AthenaExecutor
    from executors.glue import GlueExecutor
    from executors.metadata.executor import MetadataExecutor
    from executors.redshift import RedshiftExecutor

    athena = AthenaExecutor.task_lineage(
        "run_query", {"sql": "INSERT INTO daily SELECT * FROM raw.orders"},
        {"database": "lake", "region": "eu-west-1"})
    namespace = "awsathena://athena.eu-west-1.amazonaws.com"
    assert athena.inputs == (Dataset(namespace, "AwsDataCatalog.raw.orders"),)
    assert athena.outputs == (Dataset(namespace, "AwsDataCatalog.lake.daily"),)
    copy = RedshiftExecutor.task_lineage(
        "copy_from_s3", {"table": "orders", "s3_path": "s3://b/in/"},
        {"database": "dev", "cluster_identifier": "main", "region": "eu-west-1"})
    assert copy.inputs == (Dataset("s3://b", "in"),)
    assert copy.outputs == (Dataset("redshift://main.eu-west-1:5439", "dev.public.orders"),)
    job = GlueExecutor.task_lineage(
        "run_job", {"job_name": "j", "arguments": {"--input_path": "s3://b/in/",
                                                   "--output_path": "s3://b/out/",
                                                   "--database": "lake",
                                                   "--source_table": "orders"}},
        {"region": "eu-west-1", "catalog_id": "123456789012"})
    glue = "arn:aws:glue:eu-west-1:123456789012"
    assert job.inputs == (Dataset("s3://b", "in"), Dataset(glue, "table/lake/orders"))
    assert job.outputs == (Dataset("s3://b", "out"),)
    source = MetadataExecutor.task_lineage(
        "extract", {}, {"source": "postgresql+psycopg://etl:pw@db.internal:5432/sales"})
    assert source.inputs == (Dataset("postgresql://db.internal:5432", "sales"),)
    assert "pw" not in repr(source)


def test_without_the_client_library_the_run_goes_on_and_says_why(
        cli: Callable[..., Any], write_routine: Callable[..., Path], tmp_path: Path,
        http_capture: Capture) -> None:
    shadow = tmp_path / "shadow" / "openlineage"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    path = routine(write_routine, tmp_path, lineage={"url": http_capture.url})
    proc = cli(path, "--json", env={"PYTHONPATH": str(shadow.parent)})
    assert proc.returncode == 0, proc.stderr
    assert http_capture.requests == []
    logs = cli("logs", json.loads(proc.stdout)["run_id"]).stdout
    assert "lineage events not sent to " + http_capture.url in logs
    assert "pip install 'lake-orchestrator[lineage]'" in logs
