"""What ``transfer`` copied, kept on disk for ``post_staging``, so memory does not grow with the
number of files and a resumed run acts on exactly what the first run copied.

One SQLite file per run, ``<state dir>/staging/transferred/<run id>.sqlite``: one row per copied
landing file, with its identity as listed (size and version: device, inode, size, mtime and
ctime locally; the ETag on S3). ``transfer`` writes it under a private ``.part`` name, a batch per
transaction, and publishes it by a rename once every file is copied: a ledger that exists is a
complete one (an attempt killed half way, or abandoned after a timeout, never shows). Then
``post_staging`` reads it in batches, forgets each file once archived or deleted, records the new
identity of a file it put back (its ctime moved), and the executor removes it when it is done.

Paths are stored as bytes (``surrogateescape``): a landing name need not be valid UTF-8.
"""
from __future__ import annotations

import os
import secrets
import sqlite3
import socket
from pathlib import Path
from typing import Iterable, Iterator

from .journal import Owner
from .storage import Entry

# WITHOUT ROWID: the path is the key, stored once, and reading in path order (``batches``) walks
# the table itself. ``seen`` is for the S3 post_staging only (see ``mark``).
_SCHEMA = """
CREATE TABLE copied (rel BLOB PRIMARY KEY, size INTEGER NOT NULL, version TEXT NOT NULL,
                     seen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
"""
# SQLite before 3.32 allows 999 variables per statement; 500 stays well under it.
_LOOKUP_CHUNK = 500  # SQLite bounds the variables of one statement


def _key(rel: str) -> bytes:
    # A BLOB, not TEXT: a lone surrogate (an undecodable byte in a landing name) cannot be stored as
    # TEXT, and bytes sort in byte order, as S3 lists its keys.
    return rel.encode("utf-8", "surrogateescape")


def _rel(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (``_Transaction``), one per batch, not opened
    # behind our back by the sqlite3 module.
    connection = sqlite3.connect(path, isolation_level=None)
    # A process kill loses nothing committed (the OS has the pages); a power cut may lose the
    # ledger, and then a resume runs transfer again, which is harmless.
    connection.execute("PRAGMA synchronous=OFF")
    return connection


class Ledger:
    """An open ledger. ``create`` starts one for ``transfer``; ``open`` reads a published one."""

    def __init__(self, connection: sqlite3.Connection, path: Path, final: Path | None) -> None:
        self._db = connection
        self.path = path
        self._final = final  # where ``publish`` puts it; None once published

    @classmethod
    def create(cls, final: Path) -> "Ledger":
        # An attempt killed half way leaves its .part; removed here, unless its writer still runs
        # (an abandoned attempt of a timed-out task may still be finishing).
        _remove_dead_parts(final.parent)
        me = Owner.current("")
        # The writer's pid and start time in the name, so that ``_remove_dead_parts`` can tell
        # whether it is still alive without opening the file; the token keeps two attempts of
        # one process apart.
        part = final.with_name(
            f"{final.name}.{me.pid}-{me.pid_started or 0}-{secrets.token_hex(4)}.part")
        connection = _connect(part)
        connection.executescript(_SCHEMA)
        return cls(connection, part, final)

    @classmethod
    def open(cls, path: Path) -> "Ledger | None":
        """The ledger published at ``path``; None when there is none or it cannot be read."""
        if not path.is_file():
            return None
        try:
            connection = _connect(path)
            # A file that is not a readable ledger (a power cut, with synchronous=OFF) counts as
            # none: transfer then runs again, which is harmless.
            connection.execute("SELECT count(*) FROM copied").fetchone()
        except sqlite3.DatabaseError:
            return None
        return cls(connection, path, None)

    def add(self, entries: list[Entry]) -> None:
        """Record copied files, in one transaction."""
        if entries:
            with self._transaction():
                self._db.executemany(
                    # REPLACE: a file copied again in the same run (a retry) or put back by
                    # post_staging keeps one row, with its latest identity.
                    "INSERT OR REPLACE INTO copied (rel, size, version) VALUES (?, ?, ?)",
                    [(_key(e.rel), e.size, e.version) for e in entries])

    def publish(self) -> Path:
        """Close and rename the finished ledger to its final name; return that name."""
        assert self._final is not None, "published already"
        self._db.close()
        # Closed first, so all the pages are in the file before it gets its final name: a ledger
        # under that name is always complete.
        os.replace(self.path, self._final)
        self.path, self._final = self._final, None
        return self.path

    def discard(self) -> None:
        """Close; an unpublished ledger is removed (its transfer did not finish)."""
        self._db.close()
        if self._final is not None:
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._db.close()

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM copied").fetchone()[0])

    def batches(self, size: int) -> Iterator[list[Entry]]:
        """Every row, ``size`` at a time, in path order. Rows may be changed or forgotten between
        batches: each batch is a fresh query after the last path seen."""
        after = b""
        while True:
            rows = self._db.execute(
                # Keyset pagination (``rel > last``), not OFFSET: rows forgotten between batches
                # would shift an offset and skip files.
                "SELECT rel, size, version FROM copied WHERE rel > ? ORDER BY rel LIMIT ?",
                (after, size)).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [Entry(_rel(rel), size_, version) for rel, size_, version in rows]

    def lookup(self, rels: Iterable[str]) -> dict[str, Entry]:
        """The recorded entry of each of ``rels`` that was copied."""
        found: dict[str, Entry] = {}
        keys = [_key(rel) for rel in rels]
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for rel, size, version in self._db.execute(
                    f"SELECT rel, size, version FROM copied WHERE rel IN ({marks})", chunk):
                found[_rel(rel)] = Entry(_rel(rel), size, version)
        return found

    def forget_marks(self) -> None:
        with self._transaction():
            self._db.execute("UPDATE copied SET seen = 0 WHERE seen != 0")

    def mark(self, rels: Iterable[str]) -> None:
        """Note that these files were found as copied (see ``unmarked``)."""
        with self._transaction():
            self._db.executemany("UPDATE copied SET seen = 1 WHERE rel = ?",
                                 [(_key(rel),) for rel in rels])

    def unmarked(self, size: int) -> Iterator[list[str]]:
        """The paths never marked since ``forget_marks``, ``size`` at a time."""
        after = b""
        while True:
            rows = self._db.execute(
                "SELECT rel FROM copied WHERE seen = 0 AND rel > ? ORDER BY rel LIMIT ?",
                (after, size)).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [_rel(rel) for (rel,) in rows]

    def forget(self, rels: Iterable[str]) -> None:
        """These files are archived or deleted: nothing is left to do for them."""
        with self._transaction():
            self._db.executemany("DELETE FROM copied WHERE rel = ?", [(_key(r),) for r in rels])

    def replace(self, entries: Iterable[Entry]) -> None:
        """These files are back in the landing folder as they are now (see ``claim.release``)."""
        self.add(list(entries))

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _remove_dead_parts(folder: Path) -> None:
    """Unpublished ledgers whose writer is gone (its pid and start time name it)."""
    for part in folder.glob("*.part"):
        try:
            pid, started = (int(n) for n in part.name.rsplit(".", 2)[1].split("-")[:2])
        except ValueError:
            continue
        if not Owner("", socket.gethostname(), pid, started or None).alive():
            part.unlink(missing_ok=True)
