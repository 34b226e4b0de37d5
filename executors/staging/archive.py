"""Move staged landing files to the archive without ever overwriting a different archived file.

Same content already archived → only the landing copy goes. Different content under that name →
archive as ``name.<UTC timestamp>.ext``. Local→local uses ``os.link`` + ``unlink``: linking never
replaces an existing file, and a crash in between leaves two names for one identical file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from datetime import datetime, timezone
from typing import Any, Callable

from .copy import copy_entry
from .journal import Journal
from .parallel import run_all
from .storage import Entry


@dataclasses.dataclass
class ArchiveResult:
    archived: int = 0
    already_archived: int = 0
    renamed: int = 0
    failed: list[str] = dataclasses.field(default_factory=list)


def suffixed(rel: str) -> str:
    stem, ext = posixpath.splitext(rel)
    return f"{stem}.{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}{ext}"


def archive(landing: Any, store: Any, entries: list[Entry], journal: Journal, workers: int,
            check: Callable[[], None]) -> ArchiveResult:
    result = ArchiveResult()
    if landing.is_local and store.is_local:
        entries = _link_all(landing, store, entries, result, check)
    existing = None if store.is_local else {e.rel: e for e in store.list()}

    def one(entry: Entry) -> str:
        target, outcome = _target(landing, store, entry, existing)
        if outcome != "already_archived":
            copy_entry(landing, store, entry, target, journal)
        return outcome

    done = run_all(one, entries, workers, check)
    copied = [(e, o) for e, o in done if not isinstance(o, Exception)]
    result.failed += [e.rel for e, o in done if isinstance(o, Exception)]
    result.failed += landing.delete([e for e, _ in copied])
    _count(result, [(e, o) for e, o in copied if e.rel not in result.failed])
    return result


def _count(result: ArchiveResult, outcomes: list[tuple[Entry, str]]) -> None:
    for _, outcome in outcomes:
        setattr(result, outcome, getattr(result, outcome) + 1)


def _target(landing: Any, store: Any, entry: Entry, existing: dict[str, Entry] | None) -> tuple[str, str]:
    found = store.stat(entry.rel) if existing is None else existing.get(entry.rel)
    if found is None:
        return entry.rel, "archived"
    if _same(landing, entry, store, found):
        return entry.rel, "already_archived"
    return suffixed(entry.rel), "renamed"


def _link_all(landing: Any, store: Any, entries: list[Entry], result: ArchiveResult,
              check: Callable[[], None]) -> list[Entry]:
    """Link what can be linked; return the entries that need a copy instead."""
    unlinked = []
    for entry in entries:
        check()
        try:
            outcome = _link(landing, store, entry)
        except OSError:
            result.failed.append(entry.rel)
            continue
        if outcome is None:
            unlinked.append(entry)
        else:
            setattr(result, outcome, getattr(result, outcome) + 1)
    return unlinked


def _link(landing: Any, store: Any, entry: Entry) -> str | None:
    """Archive by hard link; None when the filesystem cannot link (another device, no support)."""
    source, target, outcome = landing.path(entry.rel), entry.rel, "archived"
    for _ in range(5):
        path = store.path(target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.link(source, path)
        except FileExistsError:
            found = store.stat(target)
            if found is not None and _same(landing, entry, store, found):
                os.unlink(source)
                return "already_archived"
            target, outcome = suffixed(entry.rel), "renamed"
            continue
        except OSError:
            return None
        os.unlink(source)
        return outcome
    return None


def _same(landing: Any, entry: Entry, store: Any, found: Entry) -> bool:
    """Identical size and checksum (sha256 locally, ETag on S3, MD5 against a plain ETag across)."""
    if entry.size != found.size:
        return False
    if landing.is_local and store.is_local:
        return landing.checksum(entry.rel) == store.checksum(found.rel)
    if not landing.is_local and not store.is_local:
        return entry.version == found.version
    local, s3_etag = (landing, found) if landing.is_local else (store, entry)
    rel = entry.rel if landing.is_local else found.rel
    return "-" not in s3_etag.version and _md5(local.path(rel)) == s3_etag.version


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()
