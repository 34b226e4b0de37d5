"""Files as a source: a local file or folder, or an ``s3://`` prefix; CSV, JSON lines, Parquet."""
from __future__ import annotations

import datetime as dt
import fnmatch
import os
from typing import Any, Callable

from . import file_layout as layout
from .hookspecs import hookimpl
from .model import Catalog, TableInfo, TableProfile
from .sensitive import redact, sensitive_name
from .source import ProfileOptions, SourceError

# A Parquet file starts and ends with these four bytes.
PARQUET_MAGIC = b"PAR1"
# Below this size exact distinct counts cost little memory; above, a HyperLogLog sketch.
EXACT_DISTINCT_BELOW = 16 * 1024 * 1024


class FileSource:
    kind = "files"

    def __init__(
        self,
        location: str,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        region: str | None = None,
    ) -> None:
        self.location = location
        self.display = location
        self.include, self.exclude = include or [], exclude or []
        self.region = region
        self._con: Any = None
        self._tables: dict[str, layout.FileTable] = {}
        self._s3_root = ""

    # -------------------------------------------------------------- validation (no parsing)

    def problems(self) -> list[str]:
        if self.is_s3:
            from .s3_files import s3_problems

            return s3_problems(self.location)
        path = self.local_root
        if not os.path.exists(path):
            return [f"{path}: no such file or folder"]
        if os.path.isfile(path):
            kind = layout.file_format(path)
            if kind is None:
                return [f"{path}: not a CSV, JSON lines or Parquet file (by its extension)"]
            return [m for m in [content_problem(path, kind)] if m]
        return []

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    @property
    def local_root(self) -> str:
        return os.path.abspath(self.location.removeprefix("file://"))

    # -------------------------------------------------------------- extract

    def extract(self) -> Catalog:
        try:
            import duckdb  # noqa: F401
        except ImportError:
            from .sql_source import missing_extra

            raise SourceError(missing_extra()) from None
        try:
            listing = self._listing()
        except Exception as exc:
            # An S3 refusal (no bucket, no access) is one line naming the location; anything else
            # is a bug and keeps its traceback.
            if type(exc).__module__.startswith(("botocore", "boto3")):
                raise SourceError(
                    f"{self.location}: cannot list: {str(exc).splitlines()[0]}"
                ) from None
            raise
        tables, skipped = layout.group(listing, self._root_name())
        catalog = Catalog("files")
        for table in tables:
            if not self.wanted(table.name):
                continue
            self._tables[table.name] = table
            catalog.tables.append(self._describe(table))
        # One DESCRIBE per table: files have no catalog to ask for them all at once.
        catalog.queries = len(catalog.tables)
        return catalog

    def _listing(self) -> list[layout.FileEntry]:
        if self.is_s3:
            from .s3_files import list_s3

            self._s3_root, entries = list_s3(self.location, self.region)
            return entries
        return layout.list_local(self.local_root)

    def _root_name(self) -> str:
        # A partitioned folder given as the source is one table, named after the folder.
        return self.location.rstrip("/").rsplit("/", 1)[-1]

    def wanted(self, name: str) -> bool:
        included = not self.include or any(fnmatch.fnmatchcase(name, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def _describe(self, table: layout.FileTable) -> TableInfo:
        from .file_profile import describe

        columns = self._guard(table, lambda: describe(self.connection, self.relation(table)))
        modified = table.modified
        return TableInfo(
            name=table.name,
            columns=columns,
            size_bytes=table.size,
            file_type=table.file_type,
            file_path=self._path(table),
            partition_keys=table.partition_keys,
            location=self._path(table),
            row_count=self._parquet_rows(table),
            row_count_exact=table.file_type == "parquet",
            last_modified=(
                dt.datetime.fromtimestamp(modified, dt.timezone.utc).isoformat(timespec="seconds")
                if modified
                else None
            ),
        )

    def _path(self, table: layout.FileTable) -> str:
        if self.is_s3:
            return f"s3://{self._s3_root}{table.name if self._nested(table) else ''}"
        root = self.local_root
        return root if os.path.isfile(root) or not self._nested(table) else f"{root}/{table.name}"

    @staticmethod
    def _nested(table: layout.FileTable) -> bool:
        """A table in a folder or file under the root (not the partitioned root itself)."""
        return not table.files[0].path.split("/", 1)[0].count("=")

    def _parquet_rows(self, table: layout.FileTable) -> int | None:
        """Parquet footers know their row counts: no scan needed."""
        if table.file_type != "parquet":
            return None
        return self._guard(table, lambda: int(self.connection.execute(
            f"SELECT count(*) FROM {self.relation(table)}").fetchone()[0]))

    # -------------------------------------------------------------- profile

    def profile(self, table: TableInfo, options: ProfileOptions,
                check_cancelled: Callable[[], None]) -> TableProfile:
        from .file_profile import profile_relation

        files = self._tables[table.name]
        hidden = {c.name for c in table.columns if sensitive_name(c.name)}
        exact = options.distinct == "exact" or files.size <= EXACT_DISTINCT_BELOW
        result = self._guard(
            files,
            lambda: profile_relation(
                self.connection,
                table.name,
                self.relation(files),
                table.columns,
                exact,
                options.top_values,
                options.sample_rows,
                hidden,
            ),
        )
        result.bytes_scanned = files.size
        redact(result)
        return result

    # -------------------------------------------------------------- DuckDB

    @property
    def connection(self) -> Any:
        if self._con is None:
            from .file_profile import connect

            self._con = connect()
        return self._con

    def relation(self, table: layout.FileTable) -> str:
        """A DuckDB FROM clause that streams the table's files."""
        if self.is_s3:
            from .s3_files import register_dataset

            return register_dataset(self.connection, self._s3_root, table, self.region)
        from .file_profile import literal

        root = (
            self.local_root if os.path.isdir(self.local_root) else os.path.dirname(self.local_root)
        )
        # The files grouped into this table, not a glob: a glob would also read the skipped ones
        # (_SUCCESS markers, files of another format) and other tables' files below the folder.
        files = "[" + ", ".join(literal(os.path.join(root, f.path)) for f in table.files) + "]"
        hive = ", hive_partitioning = true" if table.partition_keys else ""
        if table.file_type == "csv":
            # union_by_name: files written over time may add, drop or reorder columns; columns are
            # matched by name and a file's missing ones read as NULL.
            return f"read_csv({files}, union_by_name = true{hive})"
        if table.file_type == "json":
            return f"read_json({files}, format = 'auto', union_by_name = true{hive})"
        return f"read_parquet({files}, union_by_name = true{hive})"

    def _guard(self, table: layout.FileTable, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except SourceError:
            raise
        except Exception as exc:
            # A file that cannot be read as what it claims fails the task with one line naming it.
            if type(exc).__module__.startswith(("duckdb", "_duckdb", "pyarrow")) or isinstance(
                exc, OSError
            ):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SourceError(
                    f"{self._path(table)}: cannot read as {table.file_type}: {first}"
                ) from None
            raise

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def content_problem(path: str, kind: str) -> str | None:
    """A file that is not what its extension says, seen from its first bytes."""
    # A compressed file's first bytes are gzip's or zstd's, which says nothing of what is inside.
    if path.endswith(layout.COMPRESSED):
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
            if kind == "parquet":
                handle.seek(max(os.path.getsize(path) - 4, 0))
                tail = handle.read(4)
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror})"
    if kind == "parquet" and (head[:4] != PARQUET_MAGIC or tail != PARQUET_MAGIC):
        return f"{path}: not a Parquet file (no PAR1 magic); rename it or fix the export"
    # Text formats have no NUL byte; one in the first 4 KiB means a binary file under a text name.
    if kind in ("csv", "json") and b"\0" in head:
        return f"{path}: binary content, not {kind.upper()} text; check the file's real format"
    return None


@hookimpl
def metadata_source(location: str, options: dict[str, Any]) -> FileSource | None:
    # Any location without a scheme is a path: this source claims it, and problems() says if it does
    # not exist.
    if location.startswith("s3://") or location.startswith("file://") or "://" not in location:
        return FileSource(
            location, options.get("include"), options.get("exclude"), options.get("region")
        )
    return None


@hookimpl
def metadata_source_types() -> list[str]:
    return ["a local file or folder (CSV, JSON lines, Parquet)", "s3://bucket/prefix"]
