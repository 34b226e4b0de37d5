"""Move staged landing files to the archive without ever overwriting a different archived file.

Same content already archived → only the landing copy goes. Different content under that name →
archive as ``name.<UTC timestamp>.ext``. Local→local uses ``os.link`` + ``unlink``: linking never
replaces an existing file, and a crash in between leaves two names for one identical file.
Local landing files arrive claimed (``claim``): what is linked, copied and removed is the claimed
file, under the name it was transferred with.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable

from .claim import Held
from .copy import copy_entry
from .journal import Journal
from .locations import timestamped
from .parallel import run_all
from .storage import CHANGED, Entry, SourceChanged, Store, as_local, as_s3


@dataclasses.dataclass
class ArchiveResult:
    archived: int = 0
    already_archived: int = 0
    renamed: int = 0
    changed: list[Held] = dataclasses.field(default_factory=list)  # left for the next run
    failed: list[tuple[Held, str]] = dataclasses.field(default_factory=list)
    done: list[Held] = dataclasses.field(default_factory=list)  # archived, gone from landing


def archive(landing: Store, store: Store, items: list[Held], journal: Journal, workers: int,
            check: Callable[[], None]) -> ArchiveResult:
    result = ArchiveResult()
    if landing.is_local and store.is_local:
        # Links first: no bytes are copied, and linking never replaces an archived file. Only what
        # cannot be linked (another filesystem) goes through the copies below.
        items = _link_all(landing, store, items, result, check)
    # On S3 one ranged listing answers "already archived?" for the whole batch, instead of a HEAD
    # per file.
    existing = None if store.is_local else _archived(store, items)

    def one(item: Held) -> str:
        target, outcome = _target(landing, store, item, existing)
        if outcome != "already_archived":
            copy_entry(landing, store, item.source, target, journal)
        return outcome

    done = run_all(one, items, workers, check)
    copied = [(i, o) for i, o in done if not isinstance(o, Exception)]
    result.changed += [i for i, o in done if isinstance(o, SourceChanged)]
    result.failed += [(i, str(o)) for i, o in done
                      if isinstance(o, Exception) and not isinstance(o, SourceChanged)]
    # Only after each copy is verified, and by the claimed names locally or conditionally on the
    # copied ETag on S3, so a replaced landing file is never what is deleted.
    kept = landing.delete([i.source for i, _ in copied])
    result.changed += [i for i, _ in copied if kept.get(i.source.rel) == CHANGED]
    result.failed += [(i, kept[i.source.rel]) for i, _ in copied
                      if kept.get(i.source.rel, CHANGED) != CHANGED]
    _count(result, [o for i, o in copied if i.source.rel not in kept])
    result.done += [i for i, _ in copied if i.source.rel not in kept]
    return result


def _count(result: ArchiveResult, outcomes: list[str]) -> None:
    for outcome in outcomes:
        setattr(result, outcome, getattr(result, outcome) + 1)


def _archived(store: Store, items: list[Held]) -> dict[str, Entry] | None:
    """What the S3 archive holds under the names of ``items``, from one listing of the range of
    keys between the first and the last name (not of the whole archive, which only grows).
    None where listings are not in key order (S3 Express directory buckets): then each name is
    looked up by itself."""
    s3 = as_s3(store)
    names = {item.entry.rel for item in items}
    if not names or s3.bucket.endswith("--x-s3"):
        return None
    # The batch's names are a slice of the landing order, so their range in the archive is narrow
    # whatever the archive's size.
    first, last = min(names), max(names)  # code point order is UTF-8 byte order, as S3 lists
    found = {}
    # StartAfter is exclusive: start after a key that sorts just before the first name.
    for entry in s3.list(start_after=s3.key(first)[:-1]):
        if entry.rel > last:
            break
        if entry.rel in names:
            found[entry.rel] = entry
    return found


def _target(landing: Store, store: Store, item: Held,
            existing: dict[str, Entry] | None) -> tuple[str, str]:
    found = store.stat(item.entry.rel) if existing is None else existing.get(item.entry.rel)
    if found is None:
        return item.entry.rel, "archived"
    if _same(landing, item.source, store, found):
        return item.entry.rel, "already_archived"
    # A different file already archived under the name is kept: ours gets a timestamped name beside
    # it, never over it.
    return timestamped(item.entry.rel), "renamed"


def _link_all(landing: Store, store: Store, items: list[Held], result: ArchiveResult,
              check: Callable[[], None]) -> list[Held]:
    """Link what can be linked; return the items that need a copy instead."""
    unlinked = []
    for item in items:
        check()
        try:
            outcome = _link(landing, store, item)
        except OSError as exc:
            result.failed.append((item, exc.strerror or str(exc)))
            continue
        if outcome is None:
            unlinked.append(item)
        else:
            _count(result, [outcome])
            result.done.append(item)
    return unlinked


def _link(landing: Store, store: Store, item: Held) -> str | None:
    """Archive by hard link; None when the filesystem cannot link (another device, no support)."""
    local_landing, local_store = as_local(landing), as_local(store)
    source, target, outcome = local_landing.path(item.source.rel), item.entry.rel, "archived"
    # Bounded: each turn either links or moves on to a fresh timestamped name, and five taken names
    # in a row mean something else is writing there; the file is then copied instead.
    for _ in range(5):
        path = local_store.path(target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.link(source, path)
        except FileExistsError:
            found = store.stat(target)
            # The same bytes are archived already (a rerun after a kill between link and unlink, or
            # the same file landed twice): only the landing copy goes.
            if found is not None and _same(landing, item.source, store, found):
                os.unlink(source)
                return "already_archived"
            target, outcome = timestamped(item.entry.rel), "renamed"
            continue
        except OSError:
            return None
        os.unlink(source)
        return outcome
    return None


def _same(landing: Store, source: Entry, store: Store, found: Entry) -> bool:
    """Identical size and checksum (sha256 locally, ETag on S3, MD5 against a plain ETag across)."""
    if source.size != found.size:
        return False
    if landing.is_local and store.is_local:
        return landing.checksum(source.rel) == store.checksum(found.rel)
    if not landing.is_local and not store.is_local:
        return source.version == found.version
    local, s3_etag = (landing, found) if landing.is_local else (store, source)
    rel = source.rel if landing.is_local else found.rel
    return "-" not in s3_etag.version and _md5(as_local(local).path(rel)) == s3_etag.version


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()
