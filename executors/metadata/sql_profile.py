"""Profiling a SQL table where it lives: one aggregate statement per table, only results return.

Modes:
  ``exact``     one scan: COUNT, COUNT(col), COUNT(DISTINCT col), MIN, MAX, AVG for every column.
  ``sample``    the same statement on ``TABLESAMPLE SYSTEM (p)`` (PostgreSQL) or on the first
                ``sample_rows_limit`` rows (databases without TABLESAMPLE); counts are scaled.
  ``estimate``  the database's own statistics (PostgreSQL ``pg_stats``, after ``ANALYZE`` when a
                table has none); elsewhere ``sample``.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Callable

from .model import ColumnInfo, ColumnProfile, TableInfo, TableProfile

NUMERIC = re.compile(
    r"(?i)^(small|big|medium|tiny)?int|integer|serial|numeric|decimal|real|double|float|number"
)
BOOLEAN = re.compile(r"(?i)^bool")
ORDERED = re.compile(r"(?i)char|text|string|enum|^name$|date|time|year|interval|clob")
VALUE_LIMIT = 200  # characters kept of a min/max/sample value
SAMPLE_ROWS_LIMIT = 100_000


def category(column: ColumnInfo, dialect: str) -> str:
    """numeric, boolean, ordered (min/max make sense), or other (counted as text)."""
    kind = column.data_type.lower()
    # tinyint(1) is how MySQL and MariaDB declare BOOLEAN.
    if kind.startswith("tinyint(1)") or BOOLEAN.search(kind):
        return "boolean"
    # "[]": a PostgreSQL array of numbers has no AVG; "interval" starts with "int".
    if NUMERIC.search(kind) and "[]" not in kind and "interval" not in kind:
        return "numeric"
    if ORDERED.search(kind) and "[]" not in kind:
        return "ordered"
    # SQLite's declared types are free text and MIN/MAX work on any value, so nothing is "other".
    return "ordered" if dialect == "sqlite" else "other"


def split_name(table: TableInfo) -> tuple[str, str]:
    schema, _, name = table.name.partition(".")
    return schema, name


def aggregate_statement(table: TableInfo, dialect: str, mode: str, sample_percent: float,
                        sample_rows_limit: int, exact_distinct: bool) -> Any:
    """SELECT with every column's aggregates, on the table or on a sample of it."""
    import sqlalchemy as sa

    schema, name = split_name(table)
    source: Any = sa.table(name, *(sa.column(c.name) for c in table.columns),
                           schema=None if dialect == "sqlite" else schema)
    if mode == "sample":
        if dialect == "postgresql":
            source = sa.tablesample(source, sa.func.system(sample_percent))
        else:
            # No TABLESAMPLE here: the first rows the database returns, which the note says.
            source = sa.select(source).limit(sample_rows_limit).subquery("sample")
    parts = [sa.func.count().label("n")]
    for index, column in enumerate(table.columns):
        parts.extend(
            _aggregates(source.c[column.name], category(column, dialect), index, exact_distinct)
        )
    return sa.select(*parts).select_from(source)


def _aggregates(col: Any, kind: str, index: int, distinct: bool) -> list[Any]:
    import sqlalchemy as sa

    if kind == "boolean":
        # PostgreSQL has no MIN, MAX or AVG of booleans; as 0/1 the mean is the share of true.
        col = sa.cast(col, sa.Integer)
    elif kind == "other":
        # As text, types without an equality (PostgreSQL's json, for one) can still be counted
        # distinct.
        col = sa.cast(col, sa.Text)
    parts = [sa.func.count(col).label(f"nn{index}")]
    if distinct:
        parts.append(sa.func.count(sa.distinct(col)).label(f"d{index}"))
    if kind != "other":
        parts += [sa.func.min(col).label(f"lo{index}"), sa.func.max(col).label(f"hi{index}")]
    if kind in ("numeric", "boolean"):
        parts.append(sa.func.avg(col).label(f"avg{index}"))
    return parts


