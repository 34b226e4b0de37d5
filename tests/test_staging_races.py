"""Landing files replaced while post_staging acts on them, and temp names that always fit.

The replacements happen at exact moments: right after post_staging's listing (the window between
its check and its delete or archive), or right after a file was claimed.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

import aws_fixtures  # noqa: F401  (puts bench/ on sys.path)
from executors.staging import claim as _claim
from executors.staging.locations import NAME_MAX, is_private, private_name, timestamped
from executors.staging.storage import LocalStore
from faultproxy import RESET_AFTER, ByOperation, Fault, FaultProxy
from orchestrator.executor import Cancelled
from staging_helpers import (
    CSV,
    MAPPER,
    RENAMED,
    ROUTINE,
    context,
    dead_journal,
    land,
    run,
    staging,
    tree,
)

NEW = CSV + b"Carol,29,teacher\n"
TRANSFORM = {
    "transform": f"{ROUTINE}/transforms.py:rename_columns",
    "transform_args": {"mapper": MAPPER},
}


def replace_after_the_check(monkeypatch: pytest.MonkeyPatch, path: Path, data: bytes) -> None:
    """Once post_staging has checked ``path`` (its stat matched what transfer copied), rename a
    new version over ``path``, as a producer landing a new version would."""
    original = LocalStore.stat
    armed = [True]

    def stat(self: LocalStore, rel: str) -> Any:
        found = original(self, rel)
        if armed[0] and self.path(rel) == str(path):
            armed[0] = False
            incoming = path.parent.parent / "incoming.tmp"
            incoming.write_bytes(data)
            os.replace(incoming, path)
        return found

    monkeypatch.setattr(LocalStore, "stat", stat)


# 1. a landing file replaced between post_staging's check and its delete or archive


@pytest.mark.parametrize("mode", ["delete", "archive"])
def test_landing_file_replaced_after_the_check_is_left_for_the_next_run(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    land(landing, {"a.csv": CSV, "b.csv": CSV})
    ex = staging(tmp_path, archive_or_delete=mode)
    ex.transfer(context(tmp_path))
    replace_after_the_check(monkeypatch, landing / "a.csv", NEW)
    result = ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(landing) == {"a.csv": NEW}
    assert tree(tmp_path / "archive") == ({} if mode == "delete" else {"b.csv": CSV})
    assert result.execution_metadata["left"] == 1
    monkeypatch.undo()
    run(staging(tmp_path, archive_or_delete=mode), tmp_path)
    assert tree(landing) == {} and tree(tmp_path / "dump") == {"a.csv": NEW, "b.csv": CSV}


def test_file_landing_under_the_name_while_claimed_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Put back never replaces: the file that landed keeps the name, the claimed one gets one."""
    landing = tmp_path / "landing"
    land(landing, {"a.csv": CSV})
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))

    def not_the_copied_file_and_a_new_one_lands(st: os.stat_result, entry: Any) -> bool:
        (landing / "a.csv").write_bytes(NEW)
        return False

    monkeypatch.setattr(_claim, "same_file", not_the_copied_file_and_a_new_one_lands)
    ex.post_staging(context(tmp_path, "post_staging"))
    files = tree(landing)
    assert files.pop("a.csv") == NEW
    [(name, data)] = files.items()
    assert data == CSV and name.startswith("a.") and name.endswith(".csv")


