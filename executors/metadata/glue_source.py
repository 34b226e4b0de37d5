"""The Glue Data Catalog as a source (``glue://DATABASE``): tables, columns, partition keys and
locations as registered; profiling reads the files where each table's location points."""
from __future__ import annotations

import fnmatch
from typing import Any, Callable

from .hookspecs import hookimpl
from .model import Catalog, ColumnInfo, TableInfo, TableProfile
from .source import ProfileOptions, SourceError

SCHEME = "glue://"
# Glue classifications the file source can read; a table in another format (avro, orc) is
# catalogued, and profiling it fails saying so.
FORMATS = {"csv": "csv", "json": "json", "parquet": "parquet"}


class GlueSource:
    kind = "glue"

    def __init__(
        self,
        location: str,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        region: str | None = None,
    ) -> None:
        self.location = location
        self.display = location
        self.database = location[len(SCHEME):].strip("/")
        self.include, self.exclude = include or [], exclude or []
        self.region = region
        self._files: dict[str, tuple[Any, Catalog]] = {}

    def problems(self) -> list[str]:
        return (
            [] if self.database else [f"{self.location!r} names no database: use glue://DATABASE"]
        )

    def wanted(self, name: str) -> bool:
        included = not self.include or any(fnmatch.fnmatchcase(name, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def extract(self) -> Catalog:
        """GetTables pages (100 tables each): one request per hundred tables, not per table."""
        import boto3

        glue = boto3.client("glue", region_name=self.region)
        catalog = Catalog("glue")
        try:
            for page in glue.get_paginator("get_tables").paginate(DatabaseName=self.database):
                catalog.queries += 1
                for raw in page["TableList"]:
                    table = _table(self.database, raw)
                    if self.wanted(table.name):
                        catalog.tables.append(table)
        except Exception as exc:
            if type(exc).__module__.startswith(("botocore", "boto3")):
                raise SourceError(f"{self.location}: {str(exc).splitlines()[0]}") from None
            raise
        return catalog

    def profile(self, table: TableInfo, options: ProfileOptions,
                check_cancelled: Callable[[], None]) -> TableProfile:
        """The files at the table's location, profiled like any file source."""
        from .file_source import FileSource

        if not table.location or table.file_type not in FORMATS.values():
            raise SourceError(
                f"{self.location}/{table.name}: no readable location "
                f"({table.location or 'none'}, format {table.file_type or 'unknown'})"
            )
        if table.name not in self._files:
            # Listed and described once per table: a retried profile reuses it.
            files = FileSource(table.location, region=self.region)
            self._files[table.name] = (files, files.extract())
        files, found = self._files[table.name]
        if not found.tables:
            raise SourceError(
                f"{self.location}/{table.name}: no {table.file_type} files at {table.location}"
            )
        part = found.tables[0]
        result = files.profile(part, options, check_cancelled)
        result.table = table.name
        for registered in table.columns:  # Glue's names are lower case; the files' may not be
            for name in list(result.columns):
                if name.lower() == registered.name and name != registered.name:
                    result.columns[registered.name] = result.columns.pop(name)
        return result

    def close(self) -> None:
        for files, _ in self._files.values():
            files.close()


def _table(database: str, raw: dict[str, Any]) -> TableInfo:
    storage = raw.get("StorageDescriptor") or {}
    columns = [
        ColumnInfo(c["Name"], c.get("Type", ""), i + 1)
        for i, c in enumerate(storage.get("Columns") or [])
    ]
    keys = raw.get("PartitionKeys") or []
    # Glue keeps partition keys apart from the columns; like Athena, they are listed after them.
    columns += [
        ColumnInfo(k["Name"], k.get("Type", ""), len(columns) + i + 1) for i, k in enumerate(keys)
    ]
    # A crawler writes classification, recordCount and sizeKey into the table's parameters; those
    # win over the storage descriptor's. Values are strings, hence the isdigit checks.
    params = {**(storage.get("Parameters") or {}), **(raw.get("Parameters") or {})}
    modified: Any = raw.get("UpdateTime") or raw.get("CreateTime")  # a datetime from boto3
    rows = params.get("recordCount")
    return TableInfo(
        name=f"{database}.{raw['Name']}",
        columns=columns,
        location=storage.get("Location"),
        file_path=storage.get("Location"),
        file_type=_format(params, storage),
        partition_keys=[k["Name"] for k in keys],
        row_count=int(rows) if rows and str(rows).isdigit() else None,
        size_bytes=int(params["sizeKey"]) if str(params.get("sizeKey", "")).isdigit() else None,
        last_modified=modified.isoformat() if hasattr(modified, "isoformat") else modified,
    )


def _format(params: dict[str, Any], storage: dict[str, Any]) -> str | None:
    classification = str(params.get("classification", "")).lower()
    if classification in FORMATS:
        return FORMATS[classification]
    # Without a classification (a table made by DDL), the Hive input format and SerDe class names
    # tell the format; LazySimpleSerDe is Hive's delimited text.
    hints = " ".join(str(storage.get(k, "")) for k in ("InputFormat", "SerdeInfo")).lower()
    for word, kind in (
        ("parquet", "parquet"),
        ("json", "json"),
        ("csv", "csv"),
        ("lazysimple", "csv"),
    ):
        if word in hints:
            return kind
    return None


@hookimpl
def metadata_source(location: str, options: dict[str, Any]) -> GlueSource | None:
    if not location.startswith(SCHEME):
        return None
    return GlueSource(
        location, options.get("include"), options.get("exclude"), options.get("region")
    )


@hookimpl
def metadata_source_types() -> list[str]:
    return ["glue://DATABASE"]
