"""Staging at scale, deterministically: what transfer copied lives in the ledger on disk (not in
memory), the listing is consumed a batch at a time, and post_staging works batch by batch,
forgetting each file once it is done. Batches are made small here so that a few files show it."""
from __future__ import annotations

import collections
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from executors.staging import transfer as _transfer
from executors.staging.executor import StagingExecutor
from executors.staging.ledger import Ledger
from executors.staging.storage import LocalStore, local_entry
from orchestrator.executor import Cancelled
from staging_helpers import CSV, context, land, staging, tree

FILES = {f"d{i % 2}/f{i}.csv": CSV + str(i).encode() for i in range(10)}


def ledger_path(tmp_path: Path) -> Path:
    return context(tmp_path).state_dir("staging", "transferred") / "r1.sqlite"


def recorded(tmp_path: Path) -> dict[str, Any]:
    ledger = Ledger.open(ledger_path(tmp_path))
    assert ledger is not None
    try:
        return {e.rel: e for batch in ledger.batches(100) for e in batch}
    finally:
        ledger.close()


def test_transfer_records_each_copy_with_its_identity_in_the_ledger_on_disk(
    tmp_path: Path,
) -> None:
    land(tmp_path / "landing", FILES)
    staging(tmp_path, archive_or_delete="delete").transfer(context(tmp_path))
    entries = recorded(tmp_path)
    assert sorted(entries) == sorted(FILES)
    for rel, entry in entries.items():  # device, inode, size, mtime, ctime as listed
        assert entry == local_entry(rel, os.stat(tmp_path / "landing" / rel))
    assert not list(ledger_path(tmp_path).parent.glob("*.part")), "published by a rename"


def test_post_staging_acts_on_what_the_ledger_holds_not_on_a_list_in_memory(
    tmp_path: Path,
) -> None:
    land(tmp_path / "landing", FILES)
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    ledger = Ledger.open(ledger_path(tmp_path))
    assert ledger is not None
    ledger.forget(["d0/f0.csv", "d1/f1.csv"])  # as if transfer had not copied these
    ledger.close()
    deleted = ex.post_staging(context(tmp_path, "post_staging"))
    assert deleted.execution_metadata == {"deleted": 8, "left": 0}
    assert tree(tmp_path / "landing") == {k: FILES[k] for k in ("d0/f0.csv", "d1/f1.csv")}
    assert not ledger_path(tmp_path).exists(), "done: nothing left for a resume"


def test_transfer_lists_copies_and_records_a_batch_before_listing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transfer, "BATCH", 3)
    land(tmp_path / "landing", FILES)
    listed, copied = [0], [0]
    original_list, original_add = LocalStore.list, Ledger.add

    def listing(self: LocalStore) -> Iterator[Any]:
        for entry in original_list(self):
            listed[0] += 1
            yield entry

    ahead = []  # at each ledger write: how many files were listed and not yet recorded

    def add(self: Ledger, entries: list[Any]) -> None:
        original_add(self, entries)
        copied[0] += len(entries)
        ahead.append(listed[0] - copied[0])

    monkeypatch.setattr(LocalStore, "list", listing)
    monkeypatch.setattr(Ledger, "add", add)
    moved = staging(tmp_path, archive_or_delete="delete").transfer(context(tmp_path))
    assert moved.execution_metadata["files"] == 10
    assert ahead == [0, 0, 0, 0], "10 files in batches of 3, each recorded before the next"
    assert tree(tmp_path / "dump") == FILES


def test_post_staging_claims_a_bounded_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transfer, "BATCH", 3)
    land(tmp_path / "landing", FILES)
    ex = staging(tmp_path)  # archive
    ex.transfer(context(tmp_path))
    sizes = []
    original = _transfer.hold

    def hold(landing: Any, entries: list[Any], *args: Any) -> Any:
        sizes.append(len(entries))
        return original(landing, entries, *args)

    monkeypatch.setattr(_transfer, "hold", hold)
    archived = ex.post_staging(context(tmp_path, "post_staging"))
    assert sizes == [3, 3, 3, 1]
    assert archived.execution_metadata["archived"] == 10
    assert tree(tmp_path / "archive") == FILES and tree(tmp_path / "landing") == {}


