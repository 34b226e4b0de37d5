"""Files as tables: which files form a table, in what format, with which partition keys.

A file directly under the source is a table of its own; a folder of same-shaped files (a Hive
partition tree such as ``orders/year=2024/month=01/part-0.parquet``) is one table whose
partition keys come from the ``key=value`` folder names. Listing only: nothing is parsed here.
"""
from __future__ import annotations

import dataclasses
import os
import posixpath
from typing import Iterable

# .tsv and .txt are read as CSV: DuckDB sniffs the delimiter.
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json",
           ".ndjson": "json", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSED = (".gz", ".zst")


@dataclasses.dataclass
class FileEntry:
    path: str  # relative to the source root, '/'-separated
    size: int
    modified: float | None


@dataclasses.dataclass
class FileTable:
    name: str
    file_type: str
    files: list[FileEntry]
    partition_keys: list[str]
    folder: bool

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def modified(self) -> float | None:
        times = [f.modified for f in self.files if f.modified is not None]
        return max(times) if times else None


def file_format(path: str) -> str | None:
    name = path.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    return FORMATS.get(posixpath.splitext(name)[1])


def group(entries: Iterable[FileEntry], root_name: str = "") -> tuple[list[FileTable], list[str]]:
    """Tables from a listing, and the relative paths skipped (unknown extension, mixed formats).

    A listing whose first folders are ``key=value`` is one partitioned table: the root itself
    (named ``root_name``), as when a Glue table's location is given.
    """
    tables: dict[str, FileTable] = {}
    skipped = []
    # Sorted: the same listing gives the same tables in the same order, local or S3, and a table's
    # first file (which decides its format) is always the same one.
    for entry in sorted(entries, key=lambda e: e.path):
        kind = file_format(entry.path)
        # "_" and "." name what writers leave beside the data: Spark's _SUCCESS, _committed_ and
        # .crc files, editors' dot files.
        if kind is None or posixpath.basename(entry.path).startswith(("_", ".")):
            skipped.append(entry.path)
            continue
        head, _, rest = entry.path.partition("/")
        if rest and "=" in head:
            name, folder, rest = root_name or "data", True, entry.path
        else:
            name, folder = (head, True) if rest else (entry.path, False)
        table = tables.setdefault(
            name, FileTable(name, kind, [], partition_keys(rest) if rest else [], folder)
        )
        # A table is one format: a stray file of another kind is skipped, not read with the wrong
        # reader.
        if table.file_type != kind:
            skipped.append(entry.path)
            continue
        table.files.append(entry)
    return list(tables.values()), skipped


def partition_keys(relative: str) -> list[str]:
    """``year=2024/month=01/part.csv`` → ``["year", "month"]``."""
    return [part.split("=", 1)[0] for part in relative.split("/")[:-1] if "=" in part]


def list_local(root: str) -> list[FileEntry]:
    if os.path.isfile(root):
        stat = os.stat(root)
        return [FileEntry(os.path.basename(root), stat.st_size, stat.st_mtime)]
    found = []
    for folder, dirs, files in os.walk(root):
        # In place, so os.walk skips hidden folders (.git, checkpoints) and visits the rest in
        # order.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            full = os.path.join(folder, name)
            stat = os.stat(full)
            found.append(
                FileEntry(
                    os.path.relpath(full, root).replace(os.sep, "/"), stat.st_size, stat.st_mtime
                )
            )
    return found
