"""Real databases for the metadata executor's tests: each test gets its own PostgreSQL schema or
MariaDB database (and its own target database), dropped afterwards."""
from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test"


def _engine(url: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _reachable(url: str) -> str | None:
    try:
        with _engine(url).connect():
            return None
    except Exception as exc:  # the services are started by .ci/run; say why if they are not up
        return f"{url} unreachable: {str(exc).splitlines()[0]}"


@dataclasses.dataclass
class Database:
    url: str  # where the test's tables are
    name: str  # schema (PostgreSQL) or database (MariaDB)
    engine: Any

    def run(self, *statements: str) -> None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def scalar(self, statement: str) -> Any:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return conn.execute(sa.text(statement)).scalar()


@pytest.fixture
def pg() -> Iterator[Database]:
    """A fresh schema in the ``test`` database."""
    problem = _reachable(PG_ADMIN)
    if problem:
        pytest.fail(problem)
    name = f"t_meta_{uuid.uuid4().hex[:10]}"
    engine = _engine(PG_ADMIN)
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        yield Database(PG_ADMIN, name, engine)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        engine.dispose()


@pytest.fixture
def pg_target() -> Iterator[Database]:
    """A fresh PostgreSQL database for the target (its ``_executor_metadata`` schema is per database)."""
    name = f"t_meta_{uuid.uuid4().hex[:10]}"
    admin = _engine(PG_ADMIN)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    engine = _engine(url)
    try:
        yield Database(url, name, engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def mariadb() -> Iterator[Database]:
    """A fresh MariaDB database."""
    problem = _reachable(MARIADB_ADMIN)
    if problem:
        pytest.fail(problem)
    name = f"t_meta_{uuid.uuid4().hex[:10]}"
    admin = _engine(MARIADB_ADMIN)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    url = MARIADB_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    engine = _engine(url)
    try:
        yield Database(url, name, engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        admin.dispose()


def context(tmp_path: Path, run_id: str | None = None, step: str = "meta", task: str = "task") -> Any:
    from orchestrator import Context

    return Context(run_id=run_id or str(uuid.uuid4()), run_date="2026-11-30", routine_name="metadata_test",
                   step=step, task=task, home=tmp_path / "home")


def executor(**params: Any) -> Any:
    from executors.metadata.executor import MetadataExecutor

    return MetadataExecutor(**params)


class StatementCounter:
    """Counts the statements an engine sends (SQLAlchemy's cursor event): the set-based promise."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __enter__(self) -> "StatementCounter":
        import sqlalchemy as sa

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: Any) -> None:
        import sqlalchemy as sa

        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        self.statements.append(statement)

    def against(self, marker: str) -> list[str]:
        return [s for s in self.statements if marker in s]
