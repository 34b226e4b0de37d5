"""Files profiled by DuckDB: one streaming pass per table with every aggregate in one SELECT.

Why DuckDB: it sniffs CSV dialects and types, reads CSV, JSON lines and Parquet (Hive partitions
too) in parallel, vectorised and within a memory limit, and has the sketches needed
(``bitstring_agg`` to build our HyperLogLog, see hll.py; ``approx_top_k`` for frequent values),
so one pass computes everything without our process holding rows. pyarrow supplies what DuckDB
cannot do offline here: reading ``s3://`` (DuckDB's httpfs extension would be downloaded at run
time).
"""

from __future__ import annotations

from typing import Any

from . import hll
from .model import ColumnInfo, ColumnProfile, TableProfile
from .sql_profile import clip

MEMORY_LIMIT = "320MB"  # DuckDB's own buffers; the process stays under 512 MiB
THREADS = 2
NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)
UNORDERED = ("STRUCT", "MAP", "[]", "UNION", "JSON")
HEAD_ROWS, HEAD_MIN_VALUES = 10_000, 1_000  # see unique_in_head


def connect() -> Any:
    import duckdb

    # No insertion order to keep (only aggregates come back), and DuckDB buffers less without it.
    # Extensions are never downloaded at run time (offline hosts, reproducible runs); one already
    # installed still loads when a query needs it.
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
    return [
        ColumnInfo(name, kind, i + 1, None if null == "YES" else False)
        for i, (name, kind, null, *_) in enumerate(rows)
    ]


def _hashable(column: ColumnInfo) -> str:
    """Nested values are counted by their text."""
    col = quote(column.name)
    nested = any(u in column.data_type.upper() for u in UNORDERED)
    return f"CAST({col} AS VARCHAR)" if nested else col


def unique_in_head(con: Any, relation: str, columns: list[ColumnInfo]) -> set[str]:
    """Columns nearly all distinct in the first HEAD_ROWS rows: no frequent values for them.

    Their most frequent values would be noise, and ``approx_top_k`` over millions of distinct
    keys is the costliest aggregate of the scan (half its time on bench_metadata.py's CSV). The
    head of a file is read in milliseconds; a sorted column looks repetitive there, not unique,
    so it keeps its frequent values.
    """
    counted = ", ".join(f"count({_hashable(c)}), count(DISTINCT {_hashable(c)})" for c in columns)
    figures = con.execute(f"SELECT {counted} FROM (SELECT * FROM {relation} LIMIT {HEAD_ROWS})"
                          ).fetchone()
    return {c.name for i, c in enumerate(columns)
            # Fewer than HEAD_MIN_VALUES values in the head (a short file, a mostly-NULL column) is
            # too little to judge: such a column keeps its frequent values.
            if figures[2 * i] >= HEAD_MIN_VALUES and figures[2 * i + 1] * 2 > figures[2 * i]}


def _aggregates(column: ColumnInfo, index: int, exact: bool, top: int, p: int) -> list[str]:
    col = quote(column.name)
    kind = column.data_type.upper()
    parts = [f"count({col}) AS nn{index}"]
    hashable = _hashable(column)
    parts.append(f"count(DISTINCT {hashable}) AS d{index}" if exact
                 else f"{hll.duckdb_sketch(f'__hll{index}', p)} AS d{index}")
    # Nested types have no useful order: no min or max for them.
    if not any(u in kind for u in UNORDERED):
        parts += [f"min({col}) AS lo{index}", f"max({col}) AS hi{index}"]
    if kind.startswith(NUMERIC) or kind == "BOOLEAN":
        # As DOUBLE, a BOOLEAN's mean is its share of true.
        parts.append(f"avg(CAST({col} AS DOUBLE)) AS avg{index}")
    if top > 0:
        parts.append(f"approx_top_k({hashable}, {int(top)}) AS top{index}")
    return parts


def profile_relation(con: Any, name: str, relation: str, columns: list[ColumnInfo], exact: bool,
                     top: int, sample_rows: int, hidden: set[str]) -> TableProfile:
    """One SELECT over ``relation`` (a DuckDB table function or a registered Arrow dataset)."""
    parts = ["count(*) AS n"]
    p = hll.precision(len(columns))
    no_top = hidden | (unique_in_head(con, relation, columns) if top > 0 else set())
    for index, column in enumerate(columns):
        parts += _aggregates(column, index, exact, 0 if column.name in no_top else top, p)
    scanned = relation
    if not exact:
        hashes = ", ".join(f"{hll.duckdb_hash(_hashable(c))} AS __hll{i}"
                           for i, c in enumerate(columns))
        scanned = f"(SELECT *, {hashes} FROM {relation})"  # each value hashed once
    cursor = con.execute(f"SELECT {', '.join(parts)} FROM {scanned}")
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone()))
    # Asked of this DuckDB rather than written down: hash() is not promised to stay the same across
    # versions.
    null_hash = None if exact else con.execute(hll.NULL_HASH_QUERY).fetchone()[0]
    rows = int(row["n"])
    note = (f"distinct counts: HyperLogLog of 2^{p} registers, relative standard error "
            f"{hll.standard_error(p):.2%}")
    profile = TableProfile(name, rows, True, "exact" if exact else "approx-distinct",
                           note=None if exact else note)
    for index, column in enumerate(columns):
        has_nulls = rows > int(row[f"nn{index}"])
        sketch = row[f"d{index}"]
        distinct = (int(sketch) if exact
                    else hll.distinct_count(sketch, p, null_hash if has_nulls else None))
        top_values = row.get(f"top{index}")
        if top_values and distinct * 2 > int(row[f"nn{index}"]):
            top_values = None  # nearly unique: its "most frequent" values are noise
        profile.columns[column.name] = ColumnProfile(
            column.name,
            null_count=rows - int(row[f"nn{index}"]),
            distinct_count=distinct,
            distinct_approx=not exact,
            min_value=clip(row.get(f"lo{index}")),
            max_value=clip(row.get(f"hi{index}")),
            mean=row.get(f"avg{index}"),
            top_values=[{"value": clip(v)} for v in top_values] if top_values else None,
        )
    shown = [c for c in columns if c.name not in hidden]
    if shown and sample_rows > 0:
        select = ", ".join(quote(c.name) for c in shown)
        # A statement of its own, after the scan: LIMIT lets DuckDB stop after the first rows.
        # Columns whose name looks sensitive are not read for it at all.
        sample = con.execute(f"SELECT {select} FROM {relation} LIMIT {int(sample_rows)}").fetchall()
        for i, column in enumerate(shown):
            profile.columns[column.name].sample_values = [
                clip(r[i]) for r in sample if r[i] is not None
            ]
    return profile
