"""The staging tasks' bodies, kept apart from the executor so importing it stays cheap."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from orchestrator.executor import Context, TaskMetrics

from . import locations as loc
from .archive import archive
from .claim import Held, hold, release
from .copy import copy_entry
from .journal import Journal
from .loader import code_path, function_of, load_callable, load_file
from .parallel import run_all
from .storage import CHANGED, Entry, SourceChanged, open_store

S3_WORKERS = 16


class StagingError(RuntimeError):
    """Some files could not be staged; they stay in the landing folder for the next run."""


def _workers(*stores: Any) -> int:
    return 1 if all(s.is_local for s in stores) else S3_WORKERS


def transfer(ex: Any, landing: Any, dump: Any, journal: Journal, context: Context) -> tuple[dict[str, Entry], TaskMetrics]:
    listed = list(landing.list())
    entries = [e for e in listed if loc.matches(e.rel, ex.pattern)]
    function = load_callable(ex.transform, own_only=not context.trusted) if ex.transform else None
    context.logger.info("staging %d of %d files from %s to %s", len(entries), len(listed), landing.uri, dump.uri)

    def one(entry: Entry) -> int:
        return copy_entry(landing, dump, entry, entry.rel, journal, function, ex.transform_args)

    results = run_all(one, entries, _workers(landing, dump), lambda: ex.check_cancelled(context))
    handled = {e.rel: e for e, r in results if not isinstance(r, Exception)}
    changed = [e.rel for e, r in results if isinstance(r, SourceChanged)]
    failed = [(e.rel, r) for e, r in results if isinstance(r, Exception) and not isinstance(r, SourceChanged)]
    for rel in changed:
        context.logger.warning("%s changed while it was copied: left for the next run", rel)
    for rel, exc in failed:
        context.logger.error("%s not staged: %s", rel, exc)
    if failed:
        raise StagingError(f"{len(failed)} of {len(entries)} files not staged, first: {failed[0][0]}: {failed[0][1]}")
    written = sum(r for _, r in results if isinstance(r, int))
    return handled, TaskMetrics(total_rows=len(handled), execution_metadata={
        "files": len(handled), "bytes": written, "skipped": len(listed) - len(entries),
        "changed": len(changed), "verified": len(handled)})


def legacy_transfer(ex: Any, landing: Any, dump: Any, context: Context) -> tuple[dict[str, Entry], TaskMetrics]:
    """The seed's contract: ``py_exec.test()``, then ``main(parent, dump, **py_exec_args)`` only
    when ``py_exec_args`` is given (the seed calls nothing but ``test()`` otherwise).

    ``main`` copies by itself, so the files ``post_staging`` may touch are those landed before it
    ran *and* found in the dump afterwards under the same relative path (not empty unless the
    landed file is empty, and on a local dump written by this ``main``, not left over from before).
    The others stay in the landing folder: ``main`` skipped them, failed on them or renamed them.
    """
    module = load_file(Path(code_path(ex.py_exec_path)) / "py_exec.py")
    own_only = not context.trusted
    if function_of(module, "test", own_only)() is False:
        raise StagingError(f"{ex.py_exec_path}/py_exec.py: test() returned False")
    if ex.py_exec_args is None:
        context.logger.info("py_exec_args not given: only py_exec.test() runs, as in the seed")
        return {}, TaskMetrics(total_rows=0, execution_metadata={"files": 0, "missing": 0, "legacy": True})
    snapshot = {e.rel: e for e in landing.list() if loc.matches(e.rel, ex.pattern)}
    check = lambda: ex.check_cancelled(context)  # noqa: E731
    before = _dump_versions(dump, snapshot, check) if dump.is_local else {}
    context.logger.info("legacy py_exec.main on %d landed files", len(snapshot))
    function_of(module, "main", own_only)(ex.parent_directory, ex.dump_directory, **ex.py_exec_args)
    after = _dump_versions(dump, snapshot, check)
    handled, missing = {}, []
    for rel, entry in snapshot.items():
        found = after.get(rel)
        untouched = dump.is_local and found is not None and before.get(rel) == found
        if found is None or (entry.size > 0 and found.size == 0) or untouched:
            missing.append(rel)
        else:
            handled[rel] = entry
    for rel in sorted(missing):
        context.logger.warning("%s not found in the dump after py_exec.main: left for the next run", rel)
    return handled, TaskMetrics(total_rows=len(handled), execution_metadata={
        "files": len(handled), "missing": len(missing), "legacy": True})


def _dump_versions(dump: Any, snapshot: dict[str, Entry], check: Any) -> dict[str, Entry]:
    """The dump's entry for each snapshot path that exists there (one stat each, parallel on S3)."""
    results = run_all(dump.stat, list(snapshot), _workers(dump), check)
    failed = [(rel, r) for rel, r in results if isinstance(r, Exception)]
    if failed:
        raise StagingError(f"cannot check the dump for {failed[0][0]}: {failed[0][1]}")
    return {rel: found for rel, found in results if isinstance(found, Entry)}


