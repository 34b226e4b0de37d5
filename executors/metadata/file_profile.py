"""Files profiled by DuckDB: one streaming pass per table with every aggregate in one SELECT.

Why DuckDB: it sniffs CSV dialects and types, reads CSV, JSON lines and Parquet (Hive partitions
too) in parallel, vectorised and within a memory limit, and has the sketches needed
(``approx_count_distinct`` for distinct counts, ``approx_top_k`` for frequent values), so one
pass computes everything without our process holding rows. pyarrow supplies what DuckDB cannot
do offline here: reading ``s3://`` (DuckDB's httpfs extension would be downloaded at run time).
"""
from __future__ import annotations

from typing import Any

from .model import ColumnInfo, ColumnProfile, TableProfile
from .sql_profile import clip

MEMORY_LIMIT = "320MB"  # DuckDB's own buffers; the process stays under 512 MiB
THREADS = 2
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")
UNORDERED = ("STRUCT", "MAP", "[]", "UNION", "JSON")
# DuckDB's HyperLogLog: relative standard error of its distinct estimates, as measured in
# bench/bench_metadata.py (about 1.6 %; single estimates seen up to about 3 %).
APPROX_DISTINCT_ERROR = "HyperLogLog, standard error about 1.6 %"


def connect() -> Any:
    import duckdb

    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "threads": THREADS,
                                 "preserve_insertion_order": False,
                                 "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": True})
    return con


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def describe(con: Any, relation: str) -> list[ColumnInfo]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return [ColumnInfo(name, kind, i + 1, None if null == "YES" else False) for i, (name, kind, null, *_)
            in enumerate(rows)]


def _aggregates(column: ColumnInfo, index: int, exact: bool, top: int) -> list[str]:
    col = quote(column.name)
    kind = column.data_type.upper()
    parts = [f"count({col}) AS nn{index}"]
    hashable = col if not any(u in kind for u in UNORDERED) else f"CAST({col} AS VARCHAR)"
    parts.append(f"count(DISTINCT {hashable}) AS d{index}" if exact
                 else f"approx_count_distinct({hashable}) AS d{index}")
    if not any(u in kind for u in UNORDERED):
        parts += [f"min({col}) AS lo{index}", f"max({col}) AS hi{index}"]
    if kind.startswith(NUMERIC) or kind == "BOOLEAN":
        parts.append(f"avg(CAST({col} AS DOUBLE)) AS avg{index}")
    if top > 0:
        parts.append(f"approx_top_k({hashable}, {int(top)}) AS top{index}")
    return parts


def profile_relation(con: Any, name: str, relation: str, columns: list[ColumnInfo], exact: bool, top: int,
                     sample_rows: int, hidden: set[str]) -> TableProfile:
    """One SELECT over ``relation`` (a DuckDB table function or a registered Arrow dataset)."""
    parts = ["count(*) AS n"]
    for index, column in enumerate(columns):
        parts += _aggregates(column, index, exact, 0 if column.name in hidden else top)
    cursor = con.execute(f"SELECT {', '.join(parts)} FROM {relation}")
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone()))
    rows = int(row["n"])
    profile = TableProfile(name, rows, True, "exact" if exact else "approx-distinct",
                           note=None if exact else f"distinct counts: {APPROX_DISTINCT_ERROR}")
    for index, column in enumerate(columns):
        top_values = row.get(f"top{index}")
        if top_values and int(row[f"d{index}"]) * 2 > int(row[f"nn{index}"]):
            top_values = None  # nearly unique: its "most frequent" values are noise
        profile.columns[column.name] = ColumnProfile(
            column.name, null_count=rows - int(row[f"nn{index}"]), distinct_count=int(row[f"d{index}"]),
            distinct_approx=not exact, min_value=clip(row.get(f"lo{index}")), max_value=clip(row.get(f"hi{index}")),
            mean=row.get(f"avg{index}"),
            top_values=[{"value": clip(v)} for v in top_values] if top_values else None)
    shown = [c for c in columns if c.name not in hidden]
    if shown and sample_rows > 0:
        select = ", ".join(quote(c.name) for c in shown)
        sample = con.execute(f"SELECT {select} FROM {relation} LIMIT {int(sample_rows)}").fetchall()
        for i, column in enumerate(shown):
            profile.columns[column.name].sample_values = [clip(r[i]) for r in sample if r[i] is not None]
    return profile