def test_a_stopped_post_staging_leaves_exactly_the_files_not_done_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled in its second batch: the first batch is deleted and forgotten, the rest is put
    back and stays recorded; post_staging again finishes the job without a 'vanished' file."""
    monkeypatch.setattr(_transfer, "BATCH", 3)
    land(tmp_path / "landing", FILES)
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    stop = threading.Event()
    original, calls = _transfer.hold, []

    def hold(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            stop.set()  # hold's own check then stops the task before its first claim
        return original(*args)

    monkeypatch.setattr(_transfer, "hold", hold)
    with pytest.raises(Cancelled):
        ex.post_staging(context(tmp_path, "post_staging", event=stop))
    monkeypatch.undo()
    left = recorded(tmp_path)
    assert len(left) == 7 and set(left) == set(tree(tmp_path / "landing"))
    again = ex.post_staging(context(tmp_path, "post_staging"))
    assert again.execution_metadata == {"deleted": 7, "left": 0}
    assert tree(tmp_path / "landing") == {} and tree(tmp_path / "dump") == FILES


def test_s3_post_staging_joins_the_listing_with_the_ledger_a_page_at_a_time(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 the landing prefix is listed again and each batch looked up in the ledger; an
    object replaced since the copy is left, one deleted meanwhile is reported, not failed."""
    monkeypatch.setattr(_transfer, "BATCH", 4)
    for name in ("land", "lake"):
        s3.create_bucket(Bucket=name)
    for rel, body in FILES.items():
        s3.put_object(Bucket="land", Key=f"in/{rel}", Body=body)
    ex = StagingExecutor(parent_directory="s3://land/in/", dump_directory="s3://lake/raw/",
                         archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    s3.put_object(Bucket="land", Key="in/d0/f2.csv", Body=b"a new version")
    s3.delete_object(Bucket="land", Key="in/d1/f3.csv")
    looked_up = []
    original = Ledger.lookup

    def lookup(self: Ledger, rels: Any) -> Any:
        rels = list(rels)
        looked_up.append(len(rels))
        return original(self, rels)

    monkeypatch.setattr(Ledger, "lookup", lookup)
    deleted = ex.post_staging(context(tmp_path, "post_staging"))
    assert deleted.execution_metadata == {"deleted": 8, "left": 2}
    assert max(looked_up) <= 4 and sum(looked_up) == 9  # every listed object, four at a time
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="land")
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == ["in/d0/f2.csv"]


def test_s3_archive_lists_only_the_key_range_of_each_batch(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive only grows: each batch lists the archive from its first name to its last,
    never the whole archive, and still finds the copy archived there before."""
    monkeypatch.setattr(_transfer, "BATCH", 4)
    for name in ("land", "lake", "keep"):
        s3.create_bucket(Bucket=name)
    for rel, body in FILES.items():
        s3.put_object(Bucket="land", Key=f"in/{rel}", Body=body)
    for i in range(30):  # archived before, named before today's range
        s3.put_object(Bucket="keep", Key=f"old/a{i:02d}.csv", Body=b"old")
    s3.put_object(Bucket="keep", Key="old/d1/f5.csv", Body=FILES["d1/f5.csv"])
    ex = StagingExecutor(parent_directory="s3://land/in/", dump_directory="s3://lake/raw/",
                         archive_directory="s3://keep/old/")
    listed: collections.Counter = collections.Counter()
    ex.s3_client().meta.events.register(
        "after-call.s3.ListObjectsV2",
        lambda parsed, **_: listed.update(o["Key"] for o in parsed.get("Contents", [])
                                          if o["Key"].startswith("old/")))
    ex.transfer(context(tmp_path))
    archived = ex.post_staging(context(tmp_path, "post_staging"))
    assert archived.execution_metadata["archived"] == 9
    assert archived.execution_metadata["already_archived"] == 1
    assert listed and not any(key.startswith("old/a") for key in listed), listed


def test_an_unpublished_ledger_is_removed_only_once_its_writer_is_gone(tmp_path: Path) -> None:
    """A transfer killed half way leaves its ledger under a .part name that says who wrote it;
    the next transfer removes it, never the one of a writer still alive."""
    from orchestrator.runs.store import process_start

    folder = ledger_path(tmp_path).parent
    dead_child = subprocess.Popen(["sleep", "60"])
    dead_started = process_start(dead_child.pid)
    dead_child.kill()
    dead_child.wait()
    dead = folder / f"old.sqlite.{dead_child.pid}-{dead_started}-00000000.part"
    live = folder / f"other.sqlite.{os.getpid()}-{process_start(os.getpid())}-00000000.part"
    for part in (dead, live):
        part.write_bytes(b"")
    land(tmp_path / "landing", {"a.csv": CSV})
    staging(tmp_path, archive_or_delete="delete").transfer(context(tmp_path))
    assert not dead.exists() and live.exists()
