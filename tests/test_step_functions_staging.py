"""Staging from an S3 landing as a Step Functions Distributed Map: the definition (asl-validator),
and the batches and the one ``post_staging`` after them run in-process against moto, as the
map's children and the following state would invoke our Lambda.

moto's Step Functions does not run a Distributed Map's ItemReader/ResultWriter against S3, and its
Lambda never runs our handler: the map itself is checked by definition; the handler's part runs
here with real boto3 clients on the moto server (S3 for the data and the manifests, DynamoDB for
the run store).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambda_fixtures import FakeContext
from orchestrator import load_routine
from orchestrator.aws_lambda.one_step import StepFailed
from orchestrator.aws_lambda.runner import LambdaRunner
from orchestrator.stepfunctions.compile import compile_routine
from test_step_functions import all_states, asl_validator, validate  # noqa: F401 (fixture)

EXECUTION = "exec-map-1"
ARN = f"arn:aws:states:us-east-1:123456789012:execution:machine:{EXECUTION}"


def routine_doc(mode: str = "delete") -> dict[str, Any]:
    return {"routine_name": "big_landing", "params": {"day": "2024-05-06"}, "executors": [
        {"name": "stage", "executor": "staging", "params": {
            "parent_directory": "s3://landing/in/${params.day}/",
            "dump_directory": "s3://dump/out/",
            "archive_or_delete": mode, "archive_directory": "s3://archive/in/", "pattern": "*.csv"},
         "tasks": ["transfer", "post_staging"]}]}


def compiled(doc: dict[str, Any]) -> Any:
    return compile_routine(load_routine(doc), "routines/r/routine.json", "v1", raw=doc)


def test_staging_from_s3_compiles_to_a_distributed_map_then_one_post_staging(
        asl_validator: str, tmp_path: Path) -> None:  # noqa: F811
    result = compiled(routine_doc())
    states = result.definition["States"]
    fan_out = states["stage.transfer"]
    assert fan_out["Type"] == "Map"
    assert fan_out["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": "landing", "Prefix.$": "States.Format('in/{}/', $.params.day)"}}
    assert fan_out["ItemBatcher"]["MaxItemsPerBatch"] == 100
    assert fan_out["ToleratedFailurePercentage"] == 0  # one failed batch: no post_staging
    assert fan_out["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    child = next(iter(fan_out["ItemProcessor"]["States"].values()))
    payload = child["Parameters"]["Payload"]
    assert child["Resource"] == "arn:aws:states:::lambda:invoke"
    assert (payload["step"], payload["task"], payload["batch.$"]) == ("stage", 0, "$.Items")
    assert payload["execution.$"] == "$.BatchInput.execution"  # the parent's, not the child's
    assert fan_out["ResultWriter"]["Parameters"]["Bucket"] == "${OrchestratorBatchBucket}"
    after = states[fan_out["Next"]]
    assert after["Parameters"]["Payload"]["tasks"] == [1]
    assert after["Parameters"]["Payload"]["restore"] == [0]
    lambda_calls = [s for s in all_states(states).values()
                    if s.get("Resource") == "arn:aws:states:::lambda:invoke"
                    and s["Parameters"]["Payload"].get("step") == "stage"]
    assert len(lambda_calls) == 2  # the batch and the one post_staging, nothing else
    assert result.uses_batches and result.native_tasks == {"stage.transfer": "distributed map"}
    validate(asl_validator, result.definition, tmp_path)


def test_a_local_landing_or_legacy_py_exec_stays_in_one_lambda() -> None:
    doc = routine_doc()
    doc["executors"][0]["params"]["parent_directory"] = "/data/landing"
    result = compiled(doc)
    assert not result.uses_batches and result.native_tasks == {}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "task"
    (root / "routines" / "r").mkdir(parents=True)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(root))
    return root


def listed_like_the_item_reader(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """What Step Functions' ItemReader (s3:listObjectsV2) gives a child: note ``Etag``."""
    items = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        items += [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"],
                   "LastModified": int(o["LastModified"].timestamp()),
                   "StorageClass": o.get("StorageClass", "STANDARD")}
                  for o in page.get("Contents", [])]
    return items