def post_staging(ex: Any, landing: Any, journal: Journal, context: Context) -> TaskMetrics:
    handled, ex._handled = ex._handled, {}
    if not handled:
        context.logger.info("nothing was transferred in this run: nothing to %s", ex.archive_or_delete)
        return TaskMetrics(total_rows=0, execution_metadata={"files": 0})
    current = {e.rel: e for e in landing.list()} if landing.exists() else {}
    ready = [e for rel, e in handled.items() if current.get(rel) == e]
    left = set(handled) - {e.rel for e in ready}
    check = lambda: ex.check_cancelled(context)  # noqa: E731
    held: list[Held] = []
    done: list[Held] | None = None
    try:
        held, changed, unclaimed = hold(landing, ready, journal, check)
        left.update(changed)
        if ex.archive_or_delete == "delete":
            counts, changed, failed, done = _delete(landing, held, check)
        else:
            store = open_store(ex.archive_directory, ex.s3_client)
            counts, changed, failed, done = _archive(landing, store, held, journal, check)
        left.update(changed)
        failed = unclaimed + failed
    finally:
        back = release(landing, held, journal, done)
        left.update(back)
        again = {rel: entry for rel, entry in back.items() if entry is not None}
        if again:  # what a resume of this run finds in the landing folder
            ex.keep_for_resume({**handled, **again})
    for rel in sorted(left):
        context.logger.warning("%s changed or vanished since it was copied: left for the next run",
                               rel)
    if failed:
        raise StagingError(f"{len(failed)} landing files could not be {ex.archive_or_delete}d, "
                           f"first: {failed[0][0]}: {failed[0][1]}")
    return TaskMetrics(total_rows=sum(counts.values()),
                       execution_metadata={**counts, "left": len(left)})


# counts, changed since copied, failed (with why), done
Outcome = tuple[dict[str, int], list[str], list[tuple[str, str]], list[Held]]


def _delete(landing: Any, held: list[Held], check: Callable[[], None]) -> Outcome:
    check()
    kept = landing.delete([h.source for h in held])
    changed = [h.entry.rel for h in held if kept.get(h.source.rel) == CHANGED]
    failed = [(h.entry.rel, kept[h.source.rel]) for h in held
              if kept.get(h.source.rel, CHANGED) != CHANGED]
    done = [h for h in held if h.source.rel not in kept]
    return {"deleted": len(done)}, changed, failed, done


def _archive(landing: Any, store: Any, held: list[Held], journal: Journal,
             check: Callable[[], None]) -> Outcome:
    result = archive(landing, store, held, journal, _workers(landing, store), check)
    counts = {"archived": result.archived, "already_archived": result.already_archived,
              "renamed": result.renamed}
    failed = [(h.entry.rel, why) for h, why in result.failed]
    return counts, [h.entry.rel for h in result.changed], failed, result.done
