"""The staging executor against a real S3 API (moto server on loopback), counting the requests it makes."""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest

from executors.staging import s3store as _s3store
from executors.staging.executor import StagingExecutor
from staging_helpers import CSV, MAPPER, RENAMED, ROUTINE, context

def put(s3: Any, bucket: str, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {k[len(prefix):]: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def counted(executor: StagingExecutor) -> collections.Counter:
    """Count the S3 operations the executor's own client makes."""
    calls: collections.Counter = collections.Counter()
    client = executor.s3_client()
    assert client.meta.endpoint_url.startswith("http://127.0.0.1:")
    client.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
    return calls


def run(executor: StagingExecutor, tmp_path: Path) -> tuple:
    return executor.transfer(context(tmp_path)), executor.post_staging(context(tmp_path, "post_staging"))


@pytest.fixture
def buckets(s3: Any) -> Any:
    for name in ("land", "lake"):
        s3.create_bucket(Bucket=name)
    return s3


def test_s3_to_s3_is_server_side_and_batch_deleted(buckets: Any, tmp_path: Path) -> None:
    files = {f"in/d{i % 3}/f{i}.csv": CSV + str(i).encode() for i in range(30)}
    put(buckets, "land", files)
    ex = StagingExecutor(parent_directory="s3://land/in/", dump_directory="s3://lake/raw",
                         archive_or_delete="delete")
    calls = counted(ex)
    moved, deleted = run(ex, tmp_path)
    assert objects(buckets, "lake", "raw/") == {k[len("in/"):]: v for k, v in files.items()}
    assert objects(buckets, "land") == {}
    assert calls["GetObject"] == 0 and calls["HeadObject"] == 0 and calls["PutObject"] == 0
    assert calls["CopyObject"] == 30 and calls["ListObjectsV2"] == 2 and calls["DeleteObjects"] == 1
    assert moved.execution_metadata["verified"] == 30 and deleted.execution_metadata["deleted"] == 30


def test_delete_batches_of_the_batch_size(buckets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_s3store, "DELETE_BATCH", 10)
    put(buckets, "land", {f"in/f{i}": b"x" for i in range(25)})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://lake/raw", archive_or_delete="delete")
    calls = counted(ex)
    run(ex, tmp_path)
    assert calls["DeleteObjects"] == 3 and objects(buckets, "land") == {}
    assert len(objects(buckets, "lake")) == 25


def test_managed_copy_above_the_copy_object_limit(buckets: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_s3store, "COPY_OBJECT_LIMIT", 1)
    body = bytes(range(256)) * 40_000
    put(buckets, "land", {"in/big.bin": body})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://lake/raw", archive_or_delete="delete")
    calls = counted(ex)
    run(ex, tmp_path)
    assert objects(buckets, "lake") == {"raw/big.bin": body}
    assert calls["CopyObject"] == 0 and calls["GetObject"] == 0 and calls["HeadObject"] >= 1


def test_local_to_s3_with_nested_paths(buckets: Any, tmp_path: Path) -> None:
    for rel in ("a.csv", "x/y/b.csv"):
        (tmp_path / "landing" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "landing" / rel).write_bytes(CSV)
    ex = StagingExecutor(parent_directory=str(tmp_path / "landing"), dump_directory="s3://lake/raw/",
                         archive_directory=str(tmp_path / "archive"))
    calls = counted(ex)
    moved, archived = run(ex, tmp_path)
    assert objects(buckets, "lake") == {"raw/a.csv": CSV, "raw/x/y/b.csv": CSV}
    assert calls["PutObject"] == 2 and calls["HeadObject"] == 2
    assert not any((tmp_path / "landing").rglob("*.csv"))
    assert (tmp_path / "archive" / "x" / "y" / "b.csv").read_bytes() == CSV


def test_s3_to_local(buckets: Any, tmp_path: Path) -> None:
    put(buckets, "land", {"in/a.csv": CSV, "in/sub/b.csv": CSV + b"x\n"})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory=str(tmp_path / "dump"),
                         archive_directory="s3://land/done/")
    run(ex, tmp_path)
    dump = {p.relative_to(tmp_path / "dump").as_posix(): p.read_bytes() for p in (tmp_path / "dump").rglob("*")
            if p.is_file()}
    assert dump == {"a.csv": CSV, "sub/b.csv": CSV + b"x\n"}
    assert objects(buckets, "land") == {"done/a.csv": CSV, "done/sub/b.csv": CSV + b"x\n"}


def test_transformed_s3_to_s3_small_and_multipart(buckets: Any, tmp_path: Path) -> None:
    big = CSV + b"Carol,29,teacher\n" * 600_000
    put(buckets, "land", {"in/small.csv": CSV, "in/big.csv": big})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://lake/raw", archive_or_delete="delete",
                         transform=f"{ROUTINE}/transforms.py:rename_columns", transform_args={"mapper": MAPPER})
    calls = counted(ex)
    moved, _ = run(ex, tmp_path)
    assert objects(buckets, "lake", "raw/") == {"small.csv": RENAMED, "big.csv": RENAMED + big[len(CSV):]}
    assert calls["PutObject"] == 1 and calls["CompleteMultipartUpload"] == 1
    assert moved.execution_metadata["bytes"] == len(RENAMED) * 2 + len(big) - len(CSV)
    assert buckets.list_multipart_uploads(Bucket="lake").get("Uploads", []) == []


def test_s3_archive_collision_keeps_both(buckets: Any, tmp_path: Path) -> None:
    put(buckets, "land", {"in/a.csv": CSV, "in/b.csv": CSV, "in_archive/a.csv": b"old\n", "in_archive/b.csv": CSV})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://lake/raw")
    _, archived = run(ex, tmp_path)
    archive = objects(buckets, "land", "in_archive/")
    assert archive.pop("a.csv") == b"old\n" and archive.pop("b.csv") == CSV
    assert list(archive.values()) == [CSV] and next(iter(archive)).startswith("a.")
    assert objects(buckets, "land", "in/") == {}
    assert archived.execution_metadata == {"archived": 0, "already_archived": 1, "renamed": 1, "left": 0}


def test_s3_object_replaced_after_transfer_stays(buckets: Any, tmp_path: Path) -> None:
    put(buckets, "land", {"in/a.csv": CSV, "in/b.csv": CSV})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://lake/raw", archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    put(buckets, "land", {"in/a.csv": CSV + b"new\n", "in/late.csv": CSV})
    result = ex.post_staging(context(tmp_path, "post_staging"))
    assert objects(buckets, "land") == {"in/a.csv": CSV + b"new\n", "in/late.csv": CSV}
    assert result.execution_metadata == {"deleted": 1, "left": 1}


def test_rerun_aborts_multipart_upload_left_by_a_crash(buckets: Any, tmp_path: Path) -> None:
    upload = buckets.create_multipart_upload(Bucket="lake", Key="raw/a.csv")["UploadId"]
    buckets.create_multipart_upload(Bucket="lake", Key="raw/a.csv.other")
    journal = context(tmp_path).state_dir("staging") / "journal.jsonl"
    journal.write_text(json.dumps({"begin": "s3://lake/raw/a.csv"}) + "\n")
    put(buckets, "land", {"in/a.csv": CSV})
    ex = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://lake/raw", archive_or_delete="delete")
    run(ex, tmp_path)
    remaining = buckets.list_multipart_uploads(Bucket="lake").get("Uploads", [])
    assert [u["Key"] for u in remaining] == ["raw/a.csv.other"] and upload not in [u["UploadId"] for u in remaining]
    assert objects(buckets, "lake") == {"raw/a.csv": CSV}