@pytest.mark.parametrize("mode", ["delete", "archive"])
def test_batches_stage_and_verify_then_post_staging_runs_once_on_what_they_verified(
        mode: str, package: Path, dynamo_store: Any, lambda_registry: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    s3 = boto3.client("s3")
    for bucket in ("landing", "dump", "archive", "batch-state"):
        s3.create_bucket(Bucket=bucket)
    prefix = "in/2024-05-07/"
    names = [f"part-{i:02d}.csv" for i in range(7)]
    for name in names:
        s3.put_object(Bucket="landing", Key=prefix + name, Body=f"rows of {name}".encode())
    s3.put_object(Bucket="landing", Key=prefix + "notes.txt", Body=b"not matched")
    (package / "routines" / "r" / "routine.json").write_text(json.dumps(routine_doc(mode)))
    monkeypatch.setenv("ORCHESTRATOR_STORE", f"dynamodb://{dynamo_store.table}")
    monkeypatch.setenv("ORCHESTRATOR_BATCH_STATE", "s3://batch-state/manifests/")
    runner = LambdaRunner(lambda_registry)
    base = {"routine": "routines/r/routine.json", "version": "v1", "execution": EXECUTION,
            "execution_arn": ARN, "step": "stage", "params": {"day": "2024-05-07"},
            "run_date": "2024-05-07"}

    items = listed_like_the_item_reader(s3, "landing", prefix)
    batches = [items[i:i + 3] for i in range(0, len(items), 3)]
    summaries = [runner.handle({**base, "task": 0, "batch": b}, FakeContext(60)) for b in batches]
    # a child retried after its reply was lost: same batch, same manifest, nothing doubled
    runner.handle({**base, "task": 0, "batch": batches[0]}, FakeContext(60))
    assert sum(s["batch"]["files"] for s in summaries) == 7
    assert sum(s["batch"]["skipped"] for s in summaries) == 1
    for name in names:
        body = s3.get_object(Bucket="dump", Key=f"out/{name}")["Body"].read()
        assert body == f"rows of {name}".encode()
    # the landing untouched by the batches; then one file is replaced before post_staging
    assert len(listed_like_the_item_reader(s3, "landing", prefix)) == 8
    s3.put_object(Bucket="landing", Key=prefix + names[3], Body=b"a newer version")

    done = runner.handle({**base, "tasks": [1], "restore": [0]}, FakeContext(60))
    assert done["tasks"][-1]["status"] == "succeeded"

    left = {o["Key"][len(prefix):] for o in s3.list_objects_v2(Bucket="landing",
                                                               Prefix=prefix)["Contents"]}
    assert left == {names[3], "notes.txt"}  # replaced since its copy: kept for the next run
    newer = s3.get_object(Bucket="landing", Key=prefix + names[3])["Body"].read()
    assert newer == b"a newer version"
    if mode == "archive":
        archived = {o["Key"] for o in s3.list_objects_v2(Bucket="archive")["Contents"]}
        assert archived == {f"in/{n}" for n in names if n != names[3]}
    tasks = {(t.task, t.status): t for t in dynamo_store.tasks(EXECUTION)}
    assert set(tasks) == {("transfer", "skipped"), ("post_staging", "succeeded")}  # once each
    post = tasks[("post_staging", "succeeded")]
    assert post.metrics["execution_metadata"]["left"] == 1
    assert post.metrics["execution_metadata"]["staged"] == 7
    # manifests list in landing order (so each chunk of them is one key range to list)
    manifests = [o["Key"].rsplit("/", 1)[1] for o in
                 s3.list_objects_v2(Bucket="batch-state", Prefix="manifests/")["Contents"]]
    first_keys = [bytes.fromhex(name.split("-")[0]).decode() for name in manifests]
    assert first_keys == [b[0]["Key"] for b in batches]
    assert post.metrics["total_rows"] == 6
    logs = " ".join(r.message for r in dynamo_store.logs(EXECUTION))
    assert "batch of 3 listed objects: 3 staged and verified" in logs
    assert dynamo_store.get_run(EXECUTION).host == f"external:{ARN}"


def test_a_failed_batch_writes_no_manifest_and_fails_its_child(
        package: Path, dynamo_store: Any, lambda_registry: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    s3 = boto3.client("s3")
    for bucket in ("landing", "batch-state"):  # no dump bucket: every copy fails
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="landing", Key="in/2024-05-06/a.csv", Body=b"a")
    (package / "routines" / "r" / "routine.json").write_text(json.dumps(routine_doc()))
    monkeypatch.setenv("ORCHESTRATOR_STORE", f"dynamodb://{dynamo_store.table}")
    monkeypatch.setenv("ORCHESTRATOR_BATCH_STATE", "s3://batch-state/manifests/")
    runner = LambdaRunner(lambda_registry)
    event = {"routine": "routines/r/routine.json", "version": "v1", "execution": EXECUTION,
             "step": "stage", "task": 0, "params": {}, "run_date": "2024-05-06",
             "batch": listed_like_the_item_reader(s3, "landing", "in/")}
    with pytest.raises(StepFailed, match="1 of 1 files not staged"):
        runner.handle(event, FakeContext(60))
    assert "Contents" not in s3.list_objects_v2(Bucket="batch-state")
    assert s3.list_objects_v2(Bucket="landing")["KeyCount"] == 1
