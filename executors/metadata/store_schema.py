"""The target's tables in ``_executor_metadata`` and the versioned migrations that create them.

A schema where the database has schemas (PostgreSQL...); a ``_executor_metadata_`` table-name
prefix where it has none worth using (SQLite; MySQL/MariaDB, whose schemas are databases the
target's user may not be allowed to create).
"""
from __future__ import annotations

from typing import Any, Callable

NAME = "_executor_metadata"
NO_SCHEMA_DIALECTS = {"sqlite", "mysql", "mariadb"}
# Lengths, not Text, for key columns: MySQL cannot put a TEXT column in a primary key without a
# prefix length. Run ids are 36-character UUIDs, source ids 16 hex digits.
KEY = 64  # run ids, source ids, task names
IDENT = 255  # table names (a file path for files), column names


def layout(dialect: str) -> tuple[str | None, str]:
    """(schema, table-name prefix) for a dialect."""
    return (None, f"{NAME}_") if dialect in NO_SCHEMA_DIALECTS else (NAME, "")


def build_tables(dialect: str, version: int) -> dict[str, Any]:
    """SQLAlchemy tables as of schema ``version`` (each migration adds to the previous)."""
    import sqlalchemy as sa

    schema, prefix = layout(dialect)
    meta = sa.MetaData(schema=schema)
    key = lambda name: sa.Column(name, sa.String(KEY), primary_key=True)  # noqa: E731
    ident = lambda name: sa.Column(name, sa.String(IDENT), primary_key=True)  # noqa: E731
    # Every data table's key starts with (run_id, source_id): a rerun of a task replaces just its
    # own rows, and runs and sources never overwrite each other.
    t = {
        "schema_version": sa.Table(
            f"{prefix}schema_version", meta, sa.Column("version", sa.Integer, primary_key=True),
            # Times are ISO 8601 text in UTC, the same on every dialect (no driver converts them).
            sa.Column("applied_at", sa.String(40), nullable=False)),
        "sources": sa.Table(
            f"{prefix}sources", meta, key("run_id"), key("source_id"),
            sa.Column("url", sa.Text, nullable=False), sa.Column("source_type", sa.String(KEY)),
            sa.Column("extracted_at", sa.String(40)), sa.Column("tables_found", sa.Integer),
            sa.Column("columns_found", sa.Integer), sa.Column("total_size", sa.BigInteger)),
        "tables": sa.Table(
            f"{prefix}tables", meta, key("run_id"), key("source_id"), ident("table_name"),
            sa.Column("file_path", sa.Text), sa.Column("file_type", sa.String(KEY)),
            sa.Column("row_count", sa.BigInteger), sa.Column("row_count_exact", sa.Boolean),
            sa.Column("column_count", sa.Integer), sa.Column("size_bytes", sa.BigInteger),
            sa.Column("last_modified", sa.String(40)), sa.Column("partition_keys", sa.Text),
            sa.Column("profile_mode", sa.String(16)), sa.Column("profile_note", sa.Text)),
        "columns": sa.Table(
            f"{prefix}columns", meta, key("run_id"), key("source_id"), ident("table_name"),
            sa.Column("column_name", sa.String(128), primary_key=True),
            sa.Column("data_type", sa.String(IDENT)), sa.Column("position", sa.Integer),
            sa.Column("nullable", sa.Boolean), sa.Column("primary_key", sa.Boolean),
            sa.Column("foreign_key", sa.Text), sa.Column("null_count", sa.BigInteger),
            sa.Column("null_share", sa.Float), sa.Column("distinct_count", sa.BigInteger),
            sa.Column("distinct_approx", sa.Boolean), sa.Column("min_value", sa.Text),
            sa.Column("max_value", sa.Text), sa.Column("mean", sa.Float),
            # JSON as text: not every target dialect has a JSON type.
            sa.Column("top_values", sa.Text), sa.Column("sample_values", sa.Text),
            sa.Column("sensitive", sa.Boolean)),
        "executor_runs": sa.Table(
            f"{prefix}executor_runs", meta, key("run_id"), key("source_id"), key("task"),
            sa.Column("executor_version", sa.String(KEY)), sa.Column("mode", sa.String(16)),
            sa.Column("status", sa.String(16), nullable=False), sa.Column("error", sa.Text),
            sa.Column("started_at", sa.String(40)), sa.Column("finished_at", sa.String(40))),
        "logs": sa.Table(
            f"{prefix}logs", meta, key("run_id"), key("source_id"), key("task"),
            sa.Column("seq", sa.Integer, primary_key=True), sa.Column("level", sa.String(16)),
            sa.Column("message", sa.Text), sa.Column("logged_at", sa.String(40))),
    }
    # Tables as of `version`, so a migration creates exactly what its version added (the store
    # always builds the latest; a test builds an older target and migrates it forward).
    if version >= 2:
        t["schema_changes"] = sa.Table(
            f"{prefix}schema_changes", meta, key("run_id"), key("source_id"), ident("table_name"),
            sa.Column("column_name", sa.String(128), primary_key=True),
            sa.Column("change", sa.String(16), primary_key=True),
            sa.Column("old_type", sa.String(IDENT)), sa.Column("new_type", sa.String(IDENT)),
            sa.Column("compared_with", sa.String(KEY)))
    return t


def _v1(conn: Any, tables: dict[str, Any]) -> None:
    for name in ("sources", "tables", "columns", "executor_runs", "logs"):
        # checkfirst: MySQL commits each CREATE TABLE at once, so a migration that failed halfway
        # has left tables behind without its version row; applying it again must not fail on them.
        tables[name].create(conn, checkfirst=True)


def _v2(conn: Any, tables: dict[str, Any]) -> None:
    """Drift found by check_schema gets its own table."""
    tables["schema_changes"].create(conn, checkfirst=True)


# Append only: a target records how many migrations it has applied, so a changed earlier one would
# never run on it. A change to the tables is a new migration at the end.
MIGRATIONS: list[Callable[[Any, dict[str, Any]], None]] = [_v1, _v2]
VERSION = len(MIGRATIONS)
