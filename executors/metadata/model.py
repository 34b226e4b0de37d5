"""What a source yields: a catalog (tables, columns, keys) and per-column profiles.

Plain dataclasses with no library behind them, so sources, the store, drift checks and the
publish payload all speak the same small language.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ColumnInfo:
    name: str
    data_type: str
    position: int
    # None: the source does not say (files, Glue).
    nullable: bool | None = None
    primary_key: bool = False
    foreign_key: str | None = None  # "schema.table.column" it refers to


@dataclasses.dataclass
class TableInfo:
    name: str  # "schema.table" for databases, a path relative to the source for files
    columns: list[ColumnInfo] = dataclasses.field(default_factory=list)
    row_count: int | None = None
    # False for catalog estimates (PostgreSQL's reltuples, MySQL's TABLE_ROWS); SQLite counts and
    # Parquet footers are exact.
    row_count_exact: bool = False
    size_bytes: int | None = None
    last_modified: str | None = None
    file_path: str | None = None
    file_type: str | None = None
    partition_keys: list[str] = dataclasses.field(default_factory=list)
    location: str | None = None  # where the data is (files, Glue): what profiling reads


@dataclasses.dataclass
class Catalog:
    source_type: str
    tables: list[TableInfo] = dataclasses.field(default_factory=list)
    queries: int = 0  # catalog round trips, for the "a few set-based queries" promise

    @property
    def column_count(self) -> int:
        return sum(len(t.columns) for t in self.tables)

    @property
    def total_size(self) -> int | None:
        sizes = [t.size_bytes for t in self.tables if t.size_bytes is not None]
        return sum(sizes) if sizes else None


@dataclasses.dataclass
class ColumnProfile:
    name: str
    null_count: int | None = None
    distinct_count: int | None = None
    # True whenever distinct_count is an estimate (a sketch, a sample, pg_stats): consumers must
    # not take it for a count.
    distinct_approx: bool = False
    min_value: Any = None
    max_value: Any = None
    mean: float | None = None
    top_values: list[dict[str, Any]] | None = None  # [{"value": ..., "count" or "share": ...}]
    sample_values: list[Any] | None = None
    sensitive: bool = False

    def null_share(self, rows: int | None) -> float | None:
        if self.null_count is None or not rows:
            return None
        return round(self.null_count / rows, 6)


@dataclasses.dataclass
class TableProfile:
    table: str
    row_count: int | None
    row_count_exact: bool
    mode: str  # exact | estimate | sample
    columns: dict[str, ColumnProfile] = dataclasses.field(default_factory=dict)
    bytes_scanned: int | None = None
    note: str | None = None  # how figures were obtained, when not obvious (a sample, statistics)