def profile_by_aggregate(
    conn: Any,
    table: TableInfo,
    dialect: str,
    mode: str,
    sample_percent: float,
    sample_rows_limit: int = SAMPLE_ROWS_LIMIT,
) -> TableProfile:
    statement = aggregate_statement(table, dialect, mode, sample_percent, sample_rows_limit, True)
    row = conn.execute(statement).mappings().one()
    seen = int(row["n"])
    profile = TableProfile(table.name, seen, mode == "exact", mode)
    scale = 1.0
    if mode == "sample":
        known = table.row_count
        if known is not None and seen:
            # The catalog's row count is an estimate and may be below what the sample saw: never
            # scaled down.
            scale = max(known / seen, 1.0)
            profile.row_count = (
                int(round(seen * scale)) if dialect == "postgresql" else max(known, seen)
            )
        where = (f"a {sample_percent:g} % TABLESAMPLE SYSTEM" if dialect == "postgresql"
                 else f"the first {seen:,} rows")
        # Distinct counts are not scaled: they do not grow in proportion to rows, so a scaled one
        # would be a guess.
        profile.note = f"figures from {where}; null counts scaled, distinct counts are the sample's"
    for index, column in enumerate(table.columns):
        nulls = seen - int(row[f"nn{index}"])
        profile.columns[column.name] = ColumnProfile(
            column.name,
            null_count=int(round(nulls * scale)),
            distinct_count=int(row[f"d{index}"]),
            distinct_approx=mode != "exact",
            min_value=clip(row.get(f"lo{index}")),
            max_value=clip(row.get(f"hi{index}")),
            mean=_float(row.get(f"avg{index}")))
    return profile


# most_common_vals and histogram_bounds are anyarray, which casts to text[] only through text. The
# histogram leaves the most common values out, so its bounds are only candidates for min and max
# (see _from_pg_stats). inherited rows describe a parent with its children: not taken.
POSTGRES_STATS = """
SELECT s.schemaname, s.tablename, s.attname, s.null_frac, s.n_distinct,
       array_to_json(s.most_common_vals::text::text[]), array_to_json(s.most_common_freqs),
       (s.histogram_bounds::text::text[])[1],
       (s.histogram_bounds::text::text[])[array_length(s.histogram_bounds::text::text[], 1)]
FROM pg_stats s
WHERE s.schemaname || '.' || s.tablename = ANY(:names) AND NOT s.inherited"""

# Read after any ANALYZE below, which updates reltuples.
POSTGRES_TUPLES = """
SELECT n.nspname || '.' || c.relname, c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname || '.' || c.relname = ANY(:names)"""


