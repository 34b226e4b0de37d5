"""S3→S3 staging through a fault-injecting proxy (bench/faultproxy.py): 503 SlowDown, connection
resets before a request reaches S3 and after S3 applied it (the reply lost). Every object must end
up in the dump (and the archive) exactly once, with its content, and nothing may stay behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import aws_fixtures  # noqa: F401  (puts bench/ on sys.path)
from executors.staging import s3store as _s3store
from executors.staging.executor import StagingExecutor
from faultproxy import RESET, RESET_AFTER, SLOWDOWN, ByOperation, Fault, FaultProxy, Rate
from staging_helpers import CSV, MAPPER, RENAMED, ROUTINE, context

BIG = 9 * 2**20  # above s3transfer's multipart threshold: a managed, multipart copy


class FirstThenRate:
    """Named operations get their faults first (so the rare ones are surely hit), then every
    request a seeded random share of 503s and resets."""

    by_operation = True

    def __init__(self, first: dict[str, list[Fault]], p: float, seed: int) -> None:
        self.first = ByOperation(first)
        self.rate = Rate(p, [SLOWDOWN, RESET, RESET_AFTER], seed)

    def __call__(self, operation: str) -> Fault | None:
        return self.first(operation) or self.rate(operation)


def everything(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {
        o["Key"][len(prefix) :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for page in pages
        for o in page.get("Contents", [])
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["delete", "archive"])
def test_s3_staging_through_throttling_and_resets_moves_every_object_once(
    s3: Any, tmp_path: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(_s3store, "COPY_OBJECT_LIMIT", 2**20)
    for bucket in ("land", "lake"):
        s3.create_bucket(Bucket=bucket)
    files = {
        f"d{i % 4}/f{i:03d}.csv": CSV + f"row,{i},x\n".encode() * (1 + i % 3) for i in range(40)
    }
    files["big.bin"] = os.urandom(BIG)
    for rel, data in files.items():
        s3.put_object(Bucket="land", Key=f"in/{rel}", Body=data)
    first = {
        "ListObjectsV2": [SLOWDOWN],
        "CopyObject": [RESET_AFTER, RESET],
        "DeleteObjects": [RESET_AFTER],
        "UploadPartCopy": [SLOWDOWN],
        "CompleteMultipartUpload": [RESET_AFTER],
    }
    proxy = FaultProxy(moto_server, policy=FirstThenRate(first, p=0.15, seed=7))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    archive = {"archive_directory": "s3://land/done/"} if mode == "archive" else {}
    ex = StagingExecutor(
        parent_directory="s3://land/in/",
        dump_directory="s3://lake/raw/",
        archive_or_delete=mode,
        **archive,
    )
    try:
        moved = ex.transfer(context(tmp_path))
        done = ex.post_staging(context(tmp_path, "post_staging"))
    finally:
        ex.close()
        proxy.close()

    assert everything(s3, "lake", "") == {f"raw/{rel}": data for rel, data in files.items()}
    assert everything(s3, "land", "in/") == {}
    assert everything(s3, "land", "done/") == (files if mode == "archive" else {})
    assert s3.list_multipart_uploads(Bucket="lake").get("Uploads", []) == []
    assert s3.list_multipart_uploads(Bucket="land").get("Uploads", []) == []
    assert (
        moved.execution_metadata["verified"] == len(files) and done.execution_metadata["left"] == 0
    )
    kinds = {(op, name) for op, name in proxy.injected}
    assert {name for _, name in kinds} == {"503 SlowDown", "reset", "reset after"}
    assert {op for op, _ in kinds} >= set(first)
    assert list(context(tmp_path).state_dir("staging").glob("journal-*")) == []


@pytest.mark.parametrize("write", ["managed copy", "transform"])
def test_an_upload_orphaned_by_a_lost_create_reply_is_aborted(
    s3: Any, tmp_path: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """S3 created the upload, its reply was lost, botocore made another: the first is nobody's."""
    monkeypatch.setattr(_s3store, "COPY_OBJECT_LIMIT", 2**20)
    monkeypatch.setattr(_s3store, "SINGLE_PUT_LIMIT", 1)
    for bucket in ("land", "lake"):
        s3.create_bucket(Bucket=bucket)
    body = CSV + os.urandom(BIG) if write == "managed copy" else CSV
    s3.put_object(Bucket="land", Key="in/a.csv", Body=body)
    proxy = FaultProxy(moto_server, policy=ByOperation({"CreateMultipartUpload": [RESET_AFTER]}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    params = (
        {
            "transform": f"{ROUTINE}/transforms.py:rename_columns",
            "transform_args": {"mapper": MAPPER},
        }
        if write == "transform"
        else {}
    )
    ex = StagingExecutor(
        parent_directory="s3://land/in/",
        dump_directory="s3://lake/raw/",
        archive_or_delete="delete",
        **params,
    )
    try:
        ex.transfer(context(tmp_path))
    finally:
        ex.close()
        proxy.close()
    assert proxy.counts["CreateMultipartUpload"] == 2 and proxy.injected
    assert s3.list_multipart_uploads(Bucket="lake").get("Uploads", []) == []
    expected = body if write == "managed copy" else RENAMED
    assert s3.get_object(Bucket="lake", Key="raw/a.csv")["Body"].read() == expected
