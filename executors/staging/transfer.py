"""The staging tasks' bodies, kept apart from the executor so importing it stays cheap.

Files go through in batches of ``BATCH``: a batch is listed, copied (or claimed and archived or
deleted) and recorded in the ledger before the next one is listed, so memory stays flat whatever
the number of files; what ``post_staging`` must know of ``transfer`` is in the ledger on disk.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from orchestrator.executor import Context, TaskMetrics

from . import locations as loc
from .archive import archive
from .claim import Held, hold, release
from .copy import copy_entry
from .journal import Journal
from .ledger import Ledger
from .loader import code_path, function_of, load_callable, load_file
from .parallel import run_all
from .settings import StagingSettings
from .storage import CHANGED, Entry, SourceChanged, Store, as_local

# Per-file work on S3 waits on the network, so it runs 16 requests at a time; locally it is CPU and
# metadata work on one filesystem, and threads only contend for the GIL (a thread pool made the
# local staging slower on two cores), so local batches run in this thread.
S3_WORKERS = 16
# 1,000: one S3 listing page and one DeleteObjects call; memory stays flat, and a ledger transaction
# per batch keeps SQLite's per-commit cost off the per-file path.
BATCH = 1000  # files listed, copied and recorded at a time
T = TypeVar("T")


class StagingError(RuntimeError):
    """Some files could not be staged; they stay in the landing folder for the next run."""


def _workers(*stores: Store) -> int:
    return 1 if all(s.is_local for s in stores) else S3_WORKERS


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, taken from the iterator only as they are needed."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@dataclasses.dataclass
class _Failures:
    """How many files failed, and the first one with why (for the task's error)."""

    count: int = 0
    first: tuple[str, str] | None = None

    def add(self, rel: str, why: object) -> None:
        self.count += 1
        if self.first is None:
            self.first = (rel, str(why))


def transfer(settings: StagingSettings, landing: Store, dump: Store, journal: Journal,
             ledger: Ledger, context: Context, check: Callable[[], None]) -> TaskMetrics:
    """Copy every matching landing file to the dump, verified; record each copy in ``ledger``."""
    function = (load_callable(settings.transform, own_only=not context.trusted)
                if settings.transform else None)
    context.logger.info("staging files matching %r from %s to %s", settings.pattern,
                        landing.uri, dump.uri)

    def one(entry: Entry) -> int:
        return copy_entry(landing, dump, entry, entry.rel, journal, function,
                          dict(settings.transform_args))

    # Delete mode only: a link makes the dump and the landing file one file until post_staging
    # deletes the landing name, i.e. a move. In archive mode the archive keeps the landing file
    # (linked too, see ``archive``), and a dump sharing it would let a change to the dump rewrite
    # the archive, so the dump gets a real copy. A transformation writes new bytes anyway.
    # A linked dump file keeps the landing file's owner and mode, as after mv (a copy gets ours).
    # Until post_staging, a rewrite in place of the landing file shows in the dump too; nothing is
    # lost (post_staging sees the change, leaves the file, and the next run stages it again).
    link = (function is None and settings.archive_or_delete == "delete" and landing.is_local
            and dump.is_local)
    listed = copied = written = changed = 0
    failures = _Failures()
    for batch in batches(landing.list(), BATCH):
        listed += len(batch)
        entries = [e for e in batch if loc.matches(e.rel, settings.pattern)]
        results: list[tuple[Entry, int | Exception]] = []
        if link and as_local(dump).links:
            results, entries = as_local(dump).link_files(as_local(landing), entries, journal,
                                                         check)
        results += run_all(one, entries, _workers(landing, dump), check)
        # Recorded before the next batch is listed: a kill loses at most this batch's record, and
        # those files, in the dump but not in the ledger, are staged again by the rerun (same dump
        # path), never deleted without a record.
        ledger.add([e for e, r in results if not isinstance(r, Exception)])
        for entry, result in results:
            if isinstance(result, SourceChanged):
                changed += 1
                context.logger.warning("%s changed while it was copied: left for the next run",
                                       entry.rel)
            elif isinstance(result, Exception):
                failures.add(entry.rel, result)
                context.logger.error("%s not staged: %s", entry.rel, result)
            else:
                copied += 1
                written += result
    matched = copied + changed + failures.count
    context.logger.info("staged %d of %d files", copied, listed)
    if failures.first is not None:
        rel, why = failures.first
        raise StagingError(f"{failures.count} of {matched} files not staged, first: {rel}: {why}")
    return TaskMetrics(total_rows=copied, execution_metadata={
        "files": copied, "bytes": written, "skipped": listed - matched,
        "changed": changed, "verified": copied})


def legacy_transfer(settings: StagingSettings, landing: Store, dump: Store, ledger: Ledger,
                    context: Context, check: Callable[[], None]) -> TaskMetrics:
    """The seed's contract: ``py_exec.test()``, then ``main(parent, dump, **py_exec_args)`` only
    when ``py_exec_args`` is given (the seed calls nothing but ``test()`` otherwise).

    ``main`` copies by itself, so the files ``post_staging`` may touch are those landed before it
    ran *and* found in the dump afterwards under the same relative path (not empty unless the
    landed file is empty, and on a local dump written by this ``main``, not left over from before).
    The others stay in the landing folder: ``main`` skipped them, failed on them or renamed them.
    The snapshot of the landing folder is held in memory: ``main`` runs once over all of it.
    """
    assert settings.py_exec_path is not None
    module = load_file(Path(code_path(settings.py_exec_path)) / "py_exec.py")
    own_only = not context.trusted
    if function_of(module, "test", own_only)() is False:
        raise StagingError(f"{settings.py_exec_path}/py_exec.py: test() returned False")
    if settings.py_exec_args is None:
        context.logger.info("py_exec_args not given: only py_exec.test() runs, as in the seed")
        return TaskMetrics(total_rows=0,
                           execution_metadata={"files": 0, "missing": 0, "legacy": True})
    # Taken before ``main`` runs: what is found in the dump afterwards is credited only to files
    # that were there before it ran.
    snapshot = {e.rel: e for e in landing.list() if loc.matches(e.rel, settings.pattern)}
    before = _dump_versions(dump, snapshot, check) if dump.is_local else {}
    context.logger.info("legacy py_exec.main on %d landed files", len(snapshot))
    function_of(module, "main", own_only)(settings.parent_directory, settings.dump_directory,
                                          **settings.py_exec_args)
    after = _dump_versions(dump, snapshot, check)
    handled, missing = [], []
    for rel, entry in snapshot.items():
        found = after.get(rel)
        untouched = dump.is_local and found is not None and before.get(rel) == found
        if found is None or (entry.size > 0 and found.size == 0) or untouched:
            missing.append(rel)
        else:
            handled.append(entry)
    for rel in sorted(missing):
        context.logger.warning("%s not found in the dump after py_exec.main: left for the next run",
                               rel)
    ledger.add(handled)
    return TaskMetrics(total_rows=len(handled), execution_metadata={
        "files": len(handled), "missing": len(missing), "legacy": True})


def _dump_versions(dump: Store, snapshot: dict[str, Entry],
                   check: Callable[[], None]) -> dict[str, Entry]:
    """The dump's entry for each snapshot path that exists there (one stat each, parallel on S3)."""
    results = run_all(dump.stat, list(snapshot), _workers(dump), check)
    failed = [(rel, r) for rel, r in results if isinstance(r, Exception)]
    if failed:
        raise StagingError(f"cannot check the dump for {failed[0][0]}: {failed[0][1]}")
    return {rel: found for rel, found in results if isinstance(found, Entry)}


def post_staging(settings: StagingSettings, landing: Store, archive_store: Callable[[], Store],
                 journal: Journal, ledger: Ledger, context: Context,
                 check: Callable[[], None]) -> TaskMetrics:
    """Archive or delete the landing files ``ledger`` holds, if unchanged since they were copied.

    Each file done is forgotten by the ledger; a file put back is recorded as it is now, so a
    resume after a failure finds exactly what is left to do."""
    verb = settings.archive_or_delete
    if ledger.count() == 0:
        context.logger.info("nothing was transferred in this run: nothing to %s", verb)
        return TaskMetrics(total_rows=0, execution_metadata={"files": 0})
    store = archive_store() if verb == "archive" else None
    counts: dict[str, int] = {}
    left = 0
    failures = _Failures()
    for ready, gone in _ready_batches(landing, ledger):
        left += _left(context, gone)
        if not ready:
            continue
        done, changed, failed = _act(landing, store, ready, journal, ledger, check)
        for name, value in done.items():
            counts[name] = counts.get(name, 0) + value
        left += _left(context, changed)
        for rel, why in failed:
            failures.add(rel, why)
    if failures.first is not None:
        rel, why = failures.first
        raise StagingError(f"{failures.count} landing files could not be {verb}d, "
                           f"first: {rel}: {why}")
    if not counts:
        counts = {"deleted": 0} if store is None else {
            "archived": 0, "already_archived": 0, "renamed": 0}
    return TaskMetrics(total_rows=sum(counts.values()), execution_metadata={**counts, "left": left})


def _left(context: Context, rels: list[str]) -> int:
    for rel in sorted(rels):
        context.logger.warning("%s changed or vanished since it was copied: left for the next run",
                               rel)
    return len(rels)


def _ready_batches(landing: Store, ledger: Ledger) -> Iterator[tuple[list[Entry], list[str]]]:
    """Batches of (copied files still as they were copied, paths changed or gone since).

    Locally each recorded file is looked at (one stat); on S3 the landing prefix is listed (one
    request per 1,000 objects) and each listed object looked up in the ledger, and what the
    listing never showed comes last."""
    # A stat per recorded file is cheaper than a listing here, and each one also catches a file
    # replaced since transfer (its inode or ctime differ).
    if landing.is_local:
        for batch in ledger.batches(BATCH):
            ready, gone = [], []
            for entry in batch:
                if landing.stat(entry.rel) == entry:
                    ready.append(entry)
                else:
                    gone.append(entry.rel)
            yield ready, gone
        return
    # The marks of a previous attempt (a resume) would hide files that are gone since.
    ledger.forget_marks()
    for batch in batches(landing.list(), BATCH):
        copied = ledger.lookup(e.rel for e in batch)
        ready = [e for e in batch if copied.get(e.rel) == e]
        ledger.mark(e.rel for e in ready)
        yield ready, []
    for gone in ledger.unmarked(BATCH):
        yield [], gone


def _act(landing: Store, store: Store | None, ready: list[Entry], journal: Journal,
         ledger: Ledger, check: Callable[[], None]) -> "Outcome":
    """Claim, then archive (into ``store``) or delete (``store`` None) one batch; whatever
    happens, put back what was claimed and not done, and tell the ledger."""
    held: list[Held] = []
    done: list[Held] | None = None
    try:
        held, changed, unclaimed = hold(landing, ready, journal, check)
        if store is None:
            counts, more_changed, failed, done = _delete(landing, held, check)
        else:
            counts, more_changed, failed, done = _archive(landing, store, held, journal, check)
    finally:
        # In ``finally``: a failure or a cancel half way must still put back what it claimed, or the
        # files would stay under private names until the next run's recovery.
        back = release(landing, held, journal, done)
        # The put-back file's ctime moved (our renames): its new identity is recorded, else a resume
        # would take the very file it copied for a changed one and leave it.
        ledger.replace(entry for entry in back.values() if entry is not None)
        if done is not None:
            ledger.forget(item.entry.rel for item in done)
    return counts, sorted({*changed, *more_changed, *back}), unclaimed + failed


# counts, changed since copied, failed (with why)
Outcome = tuple[dict[str, int], list[str], list[tuple[str, str]]]
# ... and the items done
_Done = tuple[dict[str, int], list[str], list[tuple[str, str]], list[Held]]


def _delete(landing: Store, held: list[Held], check: Callable[[], None]) -> _Done:
    check()
    # The claimed names, not the landing ones: see ``claim``.
    kept = landing.delete([h.source for h in held])
    changed = [h.entry.rel for h in held if kept.get(h.source.rel) == CHANGED]
    failed = [(h.entry.rel, kept[h.source.rel]) for h in held
              if kept.get(h.source.rel, CHANGED) != CHANGED]
    done = [h for h in held if h.source.rel not in kept]
    return {"deleted": len(done)}, changed, failed, done


def _archive(landing: Store, store: Store, held: list[Held], journal: Journal,
             check: Callable[[], None]) -> _Done:
    result = archive(landing, store, held, journal, _workers(landing, store), check)
    counts = {"archived": result.archived, "already_archived": result.already_archived,
              "renamed": result.renamed}
    failed = [(h.entry.rel, why) for h, why in result.failed]
    return counts, [h.entry.rel for h in result.changed], failed, result.done
