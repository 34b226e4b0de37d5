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

import dataclasses
import os
import posixpath
from typing import Any, Callable

from ._journal import Journal
from ._locations import private_name, timestamped
from ._storage import Entry, local_entry, same_file


@dataclasses.dataclass(frozen=True)
class Held:
    """A landing file post_staging acts on: ``entry`` as transferred (its name is the archive
    name), ``source`` what to read and remove (a claimed private name locally, ``entry`` on S3)."""

    entry: Entry
    source: Entry

    @property
    def claimed(self) -> bool:
        return self.source is not self.entry


def hold(landing: Any, entries: list[Entry], journal: Journal,
         check: Callable[[], None]) -> tuple[list[Held], list[str]]:
    """The entries to act on, claimed when local; and the relative paths that changed since."""
    if not landing.is_local:
        return [Held(e, e) for e in entries], []
    held, changed = [], []
    for entry in entries:
        check()
        claimed = claim(landing, entry, journal)
        if claimed is None:
            changed.append(entry.rel)
        else:
            held.append(Held(entry, claimed))
    return held, changed


def claim(landing: Any, entry: Entry, journal: Journal) -> Entry | None:
    """Rename ``entry``'s file to a private name; None (nothing claimed) unless it is the copied file."""
    path = landing.path(entry.rel)
    name = private_name("claim", os.path.basename(path))
    private = os.path.join(os.path.dirname(path), name)
    journal.claim(private, path)
    try:
        os.rename(path, private)
    except FileNotFoundError:
        journal.end(private)
        return None
    except OSError:
        journal.end(private)
        raise
    try:
        st = os.stat(private)
    except OSError:
        st = None
    if st is None or not same_file(st, entry):
        put_back(private, path)
        journal.end(private)
        return None
    return local_entry(posixpath.join(posixpath.dirname(entry.rel), name), st)


def release(landing: Any, held: list[Held], journal: Journal) -> list[str]:
    """Put back every claimed file still there (not archived or deleted); end every claim.
    Returns the relative paths put back."""
    back = []
    for item in held:
        if not item.claimed:
            continue
        private = landing.path(item.source.rel)
        if put_back(private, landing.path(item.entry.rel)) is not None:
            back.append(item.entry.rel)
        journal.end(private)
    return back


def put_back(private: str, path: str) -> str | None:
    """Return a claimed file to the landing folder as ``path``, or as a timestamped name beside it
    when ``path`` is taken: never over another file. None when ``private`` is gone (it was archived
    or deleted). Used by recovery too, so a put back half done by a killed run is finished."""
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
            os.makedirs(os.path.dirname(candidate), exist_ok=True)  # the folder was removed meanwhile
            continue
        except OSError:  # no hard links here, or a folder was renamed over the landing file
            if os.path.lexists(candidate):
                candidate = os.path.join(os.path.dirname(path), timestamped(os.path.basename(path)))
                continue
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
