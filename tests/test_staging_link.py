"""Delete mode, local to local on one filesystem: transfer publishes each landing file in the dump
as a hard link (no bytes copied) and post_staging's delete makes it a move. The link must be
the very file that was listed, a landing file replaced at any moment must never be deleted, and
what cannot be linked (a symlink, another filesystem) is copied as before."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from executors.staging import storage as _storage
from executors.staging.locations import is_private
from executors.staging.storage import LocalStore
from staging_helpers import CSV, context, dead_journal, land, run, staging, tree

NEW = CSV + b"Carol,29,teacher\n"
FILES = {"a.csv": CSV, "sub/b.csv": CSV + b"b\n", "sub/deeper/c.csv": CSV + b"c\n"}


def every_name(folder: Path) -> list[str]:
    """Every file below ``folder``, our hidden temp names included."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_delete_mode_links_then_moves_and_leaves_no_temp_names(tmp_path: Path) -> None:
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    inodes = {rel: os.stat(landing / rel).st_ino for rel in FILES}
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    assert {rel: os.stat(dump / rel).st_ino for rel in FILES} == inodes, "linked, not copied"
    assert tree(landing) == FILES, "transfer leaves the landing files"
    ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(landing) == {} and tree(dump) == FILES
    assert every_name(dump) == sorted(FILES)
    assert all(os.stat(dump / rel).st_nlink == 1 for rel in FILES)


def test_archive_mode_still_copies_so_the_dump_never_shares_the_archived_file(
    tmp_path: Path,
) -> None:
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    run(staging(tmp_path, archive_or_delete="archive"), tmp_path)
    assert tree(dump) == FILES and tree(tmp_path / "archive") == FILES
    for rel in FILES:
        assert os.stat(dump / rel).st_ino != os.stat(tmp_path / "archive" / rel).st_ino


def replace_after_listing(monkeypatch: pytest.MonkeyPatch, path: Path, data: bytes) -> None:
    """Once the landing folder is listed (and before anything is linked), rename a new version
    over ``path``, as a producer landing a new version would."""
    original = LocalStore.list

    def listing(self: LocalStore) -> Iterator[Any]:
        yield from original(self)
        incoming = path.parent / "incoming.part"
        incoming.write_bytes(data)
        os.replace(incoming, path)

    monkeypatch.setattr(LocalStore, "list", listing)


def test_a_file_replaced_between_listing_and_link_is_neither_published_nor_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    replace_after_listing(monkeypatch, landing / "a.csv", NEW)
    ex = staging(tmp_path, archive_or_delete="delete")
    result = ex.transfer(context(tmp_path))
    assert result.execution_metadata["changed"] == 1
    assert "a.csv" not in every_name(dump), "the new version was not the listed file"
    assert every_name(dump) == sorted(set(FILES) - {"a.csv"}), "no temp link left behind"
    ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(landing) == {"a.csv": NEW}
    monkeypatch.undo()
    run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(landing) == {} and tree(dump) == {**FILES, "a.csv": NEW}


def test_a_file_replaced_after_transfer_is_never_deleted(tmp_path: Path) -> None:
    """The landing name now holds another file than the one linked into the dump."""
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    incoming = tmp_path / "incoming.part"
    incoming.write_bytes(NEW)
    os.replace(incoming, landing / "a.csv")
    result = ex.post_staging(context(tmp_path, "post_staging"))
    assert result.execution_metadata == {"deleted": len(FILES) - 1, "left": 1}
    assert tree(landing) == {"a.csv": NEW} and tree(dump) == FILES
    run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(landing) == {} and tree(dump) == {**FILES, "a.csv": NEW}


def test_transfer_run_twice_relinks_the_same_file_without_leaving_a_temp_name(
    tmp_path: Path,
) -> None:
    """Renaming a link over another name of the same file does nothing (POSIX): the temp name
    would stay, so it is removed."""
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.transfer(context(tmp_path))
    ex.transfer(context(tmp_path))
    assert every_name(dump) == sorted(FILES)
    ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(landing) == {} and tree(dump) == FILES


def test_a_symlinked_landing_file_is_copied_not_linked(tmp_path: Path) -> None:
    landing, dump, outside = tmp_path / "landing", tmp_path / "dump", tmp_path / "outside.csv"
    land(landing, FILES)
    outside.write_bytes(NEW)
    os.symlink(outside, landing / "link.csv")
    run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(dump) == {**FILES, "link.csv": NEW}
    assert not os.path.islink(dump / "link.csv")
    assert os.stat(dump / "link.csv").st_ino != os.stat(outside).st_ino
    assert outside.read_bytes() == NEW and every_name(dump) == sorted([*FILES, "link.csv"])


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM])
def test_files_that_cannot_be_linked_are_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Another filesystem (EXDEV), or a file we may read but not link (EPERM, as
    ``fs.protected_hardlinks`` answers for another user's file)."""
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    tried = []

    def cannot_link(*args: Any, **kwargs: Any) -> None:
        tried.append(args[0])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_storage.os, "link", cannot_link)
    ex = staging(tmp_path, archive_or_delete="delete")
    result = ex.transfer(context(tmp_path))
    monkeypatch.undo()
    assert result.execution_metadata["files"] == len(FILES) and tree(dump) == FILES
    assert len(tried) == (1 if code == errno.EXDEV else len(FILES)), "EXDEV: not tried again"
    for rel in FILES:
        assert os.stat(dump / rel).st_ino != os.stat(landing / rel).st_ino
    ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(landing) == {} and tree(dump) == FILES


def test_temp_links_left_by_a_killed_run_are_removed_and_the_landing_file_kept(
    tmp_path: Path,
) -> None:
    landing, dump = tmp_path / "landing", tmp_path / "dump"
    land(landing, FILES)
    (dump / "sub").mkdir(parents=True)
    temps = [dump / "sub" / f".orchestrator-partial-{'0' * 16}-{i:012x}" for i in range(3)]
    os.link(landing / "sub" / "b.csv", temps[0])  # linked, killed before its rename
    dead_journal(tmp_path).begin_all([str(t) for t in temps])  # the others never made
    assert all(is_private(t.name) for t in temps)
    run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(landing) == {} and tree(dump) == FILES
    assert every_name(dump) == sorted(FILES)


def test_a_listing_skips_names_renamed_or_removed_after_their_folder_was_read(
        tmp_path: Path) -> None:
    # A sender renaming "x.part" to "x", or removing a folder, while the listing walks: the names
    # read before are gone by the time they are looked at, which must not fail the listing.
    root = tmp_path / "landing"
    (root / "gone").mkdir(parents=True)
    (root / "gone" / "x.csv").write_bytes(CSV)
    for name in ("a.csv", "b.csv", "c.csv"):
        (root / name).write_bytes(CSV)
    listing = LocalStore(str(root)).list()
    first = next(listing)
    for name in ("a.csv", "b.csv", "c.csv"):
        if name != first.rel:
            (root / name).rename(root / f"{name}.renamed")
    (root / "gone" / "x.csv").unlink()
    (root / "gone").rmdir()
    rest = [entry.rel for entry in listing]
    assert first.rel in ("a.csv", "b.csv", "c.csv"), first
    # The new names may or may not be seen by this walk (the next poll lists them); the old ones
    # and the removed folder's file must not be.
    assert set(rest) <= {f"{name}.renamed" for name in ("a.csv", "b.csv", "c.csv")}, rest
