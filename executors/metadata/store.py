"""The target store: creates and migrates ``_executor_metadata``, writes one run's rows.

Each write replaces the rows of (run, source[, task]) in one transaction, so a retried or
resumed task writes nothing twice and a failure leaves the previous state.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

from . import store_schema
from .model import Catalog, ColumnProfile, TableProfile
from .urls import mask_url


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class StoreError(Exception):
    """The target cannot be reached or written: one line, credentials masked."""


class MetadataStore:
    def __init__(self, url: str, upto: int | None = None) -> None:
        import sqlalchemy as sa

        self.display = mask_url(url)
        try:
            # NullPool: a connection per transaction, closed at its end, so nothing stays open on
            # the target between one task's writes and the next (a routine may run for hours).
            self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        except Exception as exc:
            raise StoreError(f"target {self.display}: {exc}") from None
        self.dialect = self.engine.dialect.name
        self.t = store_schema.build_tables(self.dialect, store_schema.VERSION)
        self.migrate(store_schema.VERSION if upto is None else upto)

    def migrate(self, upto: int) -> int:
        """Apply the migrations the target lacks, in order, in one transaction under one lock."""
        import sqlalchemy as sa

        schema, _ = store_schema.layout(self.dialect)
        with self._begin() as conn:
            # Two steps (or routines) on one new target would both create the schema and the tables,
            # and checkfirst looks before it creates: both look, both create. On PostgreSQL this
            # lock, held to the end of the transaction, makes the second wait and then find them
            # made.
            if self.dialect == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext('_executor_metadata'))")
                )
            if schema:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            self.t["schema_version"].create(conn, checkfirst=True)
            current = (
                conn.execute(sa.select(sa.func.max(self.t["schema_version"].c.version))).scalar()
                or 0
            )
            for version in range(current + 1, upto + 1):
                store_schema.MIGRATIONS[version - 1](conn, self.t)
                conn.execute(
                    self.t["schema_version"].insert().values(version=version, applied_at=now())
                )
        return max(current, upto)

    def _begin(self) -> Any:
        try:
            return self.engine.begin()
        except Exception as exc:
            raise StoreError(f"cannot open target {self.display}: {_first_line(exc)}") from None

    def version(self) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return (
                conn.execute(sa.select(sa.func.max(self.t["schema_version"].c.version))).scalar()
                or 0
            )

    def _replace(
        self, conn: Any, name: str, where: dict[str, Any], rows: Iterable[dict[str, Any]]
    ) -> None:
        table = self.t[name]
        conn.execute(table.delete().where(*(table.c[k] == v for k, v in where.items())))
        # No insert for no rows: SQLAlchemy runs an INSERT given an empty list once, without
        # parameters, which writes a row of NULLs (or fails on the key).
        rows = list(rows)
        if rows:
            conn.execute(table.insert(), rows)

    def write_catalog(self, run_id: str, source: str, url: str, catalog: Catalog) -> None:
        keys = {"run_id": run_id, "source_id": source}
        with self._begin() as conn:
            self._replace(conn, "sources", keys, [{
                **keys, "url": url, "source_type": catalog.source_type, "extracted_at": now(),
                "tables_found": len(catalog.tables), "columns_found": catalog.column_count,
                "total_size": catalog.total_size}])
            self._replace(conn, "tables", keys, [{
                **keys, "table_name": t.name, "file_path": t.file_path, "file_type": t.file_type,
                "row_count": t.row_count, "row_count_exact": t.row_count_exact,
                "column_count": len(t.columns), "size_bytes": t.size_bytes,
                "last_modified": t.last_modified,
                "partition_keys": json.dumps(t.partition_keys) if t.partition_keys else None}
                for t in catalog.tables])
            self._replace(conn, "columns", keys, [{
                **keys, "table_name": t.name, "column_name": c.name, "data_type": c.data_type,
                "position": c.position, "nullable": c.nullable, "primary_key": c.primary_key,
                "foreign_key": c.foreign_key} for t in catalog.tables for c in t.columns])

    def write_profile(
        self, run_id: str, source: str, catalog: Catalog, profile: TableProfile
    ) -> None:
        """Profile figures of one table (its catalog rows are rewritten with them)."""
        table = next(t for t in catalog.tables if t.name == profile.table)
        keys = {"run_id": run_id, "source_id": source, "table_name": table.name}
        rows = []
        for column in table.columns:
            # Every catalog column gets a row: one without figures (a Glue column the files lack)
            # keeps its catalog row with empty figures instead of vanishing from this run.
            p = profile.columns.get(column.name)
            rows.append({**keys, "column_name": column.name, "data_type": column.data_type,
                         "position": column.position, "nullable": column.nullable,
                         "primary_key": column.primary_key, "foreign_key": column.foreign_key,
                         **_profile_row(p or ColumnProfile(column.name), profile.row_count)})
        tables = self.t["tables"]
        with self._begin() as conn:
            self._replace(conn, "columns", keys, rows)
            conn.execute(tables.update().where(*(tables.c[k] == v for k, v in keys.items())).values(
                row_count=profile.row_count, row_count_exact=profile.row_count_exact,
                profile_mode=profile.mode, profile_note=profile.note))

    def write_changes(
        self, run_id: str, source: str, changes: list[dict[str, Any]], against: str
    ) -> None:
        keys = {"run_id": run_id, "source_id": source}
        with self._begin() as conn:
            self._replace(conn, "schema_changes", keys, [{**keys, **c, "compared_with": against}
                                                         for c in changes])

    def record_task(
        self,
        run_id: str,
        source: str,
        task: str,
        version: str,
        mode: str | None,
        status: str,
        error: str | None,
        started: str,
        logs: list[tuple[str, str, str]],
    ) -> None:
        keys = {"run_id": run_id, "source_id": source, "task": task}
        with self._begin() as conn:
            self._replace(conn, "executor_runs", keys, [{
                **keys, "executor_version": version, "mode": mode, "status": status, "error": error,
                "started_at": started, "finished_at": now()}])
            self._replace(
                conn,
                "logs",
                keys,
                [
                    {**keys, "seq": i, "level": level, "message": message, "logged_at": at}
                    for i, (at, level, message) in enumerate(logs)
                ],
            )

    def previous_columns(
        self, source: str, run_id: str
    ) -> tuple[str | None, dict[tuple[str, str], str]]:
        """The latest other run's extraction of ``source``: {(table, column): type}."""
        import sqlalchemy as sa

        s, c = self.t["sources"], self.t["columns"]
        with self.engine.connect() as conn:
            last = conn.execute(
                sa.select(s.c.run_id)
                # Another run's: the task asking has just written this run's own.
                .where(s.c.source_id == source, s.c.run_id != run_id)
                # extracted_at has one-second resolution; run ids are random, so they only make the
                # pick between two extractions of the same second deterministic, not chronological.
                .order_by(s.c.extracted_at.desc(), s.c.run_id.desc())
                .limit(1)
            ).scalar()
            if last is None:
                return None, {}
            rows = conn.execute(sa.select(c.c.table_name, c.c.column_name, c.c.data_type)
                                .where(c.c.source_id == source, c.c.run_id == last)).all()
        return last, {(t, col): kind for t, col, kind in rows}

    def run_document(self, run_id: str, source: str | None = None) -> dict[str, Any]:
        """Everything one run wrote, as plain JSON-able dicts (the publish payload, the summary)."""
        import sqlalchemy as sa

        doc: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for name in ("sources", "tables", "columns", "schema_changes"):
                table = self.t[name]
                where = [table.c.run_id == run_id] + (
                    [table.c.source_id == source] if source else []
                )
                order = [table.c[k] for k in ("table_name", "position") if k in table.c]
                doc[name] = [
                    dict(r)
                    for r in conn.execute(
                        sa.select(table).where(*where).order_by(*order)
                    ).mappings()
                ]
        for column in doc["columns"]:
            for key in ("top_values", "sample_values"):
                if column.get(key):
                    column[key] = json.loads(column[key])
        return doc

    def close(self) -> None:
        self.engine.dispose()


def _profile_row(p: Any, rows: int | None) -> dict[str, Any]:
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "null_count": p.null_count,
        "null_share": p.null_share(rows),
        "distinct_count": p.distinct_count,
        "distinct_approx": p.distinct_approx,
        "min_value": text(p.min_value),
        "max_value": text(p.max_value),
        "mean": p.mean,
        "sensitive": p.sensitive,
        "top_values": json.dumps(p.top_values, default=str) if p.top_values else None,
        "sample_values": json.dumps(p.sample_values, default=str) if p.sample_values else None,
    }


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
