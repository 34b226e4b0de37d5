"""SQL databases as a source, by SQLAlchemy URL (PostgreSQL, MySQL/MariaDB, SQLite)."""
from __future__ import annotations

import fnmatch
from typing import Any, Callable

from .hookspecs import hookimpl
from .model import Catalog, TableInfo, TableProfile
from .sensitive import sensitive_name
from .source import ProfileOptions, SourceError
from .urls import mask_url, scheme_of, with_password

SCHEMES = {"postgresql", "postgres", "mysql", "mariadb", "sqlite"}
# Seconds. Without it an unreachable host that drops packets holds the task for the operating
# system's TCP timeout, minutes; psycopg and PyMySQL both take connect_timeout. SQLite is a file.
CONNECT_TIMEOUT = 10
DRIVER_ARGS = {
    "postgresql": {"connect_timeout": CONNECT_TIMEOUT},
    "mysql": {"connect_timeout": CONNECT_TIMEOUT},
    "mariadb": {"connect_timeout": CONNECT_TIMEOUT},
}


class SqlSource:
    """One database; one connection for the whole extraction and profile."""

    kind = "sql"

    def __init__(self, url: str, include: list[str] | None = None, exclude: list[str] | None = None,
                 password: str | None = None) -> None:
        self.url = with_password(url, password)
        self.display = mask_url(url)
        self.include, self.exclude = include or [], exclude or []
        self._engine: Any = None
        self._conn: Any = None
        self._stats: Any = None
        self._all_tables: list[TableInfo] = []

    def problems(self) -> list[str]:
        try:
            from sqlalchemy.engine import make_url
        except ImportError:
            return [missing_extra()]
        try:
            make_url(self.url)
        except Exception as exc:
            return [f"{self.display}: not a SQLAlchemy URL ({first_line(exc)})"]
        return []

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    @property
    def connection(self) -> Any:
        if self._conn is None:
            import sqlalchemy as sa

            url = sa.engine.make_url(self.url)
            # SQLAlchemy dropped the "postgres" name in 1.4, but URLs from Heroku-style
            # environments still use it; it means postgresql.
            if url.get_backend_name() == "postgres":
                url = url.set(drivername="postgresql")
            args = DRIVER_ARGS.get(url.get_backend_name(), {})
            try:
                # autocommit: reads need no transaction, and ANALYZE's statistics must outlive us
                self._engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool,
                                                isolation_level="AUTOCOMMIT")
                self._conn = self._engine.connect()
            except Exception as exc:
                raise SourceError(
                    f"cannot connect to {self.display}: {self.masked(first_line(exc))}"
                ) from None
            if self.dialect == "postgresql":
                # Off, whatever the role or database sets: that would cut an exact scan of a large
                # table halfway; the task's own timeout and cancel limit it instead.
                self._conn.exec_driver_sql("SET statement_timeout = 0")
        return self._conn

    def masked(self, text: str) -> str:
        from sqlalchemy.engine import make_url

        password = make_url(self.url).password
        # Drivers may quote the connection string, password included, in their errors.
        return text.replace(str(password), "****") if password else text

    def extract(self) -> Catalog:
        from .sql_catalog import read_catalog

        catalog = self._run(lambda: read_catalog(self.connection, self.dialect))
        catalog.tables = [t for t in catalog.tables if self.wanted(t.name)]
        return catalog

    def wanted(self, name: str) -> bool:
        included = not self.include or any(fnmatch.fnmatchcase(name, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def profile(self, table: TableInfo, options: ProfileOptions,
                check_cancelled: Callable[[], None]) -> TableProfile:
        return self._run(lambda: self._profile(table, options, check_cancelled))

    def _profile(self, table: TableInfo, options: ProfileOptions,
                 check_cancelled: Callable[[], None]) -> TableProfile:
        from . import sql_profile

        result = None
        if options.mode == "estimate" and self.dialect == "postgresql":
            result = self._statistics(check_cancelled).profile(table, options.top_values)
        if result is None:
            # A table no larger than sample_limit is cheap to read whole (the LIMIT sample of
            # databases without TABLESAMPLE would read it all anyway), so it gets exact figures.
            small = table.row_count is not None and table.row_count <= options.sample_limit
            mode = "exact" if options.mode == "exact" or small else "sample"
            result = sql_profile.profile_by_aggregate(self.connection, table, self.dialect, mode,
                                                      options.sample_percent, options.sample_limit)
        self._add_samples(table, result, options.sample_rows)
        return result

    def _statistics(self, check_cancelled: Callable[[], None]) -> Any:
        from .sql_profile import PostgresStatistics

        if self._stats is None:
            self._stats = PostgresStatistics(self.connection, self._all_tables)
            self._stats.load(check_cancelled)
        return self._stats

    def set_tables(self, tables: list[TableInfo]) -> None:
        """The tables about to be profiled: statistics are read for all of them at once."""
        self._all_tables = tables
        self._stats = None

    def _add_samples(self, table: TableInfo, result: TableProfile, rows: int) -> None:
        from .sensitive import redact
        from .sql_profile import sample_values

        # Columns whose name looks sensitive are not even selected: their values never leave the
        # database. Those found sensitive by their values are redacted after.
        shown = [c for c in table.columns if not sensitive_name(c.name)]
        for name, values in sample_values(
            self.connection, table, shown, rows, self.dialect
        ).items():
            result.columns[name].sample_values = values
        redact(result)

    def _run(self, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except SourceError:
            raise
        except Exception as exc:
            from sqlalchemy.exc import SQLAlchemyError

            # A database's refusal is one masked line for the user; anything else is a bug and
            # keeps its traceback.
            if isinstance(exc, SQLAlchemyError):
                raise SourceError(f"{self.display}: {self.masked(first_line(exc))}") from None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._conn = None


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def missing_extra() -> str:
    return "the metadata executor needs its extra: pip install 'lake-orchestrator[metadata]'"


@hookimpl
def metadata_source(location: str, options: dict[str, Any]) -> SqlSource | None:
    if scheme_of(location).split("+")[0] not in SCHEMES:
        return None
    return SqlSource(
        location, options.get("include"), options.get("exclude"), options.get("password")
    )


@hookimpl
def metadata_source_types() -> list[str]:
    return ["postgresql+psycopg://…", "mysql+pymysql://…", "sqlite:///…"]
