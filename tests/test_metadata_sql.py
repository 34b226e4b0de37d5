"""The metadata executor on real databases: PostgreSQL, MariaDB, SQLite."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from metadata_fixtures import StatementCounter, context, executor

CATALOG_MARKERS = ("pg_class", "pg_constraint", "information_schema", "sqlite_master")


def source_statements(counter: StatementCounter) -> list[str]:
    return [s for s in counter.statements if "_executor_metadata" not in s]


def catalog_statements(counter: StatementCounter) -> list[str]:
    return [s for s in source_statements(counter) if any(m in s for m in CATALOG_MARKERS)]


def make_pg_tables(pg, count: int) -> None:
    s = pg.name
    statements = [f'CREATE TABLE "{s}".parent (id int PRIMARY KEY, name text NOT NULL)']
    for i in range(count):
        statements.append(f'CREATE TABLE "{s}".child_{i} (id bigint, parent_id int REFERENCES "{s}".parent(id), '
                          f'note varchar(20), PRIMARY KEY (id))')
    pg.run(*statements)


@pytest.mark.parametrize("tables", [3, 40])
def test_pg_catalog_is_a_few_set_based_queries_whatever_the_table_count(pg, tmp_path, tables):
    make_pg_tables(pg, tables)
    meta = executor(source=pg.url, target=f"sqlite:///{tmp_path}/m.db", include=[f"{pg.name}.*"])
    with StatementCounter() as counter:
        metrics = meta.extract(context(tmp_path))
    meta.close()
    assert metrics.tables_seen == tables + 1
    assert len(catalog_statements(counter)) <= 5, catalog_statements(counter)
    doc = meta.store.run_document(_last_run(meta))
    child = {c["column_name"]: c for c in doc["columns"] if c["table_name"] == f"{pg.name}.child_0"}
    assert child["id"]["primary_key"] and child["id"]["nullable"] is False and child["id"]["data_type"] == "bigint"
    assert child["parent_id"]["foreign_key"] == f"{pg.name}.parent.id"
    assert child["note"]["data_type"] == "character varying(20)" and child["note"]["position"] == 3


def _last_run(meta) -> str:
    import sqlalchemy as sa

    sources = meta.store.t["sources"]
    with meta.store.engine.connect() as conn:
        return conn.execute(sa.select(sources.c.run_id)).scalar()


def fill_people(db, table: str) -> None:
    rows = ", ".join(f"({i}, 'n{i % 4}', {'NULL' if i % 5 == 0 else i * 2}, 'p{i}@example.com', "
                     f"'{'x' if i % 2 else 'y'}')" for i in range(1, 101))
    db.run(f"INSERT INTO {table} (id, name, score, contact, kind) VALUES {rows}")


def check_exact_people(doc: dict, table: str) -> None:
    columns = {c["column_name"]: c for c in doc["columns"] if c["table_name"] == table}
    assert columns["score"]["null_count"] == 20 and columns["score"]["null_share"] == 0.2
    assert columns["score"]["distinct_count"] == 80 and columns["score"]["distinct_approx"] is False
    assert float(columns["score"]["min_value"]) == 2 and float(columns["score"]["max_value"]) == 198
    assert columns["score"]["mean"] == pytest.approx(sum(i * 2 for i in range(1, 101) if i % 5) / 80)
    assert columns["name"]["distinct_count"] == 4 and columns["name"]["min_value"] == "n0"
    # contact: a harmless name, but e-mail values: counted, never shown
    assert columns["contact"]["sensitive"] and columns["contact"]["distinct_count"] == 100
    assert columns["contact"]["sample_values"] is None and columns["contact"]["min_value"] is None
    assert columns["kind"]["sample_values"] and not columns["kind"]["sensitive"]
    (row,) = [t for t in doc["tables"] if t["table_name"] == table]
    assert row["row_count"] == 100 and row["row_count_exact"] and row["profile_mode"] == "exact"


def test_pg_exact_profile_is_one_aggregate_statement_per_table(pg, tmp_path):
    pg.run(f'CREATE TABLE "{pg.name}".people (id int PRIMARY KEY, name text, score int, contact text, kind text)')
    fill_people(pg, f'"{pg.name}".people')
    meta = executor(source=pg.url, target=f"sqlite:///{tmp_path}/m.db", include=[f"{pg.name}.*"], mode="exact")
    ctx = context(tmp_path)
    meta.extract(ctx)
    with StatementCounter() as counter:
        metrics = meta.profile(ctx)
    meta.close()
    aggregates = [s for s in source_statements(counter) if "count(DISTINCT" in s]
    assert len(aggregates) == 1 and "TABLESAMPLE" not in aggregates[0]
    assert metrics.rows_profiled == 100
    check_exact_people(meta.store.run_document(ctx.run_id), f"{pg.name}.people")


def test_pg_estimate_reads_pg_stats_after_analyze_and_never_scans(pg, tmp_path):
    pg.run(f'CREATE TABLE "{pg.name}".big (id int, grp int, label text)',
           f"INSERT INTO \"{pg.name}\".big SELECT i, i % 50, 'l' || (i % 7) FROM generate_series(1, 20000) i")
    meta = executor(source=pg.url, target=f"sqlite:///{tmp_path}/m.db", include=[f"{pg.name}.*"])
    ctx = context(tmp_path)
    meta.extract(ctx)
    with StatementCounter() as counter:
        meta.profile(ctx)
    meta.close()
    assert not [s for s in source_statements(counter) if "count(" in s.lower()], "estimate mode scanned the table"
    assert [s for s in source_statements(counter) if s.startswith("ANALYZE")]
    assert pg.scalar(f"SELECT COUNT(*) FROM pg_stats WHERE schemaname = '{pg.name}'") == 3  # kept, not rolled back
    doc = meta.store.run_document(ctx.run_id)
    columns = {c["column_name"]: c for c in doc["columns"]}
    assert columns["grp"]["distinct_count"] == 50 and columns["grp"]["distinct_approx"] is True
    assert columns["label"]["distinct_count"] == 7
    assert {v["value"] for v in json.loads(json.dumps(columns["label"]["top_values"]))} <= {f"l{i}" for i in range(7)}
    (table,) = doc["tables"]
    assert table["row_count"] == 20000 and table["profile_mode"] == "estimate" and "pg_stats" in table["profile_note"]


def test_pg_sample_mode_uses_tablesample(pg, tmp_path):
    pg.run(f'CREATE TABLE "{pg.name}".big (id int, grp int)',
           f'INSERT INTO "{pg.name}".big SELECT i, i % 50 FROM generate_series(1, 50000) i', f'ANALYZE "{pg.name}".big')
    meta = executor(source=pg.url, target=f"sqlite:///{tmp_path}/m.db", include=[f"{pg.name}.*"], mode="sample",
                    sample_percent=20, sample_limit=1000)
    ctx = context(tmp_path)
    meta.extract(ctx)
    with StatementCounter() as counter:
        meta.profile(ctx)
    meta.close()
    assert [s for s in source_statements(counter) if "TABLESAMPLE system" in s]
    (table,) = meta.store.run_document(ctx.run_id)["tables"]
    assert table["profile_mode"] == "sample" and not table["row_count_exact"]
    assert 30000 < table["row_count"] < 70000


def test_mariadb_extract_and_exact_profile_with_mariadb_target(mariadb, tmp_path):
    mariadb.run("CREATE TABLE people (id int PRIMARY KEY, name varchar(10), score int, contact varchar(60), "
                "kind char(1))",
                "CREATE TABLE visits (id bigint PRIMARY KEY, person int, FOREIGN KEY (person) REFERENCES people(id))")
    fill_people(mariadb, "people")
    meta = executor(source=mariadb.url, target=mariadb.url, mode="exact")
    ctx = context(tmp_path)
    with StatementCounter() as counter:
        meta.extract(ctx)
    assert len(catalog_statements(counter)) <= 5
    meta.profile(ctx)
    doc = meta.store.run_document(ctx.run_id)
    meta.close()
    check_exact_people(doc, f"{mariadb.name}.people")
    person = next(c for c in doc["columns"] if c["column_name"] == "person")
    assert person["foreign_key"] == f"{mariadb.name}.people.id"
    # no schemas worth using on MariaDB: a table-name prefix in the same database
    assert mariadb.scalar("SELECT COUNT(*) FROM _executor_metadata_columns") == 7
    assert mariadb.scalar("SELECT MAX(version) FROM _executor_metadata_schema_version") == 2


def sqlite_source(tmp_path: Path) -> str:
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (id integer PRIMARY KEY, name text, score int, contact text, kind text)")
        conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)",
                         [(i, f"n{i % 4}", None if i % 5 == 0 else i * 2, f"p{i}@example.com", "x" if i % 2 else "y")
                          for i in range(1, 101)])
    return f"sqlite:///{path}"


def test_sqlite_source_exact_and_rerun_of_the_same_run_writes_nothing_twice(tmp_path):
    target = f"sqlite:///{tmp_path}/m.db"
    ctx = context(tmp_path, run_id="run-1")
    for _ in range(2):  # a retried or resumed task of the same run
        meta = executor(source=sqlite_source(tmp_path) if _ == 0 else f"sqlite:///{tmp_path}/src.db",
                        target=target, mode="exact")
        meta.extract(ctx)
        meta.profile(ctx)
        meta.close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        counts = {name: conn.execute(f"SELECT COUNT(*) FROM _executor_metadata_{name}").fetchone()[0]
                  for name in ("sources", "tables", "columns", "executor_runs")}
    assert counts == {"sources": 1, "tables": 1, "columns": 5, "executor_runs": 2}
    check_exact_people(meta.store.run_document("run-1"), "main.people")


def test_postgres_target_uses_a_schema_and_migrates_forward(pg_target, tmp_path):
    from executors.metadata.store import MetadataStore

    old = MetadataStore(pg_target.url, upto=1)  # a target written by version 1 of the schema
    assert old.version() == 1
    old.close()
    assert pg_target.scalar("SELECT to_regclass('_executor_metadata.schema_changes')") is None
    meta = executor(source=sqlite_source(tmp_path), target=pg_target.url, mode="exact")
    ctx = context(tmp_path)
    meta.extract(ctx)
    meta.profile(ctx)
    meta.close()
    assert pg_target.scalar("SELECT MAX(version) FROM _executor_metadata.schema_version") == 2
    assert pg_target.scalar("SELECT to_regclass('_executor_metadata.schema_changes')") is not None
    assert pg_target.scalar("SELECT COUNT(*) FROM _executor_metadata.columns WHERE run_id = "
                            f"'{ctx.run_id}' AND null_count IS NOT NULL") == 5


def test_check_schema_reports_added_removed_and_retyped_columns(tmp_path):
    from executors.metadata.executor import SchemaDrift

    source = sqlite_source(tmp_path)
    target = f"sqlite:///{tmp_path}/m.db"
    first = executor(source=source, target=target)
    first.extract(context(tmp_path, run_id="run-1"))
    first.close()
    with sqlite3.connect(tmp_path / "src.db") as conn:
        conn.executescript("ALTER TABLE people DROP COLUMN kind; ALTER TABLE people ADD COLUMN city text;"
                           "CREATE TABLE people2 AS SELECT * FROM people; DROP TABLE people;"
                           "CREATE TABLE people (id integer PRIMARY KEY, name text, score real, contact text, city text);")
    warn = executor(source=source, target=target, include=["main.people"])
    metrics = warn.check_schema(context(tmp_path, run_id="run-2"))
    changes = {(c["column_name"], c["change"]) for c in warn.store.run_document("run-2")["schema_changes"]}
    warn.close()
    assert changes == {("city", "added"), ("kind", "removed"), ("score", "retyped")}
    assert metrics.drift_found == 3
    again = executor(source=source, target=target, include=["main.people"], on_drift="fail")
    assert again.check_schema(context(tmp_path, run_id="run-3")).drift_found == 0  # against run-2 now
    with pytest.raises(SchemaDrift, match=r"main.people.score retyped bigint -> REAL"):
        again.check_schema(context(tmp_path, run_id="run-4"), expected={"main.people": [
            {"name": "score", "type": "bigint"}, "id", "name", "contact", "city"]})
    again.close()


def test_check_schema_against_an_expected_column_list(tmp_path):
    meta = executor(source=sqlite_source(tmp_path), target=f"sqlite:///{tmp_path}/m.db")
    metrics = meta.check_schema(context(tmp_path), expected={
        "main.people": ["id", "name", {"name": "score", "type": "bigint"}, "contact", "kind", "missing"]})
    meta.close()
    assert metrics.drift_found == 2  # missing removed, score retyped


def test_unknown_source_type_fails_validation_naming_it(cli, write_routine):
    routine = write_routine({"routine_name": "m", "executors": [{"executor": "metadata", "params": {
        "source": "snowflake://bob:hunter2@acct/db"}, "tasks": ["extract"]}]})
    proc = cli("validate", str(routine))
    assert proc.returncode == 2, proc.stderr
    assert "unknown source type 'snowflake://bob:****@acct/db'" in proc.stderr and "postgresql" in proc.stderr
    assert "hunter2" not in proc.stderr


def test_publish_without_api_url_fails_validation(cli, write_routine, tmp_path):
    routine = write_routine({"routine_name": "m", "executors": [{"executor": "metadata", "params": {
        "source": sqlite_source(tmp_path)}, "tasks": ["extract", "publish"]}]})
    proc = cli("validate", str(routine))
    assert proc.returncode == 2 and "api_url" in proc.stderr, proc.stderr


@pytest.mark.parametrize("url, expected", [
    ("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test", "cannot connect to postgresql+psycopg://postgres:****@127.0.0.1:1/test"),
    ("mysql+pymysql://root:hunter2@127.0.0.1:3306/test", "cannot connect to mysql+pymysql://root:****@127.0.0.1:3306/test"),
], ids=["unreachable", "wrong-password"])
def test_bad_database_fails_the_run_with_one_masked_line(cli, write_routine, tmp_path, url, expected):
    routine = write_routine({"routine_name": "m", "executors": [{"executor": "metadata", "params": {
        "source": url, "target": f"sqlite:///{tmp_path}/m.db"}, "tasks": ["extract"]}]})
    proc = cli("run", str(routine))
    assert proc.returncode == 1, proc.stderr
    assert expected in proc.stderr and "hunter2" not in proc.stderr + proc.stdout


def test_light_commands_do_not_import_database_libraries(write_routine, tmp_path):
    import subprocess
    import sys

    routine = write_routine({"routine_name": "p", "executors": [{"executor": "python", "params": {
        "path": str(Path(__file__))}, "tasks": []}]})
    heavy = ("sqlalchemy", "duckdb", "pyarrow", "psycopg", "pymysql")
    for argv in (["--help"], ["plugins"], ["validate", str(routine)], ["metadata", "--help"]):
        code = (f"import sys\nfrom orchestrator.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
                f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.stderr.strip().endswith("[]"), (argv, proc.stderr[-500:])
