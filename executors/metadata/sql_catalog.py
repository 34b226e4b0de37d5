"""Catalog reads for SQL databases: a few set-based queries for the whole database.

SQLAlchemy's inspector asks table by table (four statements per table: 2,001 for 500 tables);
these ask the system catalog once for all columns and once for all keys.
"""
from __future__ import annotations

from typing import Any, Iterable

from .model import Catalog, ColumnInfo, TableInfo

# The store may live in the very database it describes: its own schema or tables are left out.
TARGET_NAME = "_executor_metadata"

# Sizes: where the table has statistics (reltuples >= 0, as the row count also needs), pages from
# pg_class for the table, its TOAST table and its indexes, as of the last VACUUM/ANALYZE, like the
# row count; only tables never analyzed get pg_total_relation_size, which opens the table and each
# index (about 0.1-0.2 ms each: most of this query's time for 500 tables when asked of all).
# MATERIALIZED: PostgreSQL 12 and later would otherwise inline the CTE and work out each size once
# per column row of the join below, not once per table. Partitions (relispartition) are catalogued
# through their parent. In LIKE, "\_" is a literal underscore, not any character.
POSTGRES_COLUMNS = f"""
WITH rel AS MATERIALIZED (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint AS tuples,
         CASE WHEN c.relkind NOT IN ('r', 'm', 'p') THEN NULL
              WHEN c.reltuples < 0 THEN pg_total_relation_size(c.oid)
              ELSE (c.relpages + COALESCE(t.relpages, 0) + COALESCE(ti.relpages, 0)
                    + COALESCE(i.pages, 0))::bigint * current_setting('block_size')::int END AS size
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
  LEFT JOIN pg_index tx ON tx.indrelid = t.oid
  LEFT JOIN pg_class ti ON ti.oid = tx.indexrelid
  LEFT JOIN (SELECT x.indrelid, sum(ic.relpages) AS pages FROM pg_index x
             JOIN pg_class ic ON ic.oid = x.indexrelid GROUP BY x.indrelid) i ON i.indrelid = c.oid
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', '{TARGET_NAME}')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%')
SELECT r.nspname, r.relname, r.relkind, r.tuples, r.size,
       a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM rel r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2, 6"""

# unnest(conkey, confkey) pairs each column of a composite key with the column it references, so a
# two-column foreign key yields two rows.
POSTGRES_KEYS = """
SELECT n.nspname, c.relname, k.contype, a.attname, fn.nspname, fc.relname, fa.attname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(k.conkey, k.confkey) AS u(attnum, fattnum)
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
LEFT JOIN pg_class fc ON fc.oid = k.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
LEFT JOIN pg_attribute fa ON fa.attrelid = k.confrelid AND fa.attnum = u.fattnum
WHERE k.contype IN ('p', 'f')"""

# A MySQL schema is a database: DATABASE(), the URL's, bounds the catalog. TABLE_ROWS is InnoDB's
# estimate; the CAST hands the last change over as text, as last_modified is kept.
MYSQL_COLUMNS = f"""
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, t.TABLE_TYPE, t.TABLE_ROWS, t.DATA_LENGTH + t.INDEX_LENGTH,
       CAST(COALESCE(t.UPDATE_TIME, t.CREATE_TIME) AS CHAR), c.ORDINAL_POSITION, c.COLUMN_NAME,
       c.COLUMN_TYPE, c.IS_NULLABLE
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME NOT LIKE '{TARGET_NAME}\\_%'
ORDER BY 1, 2, 7"""

MYSQL_KEYS = """
SELECT k.TABLE_SCHEMA, k.TABLE_NAME, tc.CONSTRAINT_TYPE, k.COLUMN_NAME,
       k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE k
JOIN information_schema.TABLE_CONSTRAINTS tc ON tc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA
 AND tc.TABLE_NAME = k.TABLE_NAME AND tc.CONSTRAINT_NAME = k.CONSTRAINT_NAME
WHERE k.TABLE_SCHEMA = DATABASE() AND tc.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'FOREIGN KEY')"""

# pragma_table_info as a table-valued function: every table's columns in one statement. cid counts
# from 0 (positions elsewhere from 1); SQLite's LIKE has no escape character unless told.
SQLITE_COLUMNS = f"""
SELECT 'main', m.name, m.type, p.cid + 1, p.name, p.type, p."notnull", p.pk
FROM sqlite_master m JOIN pragma_table_info(m.name) p
WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
  AND m.name NOT LIKE '{TARGET_NAME}\\_%' ESCAPE '\\'
ORDER BY 2, 4"""

# Foreign keys only: SQLite's primary keys come with the columns (pragma_table_info's pk).
SQLITE_KEYS = """
SELECT 'main', m.name, 'f', f."from", 'main', f."table", f."to"
FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'"""

