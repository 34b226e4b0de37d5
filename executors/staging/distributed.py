"""Staging as a Step Functions Distributed Map: S3 lists the landing prefix, our Lambda stages each
batch of keys, and one ``post_staging`` runs after every batch succeeded.

Nothing is lost, as in one process: a batch copies each object (pinned to its listed ETag) and
verifies the copy, then writes a *manifest* of the copies it verified:
``{root}/{routine}/{run}/{step}/{first key, hex}-{digest of its keys}.json`` under
``ORCHESTRATOR_BATCH_STATE`` (an ``s3://`` prefix the generated template creates, or a local folder
for runs on one machine). A failed batch writes none and fails the map, so ``post_staging`` never
runs; a retried batch overwrites its own.
``post_staging`` reads the manifests in landing order, ``CHUNK`` entries at a time, lists the key
range each chunk covers, and archives or deletes only objects whose ETag is still the copied one,
each delete conditional on that ETag too. Memory stays bounded by one chunk, whatever the landing
holds. (Archiving lists the archive once per chunk: ``archive`` checks names already there.)
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import Any, Iterable, Iterator

from orchestrator.executor import BATCH_STATE_ENV, Context, TaskMetrics

from . import locations as loc
from .claim import Held
from .storage import CHANGED, Entry, SourceChanged

ITEMS_PER_BATCH = 100  # a batch must end well within a Lambda's 15 minutes
BYTES_PER_BATCH = 200_000  # Step Functions passes at most 256 KiB to a child execution
MAX_CONCURRENCY = 40
CHUNK = 50_000  # manifest entries post_staging handles at once (a few MB)
FIRST_KEY_BYTES = 200  # of a batch's first key in its manifest's name


def map_state(params: dict[str, Any]) -> dict[str, Any] | None:
    """``transfer`` as a batch map over the landing prefix; None (the Lambda, one process) for a
    local landing or the legacy ``py_exec_path``, which copies whole folders by itself."""
    parent = str(params.get("parent_directory") or "")
    if not loc.is_s3(parent) or params.get("py_exec_path"):
        return None
    bucket, _, prefix = parent[len("s3://"):].partition("/")
    if not bucket or "${" in bucket:
        return None
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return {"Type": "Map",
            "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                           "Parameters": {"Bucket": bucket, "Prefix": prefix}},
            "ItemBatcher": {"MaxItemsPerBatch": ITEMS_PER_BATCH,
                            "MaxInputBytesPerBatch": BYTES_PER_BATCH},
            "MaxConcurrency": MAX_CONCURRENCY,
            "ToleratedFailurePercentage": 0}


# ---------------------------------------------------------------------- one batch (a child)

def stage_batch(ex: Any, context: Context, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Copy and verify a batch of listed objects; record the verified copies in a manifest."""
    from .loader import load_callable
    from .parallel import run_all
    from .s3store import S3Store
    from .transfer import S3_WORKERS, StagingError
    from .copy import copy_entry

    landing, dump = ex._store(ex.parent_directory), ex._store(ex.dump_directory)
    if not isinstance(landing, S3Store):
        raise StagingError("a batch of listed objects needs an s3:// parent_directory")
    entries = list(_entries(landing.prefix, items, ex.pattern))
    function = load_callable(ex.transform, own_only=not context.trusted) if ex.transform else None
    journal = ex._journal(context)
    try:
        results = run_all(lambda e: copy_entry(landing, dump, e, e.rel, journal, function,
                                               ex.transform_args),
                          entries, S3_WORKERS, lambda: ex.check_cancelled(context))
    finally:
        journal.finish()
    verified = [e for e, r in results if not isinstance(r, Exception)]
    changed = [e.rel for e, r in results if isinstance(r, SourceChanged)]
    failed = [(e.rel, r) for e, r in results
              if isinstance(r, Exception) and not isinstance(r, SourceChanged)]
    for rel in changed:
        context.logger.warning("%s changed while it was copied: left for the next run", rel)
    if failed:  # no manifest: the map fails, post_staging never runs, the next run copies again
        raise StagingError(f"{len(failed)} of {len(entries)} files not staged, first: "
                           f"{failed[0][0]}: {failed[0][1]}")
    written = sum(r for _, r in results if isinstance(r, int))
    if verified:
        _state(ex, context.routine_name, context.run_id, context.step).write(
            _digest(items), {"entries": [[e.rel, e.size, e.version] for e in verified],
                             "bytes": written})
    context.logger.info("batch of %d listed objects: %d staged and verified, %d changed",
                        len(items), len(verified), len(changed))
    return {"files": len(verified), "bytes": written, "changed": len(changed),
            "skipped": len(items) - len(entries)}