def test_a_claim_left_by_a_killed_run_is_put_back(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    land(landing, {"a.csv": CSV, "sub/b.csv": CSV})
    private = landing / "sub" / private_name("claim", "b.csv")
    os.rename(landing / "sub" / "b.csv", private)
    dead_journal(tmp_path).claim_all([(str(private), str(landing / "sub" / "b.csv"))])
    assert tree(landing) == {"a.csv": CSV, f"sub/{private.name}": CSV}
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    assert tree(tmp_path / "dump") == {"a.csv": CSV, "sub/b.csv": CSV}
    ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(landing) == {}


# 9. legal names: long ones stage, and only our own temp names are skipped

LONG = "a" * (NAME_MAX - 4) + ".csv"
LONG_UTF8 = "é" * ((NAME_MAX - 4) // 2) + ".csv"  # 254 bytes


@pytest.mark.parametrize("params", [{}, TRANSFORM], ids=["copy", "transform"])
def test_landing_names_up_to_name_max_stage_and_archive(tmp_path: Path, params: dict) -> None:
    files = {LONG: CSV, f"sub/{LONG_UTF8}": CSV}
    land(tmp_path / "landing", files)
    land(tmp_path / "archive", {LONG: b"an older file under the same name\n"})
    run(staging(tmp_path, **params), tmp_path)
    expected = RENAMED if params else CSV
    assert tree(tmp_path / "dump") == {rel: expected for rel in files}
    archive = tree(tmp_path / "archive")
    assert (
        archive.pop(f"sub/{LONG_UTF8}") == CSV
        and archive.pop(LONG) == b"an older file under the same name\n"
    )
    [(renamed, data)] = archive.items()
    assert data == CSV and len(renamed.encode()) <= NAME_MAX and renamed.endswith(".csv")
    assert tree(tmp_path / "landing") == {}


def test_timestamped_names_fit_and_cut_between_characters() -> None:
    for name in (LONG, LONG_UTF8, "é" * 127, "short.csv", "x." + "y" * 250):
        stamped = timestamped(f"folder/{name}")
        base = stamped.split("/", 1)[1]
        assert stamped.startswith("folder/") and len(base.encode()) <= NAME_MAX
        base.encode("utf-8")  # whole characters only
    assert timestamped("a/b.csv").startswith("a/b.") and timestamped("a/b.csv").endswith(".csv")


def test_files_named_like_temp_files_are_staged(tmp_path: Path) -> None:
    """Only our exact temp names are skipped, not a user's file that merely looks like one."""
    files = {
        "x.orchestrator-partial": CSV,
        ".x.orchestrator-partial": CSV,
        "sub/y.orchestrator-claim": CSV,
        ".orchestrator-partial-0123456789ABCDEF-0123456789ab": CSV,
    }
    land(tmp_path / "landing", files)
    moved, _ = run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(tmp_path / "dump") == files and tree(tmp_path / "landing") == {}
    assert moved.total_rows == len(files)


def test_another_runs_temp_file_in_the_landing_folder_is_not_staged(tmp_path: Path) -> None:
    """A landing folder that is another routine's dump holds that routine's files in flight."""
    in_flight = {
        f"sub/{private_name('partial', 'z.csv')}": b"half",
        private_name("claim", "w.csv"): CSV,
    }
    land(tmp_path / "landing", {"a.csv": CSV, **in_flight})
    run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(tmp_path / "dump") == {"a.csv": CSV}
    assert tree(tmp_path / "landing") == in_flight


def test_private_names_are_short_and_exact() -> None:
    name = private_name("partial", LONG)
    assert is_private(name) and len(name) < 64 and name.startswith(".")
    assert is_private(private_name("claim", "a.csv"))
    assert not any(
        is_private(n) for n in (name + "x", name[:-1], name.upper(), ".a.csv.orchestrator-partial")
    )


# 1. on S3: every delete is conditional on the ETag that was copied


@pytest.fixture
def buckets(s3: Any) -> Any:
    for name in ("land", "lake"):
        s3.create_bucket(Bucket=name)
    return s3


def s3_staging(**params: Any) -> Any:
    from executors.staging.executor import StagingExecutor

    return StagingExecutor(
        **{
            "parent_directory": "s3://land/in/",
            "dump_directory": "s3://lake/raw/",
            "archive_or_delete": "delete",
            **params,
        }
    )


def objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_s3_object_replaced_right_before_its_delete_is_kept(buckets: Any, tmp_path: Path) -> None:
    buckets.put_object(Bucket="land", Key="in/a.csv", Body=CSV)
    ex = s3_staging()
    ex.transfer(context(tmp_path))

    def land_a_new_version(**_: Any) -> None:
        buckets.put_object(Bucket="land", Key="in/a.csv", Body=NEW)

    for operation in ("DeleteObject", "DeleteObjects"):
        ex.s3_client().meta.events.register(f"before-call.s3.{operation}", land_a_new_version)
    result = ex.post_staging(context(tmp_path, "post_staging"))
    assert objects(buckets, "land") == {"in/a.csv": NEW}
    assert result.execution_metadata == {"deleted": 0, "left": 1}


def recording_proxy(moto_server: str, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Any:
    proxy = FaultProxy(moto_server, record=True, **kwargs)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    return proxy


def headers(request: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def test_s3_deletes_and_copies_name_the_copied_etag(
    buckets: Any, tmp_path: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto ignores these conditions (real S3 enforces them): check that every request has one."""
    import xml.etree.ElementTree as ET

    etags = {
        f"in/{n}.csv": buckets.put_object(Bucket="land", Key=f"in/{n}.csv", Body=CSV + n.encode())[
            "ETag"
        ]
        for n in "abc"
    }
    proxy = recording_proxy(moto_server, monkeypatch)
    try:
        run(s3_staging(archive_or_delete="archive", archive_directory="s3://land/done/"), tmp_path)
        buckets.put_object(Bucket="land", Key="in/d.csv", Body=CSV)
        etags["in/d.csv"] = buckets.head_object(Bucket="land", Key="in/d.csv")["ETag"]
        run(s3_staging(), tmp_path)
    finally:
        proxy.close()
    copies = [headers(r) for r in proxy.requests if r.operation == "CopyObject"]
    assert len(copies) == 3 + 3 + 1  # to the dump, to the archive, to the dump
    for sent in copies:
        source = urllib.parse.unquote(sent["x-amz-copy-source"]).lstrip("/").split("/", 1)[1]
        assert sent["x-amz-copy-source-if-match"] == etags[source]
    [batch] = [r for r in proxy.requests if r.operation == "DeleteObjects"]
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    listed = {
        o.findtext("s3:Key", namespaces=ns): o.findtext("s3:ETag", namespaces=ns)
        for o in ET.fromstring(batch.body).findall("s3:Object", ns)
    }
    assert listed == {k: v for k, v in etags.items() if k != "in/d.csv"}
    [single] = [r for r in proxy.requests if r.operation == "DeleteObject"]
    assert (
        single.path.endswith("/land/in/d.csv") and headers(single)["if-match"] == etags["in/d.csv"]
    )
    assert objects(buckets, "land", "in/") == {}


DELETE_RESULT = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Error><Key>in/a.csv</Key><Code>PreconditionFailed</Code>
<Message>At least one of the pre-conditions you specified did not hold</Message></Error>
<Error><Key>in/b.csv</Key><Code>NoSuchKey</Code>
<Message>The specified key does not exist.</Message></Error>
</DeleteResult>"""


def test_s3_batch_delete_refused_for_a_replaced_object_leaves_it(
    buckets: Any,
    tmp_path: Path,
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3's answer when a.csv was replaced and b.csv deleted by someone else (moto never gives it):
    a.csv is left for the next run, b.csv is gone anyway; neither is a failure."""
    for n in "abc":
        buckets.put_object(Bucket="land", Key=f"in/{n}.csv", Body=CSV)
    answer = Fault.answer("a.csv replaced, b.csv gone", 200, DELETE_RESULT)
    proxy = recording_proxy(
        moto_server, monkeypatch, policy=ByOperation({"DeleteObjects": [answer]})
    )
    try:
        _, result = run(s3_staging(), tmp_path)
    finally:
        proxy.close()
    assert proxy.injected == {("DeleteObjects", answer.name): 1}
    assert result.execution_metadata == {"deleted": 2, "left": 1}
    assert "a.csv changed or vanished since it was copied" in caplog.text


def test_s3_delete_whose_reply_was_lost_is_done(
    buckets: Any, tmp_path: Path, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry of a conditional delete that did happen gets NoSuchKey: the object is gone."""
    buckets.put_object(Bucket="land", Key="in/a.csv", Body=CSV)
    proxy = recording_proxy(
        moto_server, monkeypatch, policy=ByOperation({"DeleteObject": [RESET_AFTER]})
    )
    try:
        _, result = run(s3_staging(), tmp_path)
    finally:
        proxy.close()
    assert proxy.counts["DeleteObject"] == 2 and result.execution_metadata == {
        "deleted": 1,
        "left": 0,
    }
    assert objects(buckets, "land") == {} and objects(buckets, "lake") == {"raw/a.csv": CSV}


@pytest.mark.parametrize("place", ["local", "s3"])
def test_cancel_in_the_middle_of_archiving_puts_claimed_files_back(
    tmp_path: Path, place: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """What was claimed and not yet archived goes back under its own name; nothing is lost."""
    from executors.staging import parallel as _parallel

    files = {f"f{i}.csv": CSV + str(i).encode() for i in range(5)}
    if place == "local":
        land(tmp_path / "landing", files)
        ex = staging(tmp_path)
    else:
        s3 = request.getfixturevalue("buckets")
        for rel, data in files.items():
            s3.put_object(Bucket="land", Key=f"in/{rel}", Body=data)
        ex = s3_staging(archive_or_delete="archive", archive_directory="s3://land/done/")
    ex.transfer(context(tmp_path))
    original = _parallel.run_all

    def cancel_after_the_first(fn: Any, items: Any, workers: int, check: Any) -> Any:
        def first_then_cancel(item: Any) -> Any:
            result = fn(item)
            ex.cancel()
            return result

        return original(first_then_cancel, items, 1, check)

    monkeypatch.setattr("executors.staging.archive.run_all", cancel_after_the_first)
    # every file through a copy
    monkeypatch.setattr("executors.staging.archive._link", lambda *_: None)
    with pytest.raises(Cancelled):
        ex.post_staging(context(tmp_path, "post_staging"))
    if place == "local":
        landing = lambda: tree(tmp_path / "landing")  # noqa: E731
        archive = lambda: tree(tmp_path / "archive")  # noqa: E731
    else:
        s3 = request.getfixturevalue("buckets")
        landing = lambda: {k[3:]: v for k, v in objects(s3, "land", "in/").items()}  # noqa: E731
        archive = lambda: {k[5:]: v for k, v in objects(s3, "land", "done/").items()}  # noqa: E731
    assert landing() == files and len(archive()) == 1 and archive().items() <= files.items()
    monkeypatch.undo()
    run(ex, tmp_path)
    assert landing() == {} and archive() == files


def test_landing_file_gone_after_the_listing_is_left_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent run (``--allow-concurrent``) staged and deleted it meanwhile."""
    landing = tmp_path / "landing"
    land(landing, {"a.csv": CSV, "b.csv": CSV})
    original = LocalStore.list

    def listing(self: LocalStore) -> Iterator[Any]:
        yield from original(self)
        (landing / "a.csv").unlink(missing_ok=True)

    monkeypatch.setattr(LocalStore, "list", listing)
    moved = staging(tmp_path, archive_or_delete="delete").transfer(context(tmp_path))
    assert moved.execution_metadata["changed"] == 1 and tree(tmp_path / "dump") == {"b.csv": CSV}