SQLITE_COUNT_CHUNK = 400  # SQLite allows 500 terms in a compound SELECT


def read_catalog(conn: Any, dialect: str) -> Catalog:
    """All tables, columns and keys of the database ``conn`` is connected to."""
    from sqlalchemy import text

    catalog = Catalog("sql")
    if dialect == "postgresql":
        tables = _postgres_tables(conn.execute(text(POSTGRES_COLUMNS)).all())
        keys = conn.execute(text(POSTGRES_KEYS)).all()
    elif dialect in ("mysql", "mariadb"):
        tables = _mysql_tables(conn.execute(text(MYSQL_COLUMNS)).all())
        keys = conn.execute(text(MYSQL_KEYS)).all()
        # "PRIMARY KEY" / "FOREIGN KEY" as PostgreSQL's contype letters, which _apply_keys reads.
        keys = [(s, t, "p" if kind.startswith("P") else "f", *rest) for s, t, kind, *rest in keys]
    elif dialect == "sqlite":
        tables = _sqlite_tables(conn.execute(text(SQLITE_COLUMNS)).all())
        keys = conn.execute(text(SQLITE_KEYS)).all()
        catalog.queries += _sqlite_counts(conn, tables)
    else:
        raise ValueError(f"no catalog queries for dialect {dialect!r}")
    _apply_keys(tables, keys)
    catalog.tables = list(tables.values())
    catalog.queries += 2
    return catalog


def _table(tables: dict[str, TableInfo], schema: str, name: str) -> TableInfo:
    key = f"{schema}.{name}"
    if key not in tables:
        tables[key] = TableInfo(name=key)
    return tables[key]


def _postgres_tables(rows: Iterable[Any]) -> dict[str, TableInfo]:
    tables: dict[str, TableInfo] = {}
    for schema, name, kind, tuples, size, position, column, data_type, not_null in rows:
        table = _table(tables, schema, name)
        # The table's own figures repeat on each of its column rows: taken from the first.
        if not table.columns:
            # reltuples is -1 when never vacuumed or analyzed (PostgreSQL 14+): unknown, not empty.
            table.row_count = int(tuples) if tuples is not None and tuples >= 0 else None
            table.size_bytes = size
            table.file_type = {"v": "view", "m": "materialized view", "f": "foreign table"}.get(
                kind
            )
        table.columns.append(ColumnInfo(column, data_type, position, not not_null))
    return tables


def _mysql_tables(rows: Iterable[Any]) -> dict[str, TableInfo]:
    tables: dict[str, TableInfo] = {}
    for (
        schema,
        name,
        kind,
        rows_estimate,
        size,
        modified,
        position,
        column,
        data_type,
        nullable,
    ) in rows:
        table = _table(tables, schema, name)
        if not table.columns:
            table.row_count = int(rows_estimate) if rows_estimate is not None else None
            table.size_bytes = int(size) if size is not None else None
            table.last_modified = modified
            table.file_type = "view" if kind == "VIEW" else None
        table.columns.append(ColumnInfo(column, data_type, int(position), nullable == "YES"))
    return tables


def _sqlite_tables(rows: Iterable[Any]) -> dict[str, TableInfo]:
    tables: dict[str, TableInfo] = {}
    for schema, name, kind, position, column, data_type, not_null, pk in rows:
        table = _table(tables, schema, name)
        table.file_type = "view" if kind == "view" else None
        table.columns.append(
            ColumnInfo(column, data_type or "", int(position), not not_null, bool(pk))
        )
    return tables


def _sqlite_counts(conn: Any, tables: dict[str, TableInfo]) -> int:
    """SQLite keeps no row estimates: count every table, many tables per statement."""
    from sqlalchemy import text

    names = [t.name.split(".", 1)[1] for t in tables.values()]
    queries = 0
    for start in range(0, len(names), SQLITE_COUNT_CHUNK):
        chunk = names[start:start + SQLITE_COUNT_CHUNK]
        # Table names cannot be bound parameters: quoted here, doubling any quote inside the name.
        sql = " UNION ALL ".join(f"SELECT {_literal(n)}, COUNT(*) FROM {_quote(n)}" for n in chunk)
        for name, count in conn.execute(text(sql)):
            table = tables[f"main.{name}"]
            table.row_count, table.row_count_exact = int(count), True
        queries += 1
    return queries


def _apply_keys(tables: dict[str, TableInfo], keys: Iterable[Any]) -> None:
    for schema, name, kind, column, ref_schema, ref_table, ref_column in keys:
        table = tables.get(f"{schema}.{name}")
        # A key of a table the catalog left out (a partition, a system schema) is skipped.
        found = next((c for c in table.columns if c.name == column), None) if table else None
        if found is None:
            continue
        if kind == "p":
            found.primary_key = True
        elif ref_table:
            found.foreign_key = f"{ref_schema}.{ref_table}.{ref_column}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