def _entries(prefix: str, items: Iterable[dict[str, Any]], pattern: str) -> Iterator[Entry]:
    """Listed objects (Step Functions' ItemReader spells it ``Etag``) as the store lists them."""
    for item in items:
        key = str(item.get("Key", ""))
        rel = key[len(prefix):] if key.startswith(prefix) else ""
        if not rel or rel.endswith("/") or loc.is_private(posixpath.basename(rel)):
            continue
        if loc.matches(rel, pattern):
            etag = str(item.get("Etag") or item.get("ETag") or "").strip('"')
            yield Entry(rel, int(item.get("Size", 0)), etag)


def _digest(items: list[dict[str, Any]]) -> str:
    """A manifest's name: the hex of its first key (hex keeps the keys' byte order, so manifests
    list in landing order and a chunk of them covers one key range), then a digest of all its
    keys (a retried batch overwrites its own manifest)."""
    keys = sorted(str(item.get("Key", "")) for item in items)
    first = keys[0].encode()[:FIRST_KEY_BYTES].hex() if keys else ""
    return f"{first}-{hashlib.sha256(chr(10).join(keys).encode()).hexdigest()[:32]}"


# ---------------------------------------------------------------------- after all batches

def restore_batches(ex: Any, context: Context, run_id: str) -> bool:
    """``transfer`` ran as batches in run ``run_id``: ``post_staging`` reads their manifests.
    False when this is no batch run (``ORCHESTRATOR_BATCH_STATE`` unset): transfer runs again."""
    from .transfer import StagingError

    if not os.environ.get(BATCH_STATE_ENV):
        return False
    state = _state(ex, context.routine_name, run_id, context.step)
    count = sum(1 for _ in state.names())
    if count == 0 and ex.require_files:
        raise StagingError(f"no file matching {ex.pattern!r} arrived in {ex.parent_directory} "
                           "(require_files: true)")
    ex._batches = state
    context.logger.info("transfer ran as %d verified batches in run %s", count, run_id)
    return True


def post_staging_batches(ex: Any, context: Context) -> TaskMetrics:
    """Archive or delete what the batches verified, a chunk of manifest entries at a time."""
    from .transfer import StagingError

    state, ex._batches = ex._batches, None
    landing = ex._store(ex.parent_directory)
    counts: dict[str, int] = {}
    left: list[str] = []
    failed: list[tuple[str, str]] = []
    staged = 0
    for chunk in _chunks(state):
        staged += len(chunk)
        ex.check_cancelled(context)
        current = _listed(landing, [e.rel for e in chunk])
        ready = [e for e in chunk if current.get(e.rel) == e.version]
        left += [e.rel for e in chunk if current.get(e.rel) != e.version]
        done, changed, why = _act(ex, landing, ready, context)
        for name, value in done.items():
            counts[name] = counts.get(name, 0) + value
        left += changed
        failed += why
    for rel in left:
        context.logger.warning("%s changed or vanished since it was copied: left for the next run",
                               rel)
    if failed:
        raise StagingError(f"{len(failed)} landing files could not be {ex.archive_or_delete}d, "
                           f"first: {failed[0][0]}: {failed[0][1]}")
    context.logger.info("%d files staged and verified by the batches", staged)
    return TaskMetrics(total_rows=sum(counts.values()),
                       execution_metadata={**counts, "left": len(left), "staged": staged,
                                           "batched": True})