class PostgresStatistics:
    """``pg_stats`` for many tables in one query; tables without statistics are analyzed first."""

    def __init__(self, conn: Any, tables: list[TableInfo]) -> None:
        self.conn = conn
        self.tables = {t.name: t for t in tables}
        self.stats: dict[str, dict[str, tuple[Any, ...]]] | None = None
        self.tuples: dict[str, int] = {}
        self.analyzed: set[str] = set()

    def load(self, check_cancelled: Callable[[], None]) -> None:
        from sqlalchemy import text

        names = list(self.tables)
        self.stats = self._read(names)
        # Only tables are analyzed (file_type None: plain or partitioned); a view has no statistics.
        missing = [n for n in names if n not in self.stats and self.tables[n].file_type is None]
        for name in missing:
            check_cancelled()
            schema, table = split_name(self.tables[name])
            # Names from the catalog may need quoting (mixed case, spaces); ANALYZE takes no
            # parameters.
            quote = self.conn.dialect.identifier_preparer.quote
            self.conn.execute(text(f"ANALYZE {quote(schema)}.{quote(table)}"))
            self.analyzed.add(name)
        if missing:
            self.stats.update(self._read(missing))
        self.tuples = dict(self.conn.execute(text(POSTGRES_TUPLES), {"names": names}).all())

    def _read(self, names: list[str]) -> dict[str, dict[str, tuple[Any, ...]]]:
        from sqlalchemy import text

        found: dict[str, dict[str, tuple[Any, ...]]] = {}
        for schema, table, column, *figures in self.conn.execute(
            text(POSTGRES_STATS), {"names": names}
        ):
            found.setdefault(f"{schema}.{table}", {})[column] = tuple(figures)
        return found

    def profile(self, table: TableInfo, top: int) -> TableProfile | None:
        columns = (self.stats or {}).get(table.name)
        if columns is None:
            return None
        rows = self.tuples.get(table.name)
        rows = int(rows) if rows is not None and rows >= 0 else table.row_count
        how = "ANALYZE run now" if table.name in self.analyzed else "existing statistics"
        profile = TableProfile(table.name, rows, False, "estimate",
                               note=f"PostgreSQL pg_stats ({how}): figures are estimates; no mean")
        for column in table.columns:
            figures = columns.get(column.name)
            profile.columns[column.name] = (_from_pg_stats(column.name, figures, rows or 0, top)
                                            if figures else ColumnProfile(column.name))
        return profile


def _from_pg_stats(name: str, figures: tuple[Any, ...], rows: int, top: int) -> ColumnProfile:
    null_frac, n_distinct, values, freqs, low, high = figures
    # A negative n_distinct is minus the distinct share of the rows (PostgreSQL's form for columns
    # whose distinct count grows with the table).
    distinct = n_distinct if n_distinct is None or n_distinct >= 0 else -n_distinct * rows
    common = list(zip(values or [], freqs or []))
    candidates = [v for v in (low, high) if v is not None] + [v for v, _ in common]
    low_value, high_value = _extremes(candidates) if candidates else (None, None)
    return ColumnProfile(
        name,
        null_count=int(round((null_frac or 0) * rows)),
        distinct_count=int(round(distinct)) if distinct is not None else None,
        distinct_approx=True,
        min_value=clip(low_value), max_value=clip(high_value),
        top_values=[{"value": clip(v), "share": round(f, 6)} for v, f in common[:top]] or None)


def _extremes(values: list[str]) -> tuple[Any, Any]:
    """Numbers compare as numbers; anything else as text (the database's collation may differ)."""
    try:
        numbers = [float(v) for v in values]
        return values[numbers.index(min(numbers))], values[numbers.index(max(numbers))]
    except ValueError:
        return min(values), max(values)


def sample_values(conn: Any, table: TableInfo, columns: list[ColumnInfo], rows: int,
                  dialect: str) -> dict[str, list[Any]]:
    """A few values per column (``LIMIT rows``): what the data looks like, for a human."""
    import sqlalchemy as sa

    if not columns or rows <= 0:
        return {}
    schema, name = split_name(table)
    source = sa.table(
        name, *(sa.column(c.name) for c in columns), schema=None if dialect == "sqlite" else schema
    )
    # No ORDER BY: whatever rows come first, the cheapest read there is.
    result = conn.execute(sa.select(*(source.c[c.name] for c in columns)).limit(rows)).all()
    return {c.name: [clip(r[i]) for r in result if r[i] is not None] for i, c in enumerate(columns)}


def clip(value: Any) -> Any:
    """A JSON-friendly value, text cut to VALUE_LIMIT characters."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Hex takes two characters a byte: half VALUE_LIMIT bytes fill VALUE_LIMIT characters.
        return "0x" + bytes(value)[: VALUE_LIMIT // 2].hex()
    if isinstance(value, Decimal):
        # JSON has no Decimal; whole ones stay exact as int.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (list, dict)):
        value = json.dumps(value, default=str)
    elif not isinstance(value, str):
        value = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return value if len(value) <= VALUE_LIMIT else value[:VALUE_LIMIT] + "…"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
