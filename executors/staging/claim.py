"""Act on exactly the landing file that was copied, even if a new version lands meanwhile.

A check ("unchanged since the copy?") and a later delete or archive by path leave a window in
which a new version renamed over the landing file is deleted, or archived without ever reaching
the dump. So ``post_staging`` first *claims* each local landing file: an atomic rename to a private
name in the same folder (``.orchestrator-claim-…``, skipped by listings). The claimed file can no
longer be replaced; its identity (device, inode, size, mtime) is then compared with what
``transfer`` copied. A different file is put back as a landing file at once, and what was claimed
but not archived or deleted (a failure, a cancel) is put back afterwards. Putting back never
overwrites: a file that landed under the name meanwhile keeps it, ours takes a timestamped name.
Each claim is journaled before the rename, so a crash in between is undone by the next run.

S3 needs no claim: its deletes are conditional on the copied ETag (see ``_s3store``).
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

from .journal import Journal
from .locations import private_name, timestamped
from .storage import Entry, Store, as_local, local_entry, same_file


class Held(NamedTuple):
    """A landing file post_staging acts on: ``entry`` as transferred (its name is the archive
    name), ``source`` what to read and remove (a claimed private name locally, ``entry`` on S3)."""

    entry: Entry
    source: Entry

    @property
    def claimed(self) -> bool:
        return self.source is not self.entry


# 256: one journal write per 256 claims rather than one per file, in lines of tens of kB.
CLAIM_BATCH = 256  # claims journaled with one write, before their renames


def hold(
    landing: Store, entries: list[Entry], journal: Journal, check: Callable[[], None]
) -> tuple[list[Held], list[str], list[tuple[str, str]]]:
    """The entries to act on, claimed when local; the relative paths that changed since they
    were copied; and those that cannot be claimed, with why."""
    if not landing.is_local:
        return [Held(e, e) for e in entries], [], []
    local = as_local(landing)
    held: list[Held] = []
    changed: list[str] = []
    failed: list[tuple[str, str]] = []
    for start in range(0, len(entries), CLAIM_BATCH):
        # Between sub-batches only: a cancel never stops a batch between its journal line and its
        # renames, where the end records below would be written for claims still open.
        check()
        batch = []
        for entry in entries[start : start + CLAIM_BATCH]:
            path = local.path(entry.rel)
            folder, _, base = path.rpartition(os.sep)
            name = private_name("claim", base)
            batch.append((entry, path, name, f"{folder}{os.sep}{name}"))
        # Journaled before any rename: a kill right after a rename leaves a file under a private
        # name that only the journal can return to its landing name.
        journal.claim_all([(private, path) for _, path, _, private in batch])
        settled = []  # claims that hold nothing: never renamed, or put back
        done = 0
        try:
            for entry, path, name, private in batch:
                claimed = _claim(entry, path, name, private, changed, failed)
                if claimed is None:
                    settled.append(private)
                else:
                    held.append(Held(entry, claimed))
                done += 1
        finally:
            # After an error, the rest of the batch was never renamed; the claim that failed
            # half way stays open, for recovery to put its file back.
            journal.end_all(settled + [private for *_, private in batch[done + 1 :]])
    return held, changed, failed


def _claim(
    entry: Entry,
    path: str,
    name: str,
    private: str,
    changed: list[str],
    failed: list[tuple[str, str]],
) -> Entry | None:
    """Rename ``path`` to ``private``; None (nothing held) unless it is the copied file."""
    try:
        # The claim itself: a rename is atomic, so from here on a new version renamed over the
        # landing name lands beside our file, not over it, and we delete only what we checked.
        os.rename(path, private)
    except FileNotFoundError:
        changed.append(entry.rel)
        return None
    except OSError as exc:
        failed.append((entry.rel, f"cannot claim it: {exc.strerror or exc}"))
        return None
    try:
        # Checked after the rename, on the private name nobody else writes to: a check before it
        # would leave a window in which a replaced file is taken for the copied one.
        st = os.stat(private)
    except OSError:
        st = None
    # Not the copied file (replaced or rewritten since transfer): it goes back under its name at
    # once and is left for the next run.
    if st is None or not same_file(st, entry):
        put_back(private, path)
        changed.append(entry.rel)
        return None
    folder, slash, _ = entry.rel.rpartition("/")
    # The claimed name, in the landing folder's relative terms: delete and archive read and remove
    # it through the same store.
    return local_entry(f"{folder}{slash}{name}", st)


def release(
    landing: Store, held: list[Held], journal: Journal, done: list[Held] | None = None
) -> dict[str, Entry | None]:
    """Put back every claimed file not archived or deleted, and end every claim. ``done``: the
    items known to be archived or deleted (None after an error: each one is looked at).
    Returns the relative paths put back, each with the file's entry as it is now when it is back
    under its own name (see ``_back_as``), else None."""
    claimed = [item for item in held if item.claimed]
    if not claimed:
        return {}
    local = as_local(landing)
    # After an error ``done`` is None and every claimed file is offered back: ``put_back`` finds out
    # by itself which ones are gone (archived or deleted) and returns None for them.
    finished = {item.source.rel for item in done or ()}
    back: dict[str, Entry | None] = {}
    for item in claimed:
        if done is None or item.source.rel not in finished:
            path = local.path(item.entry.rel)
            where = put_back(local.path(item.source.rel), path)
            if where is not None:
                back[item.entry.rel] = _back_as(item.entry, where, path)
    # Only once every file is back or done: ending a claim first and dying before its put-back would
    # strand a landing file under a private name no journal names.
    journal.end_all([local.path(item.source.rel) for item in claimed])
    return back


def _back_as(entry: Entry, where: str, path: str) -> Entry | None:
    """The entry of a file put back as ``path``: our renames moved its ctime, so the entry
    ``transfer`` saved no longer matches it, and a later ``post_staging`` (a resume) would take
    the very file it copied for a changed one. None when it is not that file back at ``path``."""
    # Under a timestamped name (its own was taken meanwhile) it is a new landing file for the next
    # run, not the one the ledger recorded.
    if where != path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return local_entry(entry.rel, st) if same_file(st, entry) else None


def put_back(private: str, path: str) -> str | None:
    """Return a claimed file to the landing folder as ``path``, or as a timestamped name beside it
    when ``path`` is taken: never over another file. None when ``private`` is gone (it was archived
    or deleted). Used by recovery too, so a put back half done by a killed run is finished."""
    # Link then unlink, not rename: rename replaces an existing file, and a producer may have landed
    # a new version under the name while ours was claimed.
    candidate = path
    for _ in range(20):
        try:
            os.link(private, candidate, follow_symlinks=False)  # link never replaces a file
        except FileExistsError:
            if _same_inode(private, candidate):
                break  # linked by an earlier attempt that did not get to unlink
            candidate = os.path.join(os.path.dirname(path), timestamped(os.path.basename(path)))
            continue
        except FileNotFoundError:
            if not os.path.lexists(private):
                return None
            os.makedirs(os.path.dirname(candidate), exist_ok=True)  # removed meanwhile
            continue
        except OSError:  # no hard links here, or a folder was renamed over the landing file
            if os.path.lexists(candidate):
                candidate = os.path.join(os.path.dirname(path), timestamped(os.path.basename(path)))
                continue
            # No hard links on this filesystem: a rename, only after seeing the name free (a race
            # with a producer remains here, where links are not available to close it).
            os.rename(private, candidate)
            return candidate
        os.unlink(private)
        return candidate
    else:
        raise FileExistsError(f"cannot put {private} back as {path}: every name tried is taken")
    os.unlink(private)
    return candidate


def _same_inode(a: str, b: str) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