def _chunks(state: "BatchState") -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for name in state.names():
        chunk += [Entry(rel, size, version) for rel, size, version in state.read(name)["entries"]]
        if len(chunk) >= CHUNK:
            yield sorted(chunk, key=lambda e: e.rel)
            chunk = []
    if chunk:
        yield sorted(chunk, key=lambda e: e.rel)


def _listed(landing: Any, rels: list[str]) -> dict[str, str]:
    """The current ETag of each of ``rels`` (sorted): one listing of the range they span, far fewer
    requests than a HEAD each. A key gone since is missing from the answer."""
    wanted = set(rels)
    first, last = landing.key(rels[0]), landing.key(rels[-1])
    paginator = landing.client.get_paginator("list_objects_v2")
    found: dict[str, str] = {}
    # StartAfter is exclusive: the first key without its last character sorts just before it
    for page in paginator.paginate(Bucket=landing.bucket, Prefix=landing.prefix,
                                   StartAfter=first[:-1]):
        for obj in page.get("Contents", []):
            if obj["Key"] > last:
                return found
            rel = obj["Key"][len(landing.prefix):]
            if rel in wanted:
                found[rel] = obj["ETag"].strip('"')
    return found


def _act(ex: Any, landing: Any, ready: list[Entry],
         context: Context) -> tuple[dict[str, int], list[str], list[tuple[str, str]]]:
    if not ready:
        return {}, [], []
    if ex.archive_or_delete == "delete":
        kept = landing.delete(ready)
        changed = [rel for rel, why in kept.items() if why == CHANGED]
        failed = [(rel, why) for rel, why in kept.items() if why != CHANGED]
        return {"deleted": len(ready) - len(kept)}, changed, failed
    from .archive import archive
    from .transfer import S3_WORKERS

    journal = ex._journal(context)
    try:
        result = archive(landing, ex._store(ex.archive_directory), [Held(e, e) for e in ready],
                         journal, S3_WORKERS, lambda: ex.check_cancelled(context))
    finally:
        journal.finish()
    counts = {"archived": result.archived, "already_archived": result.already_archived,
              "renamed": result.renamed}
    return (counts, [h.entry.rel for h in result.changed],
            [(h.entry.rel, why) for h, why in result.failed])


# ---------------------------------------------------------------------- where manifests live

class BatchState:
    """Manifests of one step of one run, under an ``s3://`` prefix or a local folder."""

    def __init__(self, root: str, client: Any) -> None:
        self.root, self.client = root, client
        if loc.is_s3(root):
            self.bucket, self.prefix = loc.split_s3(root)

    def write(self, name: str, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        if loc.is_s3(self.root):
            self.client().put_object(Bucket=self.bucket, Key=f"{self.prefix}{name}.json", Body=data)
            return
        folder = Path(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{name}.tmp"
        temp.write_bytes(data)
        os.replace(temp, folder / f"{name}.json")

    def names(self) -> Iterator[str]:
        if loc.is_s3(self.root):
            paginator = self.client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".json"):
                        yield obj["Key"][len(self.prefix):-len(".json")]
        elif os.path.isdir(self.root):
            yield from sorted(p.stem for p in Path(self.root).glob("*.json"))

    def read(self, name: str) -> dict[str, Any]:
        if loc.is_s3(self.root):
            body = self.client().get_object(Bucket=self.bucket, Key=f"{self.prefix}{name}.json")
            return json.loads(body["Body"].read())
        return json.loads((Path(self.root) / f"{name}.json").read_text())


def _state(ex: Any, routine: str, run_id: str, step: str) -> BatchState:
    from .transfer import StagingError

    root = os.environ.get(BATCH_STATE_ENV) or ""
    if not root:
        raise StagingError(f"{BATCH_STATE_ENV} is not set: batches keep their manifests there "
                           "(the template of generate --target step-functions sets it)")
    return BatchState(f"{root.rstrip('/')}/{routine}/{run_id}/{step}/", ex.s3_client)
