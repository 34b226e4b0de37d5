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
from typing import Any, Callable

from .claim import Held
from .copy import copy_entry
from .journal import Journal
from .locations import timestamped
from .parallel import run_all
from .storage import CHANGED, Entry, SourceChanged


@dataclasses.dataclass
class ArchiveResult:
    archived: int = 0
    already_archived: int = 0
    renamed: int = 0
    changed: list[Held] = dataclasses.field(default_factory=list)  # left for the next run
    failed: list[tuple[Held, str]] = dataclasses.field(default_factory=list)
    done: list[Held] = dataclasses.field(default_factory=list)  # archived, gone from landing


def archive(landing: Any, store: Any, items: list[Held], journal: Journal, workers: int,
            check: Callable[[], None]) -> ArchiveResult:
    result = ArchiveResult()
    if landing.is_local and store.is_local:
        items = _link_all(landing, store, items, result, check)
    existing = None if store.is_local else {e.rel: e for e in store.list()}

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


def _target(landing: Any, store: Any, item: Held,
            existing: dict[str, Entry] | None) -> tuple[str, str]:
    found = store.stat(item.entry.rel) if existing is None else existing.get(item.entry.rel)
    if found is None:
        return item.entry.rel, "archived"
    if _same(landing, item.source, store, found):
        return item.entry.rel, "already_archived"
    return timestamped(item.entry.rel), "renamed"


def _link_all(landing: Any, store: Any, items: list[Held], result: ArchiveResult,
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


def _link(landing: Any, store: Any, item: Held) -> str | None:
    """Archive by hard link; None when the filesystem cannot link (another device, no support)."""
    source, target, outcome = landing.path(item.source.rel), item.entry.rel, "archived"
    for _ in range(5):
        path = store.path(target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.link(source, path)
        except FileExistsError:
            found = store.stat(target)
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


def _same(landing: Any, source: Entry, store: Any, found: Entry) -> bool:
    """Identical size and checksum (sha256 locally, ETag on S3, MD5 against a plain ETag across)."""
    if source.size != found.size:
        return False
    if landing.is_local and store.is_local:
        return landing.checksum(source.rel) == store.checksum(found.rel)
    if not landing.is_local and not store.is_local:
        return source.version == found.version
    local, s3_etag = (landing, found) if landing.is_local else (store, source)
    rel = source.rel if landing.is_local else found.rel
    return "-" not in s3_etag.version and _md5(local.path(rel)) == s3_etag.version


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()
