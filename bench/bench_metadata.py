"""The metadata executor against the issue's anchors, side by side in one run.

    python bench/bench_metadata.py [--pg-rows 1000000] [--tables 500] [--csv-mb 256] [--repeat 3]
                                   [--only pg|estimate|pg-hll|catalog|files] [--keep-table]

1. PostgreSQL profile of one table (rows x 10 columns): the hand-written all-aggregates statement
   through psql, against ``orchestrate metadata --mode exact`` and the default ``estimate`` mode;
   whole-process medians, CPU seconds and the client's peak RSS; the estimate step alone (catalog
   + pg_stats, in process, start-up excluded), ANALYZE's own time, and the estimates' distinct
   error against exact counts.
2. Schema extraction of N tables (columns, primary and foreign keys): SQLAlchemy's inspector table
   by table against our set-based catalog queries, in process; statements counted; tables never
   analyzed and then analyzed (sizes come from different places, see sql_catalog.py).
3. A CSV (10 mixed columns) and the same data as Parquet: DuckDB ``SUMMARIZE`` against
   ``orchestrate metadata FILE`` (approximate distinct counts), time, CPU, peak RSS and the
   distinct counts' error per column against exact ones (DuckDB's approx_count_distinct beside).
4. (``--only pg-hll``) the files' HyperLogLog built by PostgreSQL in one statement, to compare
   with the exact statement of 1.
Needs the local PostgreSQL (trust auth, database ``test``); creates and drops schema ``bench_meta``
and, unless --keep-table, ``bench_meta_big`` (the big table, reused when it has the asked rows).
CPU seconds (user + system, all threads) are the fairer comparison on a loaded machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "bench_meta"
BIG_SCHEMA = "bench_meta_big"
COLUMNS = ["id", "a_int", "b_int", "c_float", "d_float", "e_text", "f_text", "g_date", "h_bool", "i_num"]


LAST_OUTPUT: list[str] = [""]  # stdout of the last measured child (a file: no pipe to fill)


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak RSS MiB) of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{cmd[:4]} failed: {err.read()[-800:]}")
        out.seek(0)
        LAST_OUTPUT[0] = out.read()
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def median_of(cmd: list[str], repeat: int,
              env: dict[str, str] | None = None) -> tuple[float, float, float]:
    runs = [run_measured(cmd, env) for _ in range(repeat)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
            max(r[2] for r in runs))


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})


def make_pg_table(rows: int) -> None:
    """The big table in BIG_SCHEMA, made by generate_series in the server (no rows sent)."""
    found = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc",
                            f"SELECT count(*) FROM {BIG_SCHEMA}.big"],
                           capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip() == str(rows):
        print(f"(reusing {BIG_SCHEMA}.big)")
        return
    psql(f"DROP SCHEMA IF EXISTS {BIG_SCHEMA} CASCADE; CREATE SCHEMA {BIG_SCHEMA};"
         f"CREATE TABLE {BIG_SCHEMA}.big AS SELECT i AS id, (random()*1000)::int AS a_int,"
         f" (random()*1e6)::int AS b_int, random() AS c_float,"
         f" CASE WHEN i % 10 = 0 THEN NULL ELSE random()*100 END AS d_float, 'k' || (i % 5000) AS e_text,"
         f" md5(i::text) AS f_text, date '2020-01-01' + (i % 1500) AS g_date, i % 3 = 0 AS h_bool,"
         f" (i % 997)::numeric(10,2) AS i_num FROM generate_series(1, {rows}) i;")


def hand_written(exact_distinct: bool = True) -> str:
    parts = ["count(*)"]
    for c in COLUMNS:
        parts.append(f"count({c})")
        if exact_distinct:
            parts.append(f"count(DISTINCT {c})")
        if c != "h_bool":
            parts += [f"min({c})", f"max({c})"]
        if c in ("id", "a_int", "b_int", "c_float", "d_float", "i_num"):
            parts.append(f"avg({c})")
    return f"SELECT {', '.join(parts)} FROM {BIG_SCHEMA}.big"


def bench_pg(rows: int, repeat: int, home: str) -> None:
    print(f"\n## PostgreSQL: one table, {rows:,} rows x 10 columns (the issue's anchor is 10 M rows)")
    make_pg_table(rows)
    env = {**os.environ, "ORCHESTRATOR_HOME": home}
    target = f"sqlite:///{home}/bench.db"
    ours = [sys.executable, "-m", "orchestrator.cli", "metadata", PG,
            "--include", f"{BIG_SCHEMA}.*", "--target", target, "--json"]
    psql_cmd = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c"]
    rows_out = [
        ("psql: hand-written statement, exact distinct", median_of(psql_cmd + [hand_written()], repeat)),
        ("psql: hand-written statement, no distinct", median_of(psql_cmd + [hand_written(False)], repeat)),
        ("orchestrate metadata --mode exact", median_of(ours + ["--mode", "exact"], repeat, env)),
    ]
    exact = distinct_counts(LAST_OUTPUT[0])
    rows_out.append(("orchestrate metadata --mode sample (10 % TABLESAMPLE)",
                     median_of(ours + ["--mode", "sample"], repeat, env)))
    psql(f"ANALYZE {BIG_SCHEMA}.big")
    rows_out.append(("orchestrate metadata (estimate: pg_stats)", median_of(ours, repeat, env)))
    estimated = distinct_counts(LAST_OUTPUT[0])
    for label, (seconds, cpu, rss) in rows_out:
        print(f"{label:<55} {seconds:7.2f} s  CPU {cpu:6.2f} s  peak RSS {rss:6.0f} MiB")
    report_errors("estimate mode (pg_stats n_distinct)", estimated, exact)
    bench_estimate_step(repeat)


def distinct_counts(output: str) -> dict[str, int]:
    import json

    return {c["column_name"]: c["distinct_count"] for c in json.loads(output)["columns"]}


def report_errors(label: str, found: dict[str, int], exact: dict[str, int]) -> None:
    errors = {c: abs(found[c] - exact[c]) / exact[c] for c in COLUMNS}
    worst = max(errors, key=errors.get)
    print(f"  distinct counts, {label}: mean error {statistics.mean(errors.values()) * 100:.2f} %, "
          f"worst {errors[worst] * 100:.2f} % ({worst})")
    print("    " + ", ".join(f"{c} {errors[c] * 100:.2f} %" for c in COLUMNS))


def bench_estimate_step(repeat: int) -> None:
    """The estimate mode's own work, in process: catalog + pg_stats + samples, start-up excluded."""
    import sqlalchemy as sa

    from executors.metadata.executor import ProfileSettings
    from executors.metadata.sql_source import SqlSource

    options = ProfileSettings("estimate", 10.0, 5, 100_000, 5, "approx")
    times, analyze_times = [], []
    for _ in range(repeat):
        source = SqlSource(PG, include=[f"{BIG_SCHEMA}.*"])
        source.connection  # connected, dialect initialised: outside the measurement
        start = time.perf_counter()
        catalog = source.extract()
        source.set_tables(catalog.tables)
        for table in catalog.tables:
            source.profile(table, options, lambda: None)
        times.append(time.perf_counter() - start)
        source.close()
    engine = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for _ in range(repeat):
            start = time.perf_counter()
            conn.exec_driver_sql(f"ANALYZE {BIG_SCHEMA}.big")
            analyze_times.append(time.perf_counter() - start)
    engine.dispose()
    print(f"{'estimate step in process (catalog + pg_stats + samples)':<55} "
          f"{statistics.median(times):7.3f} s  (min {min(times):.3f} s)")
    print(f"{'  + ANALYZE, run only for a table without statistics':<55} "
          f"{statistics.median(analyze_times):7.3f} s  (min {min(analyze_times):.3f} s)")


def bench_pg_hll(rows: int) -> None:
    """The files' HyperLogLog built in PostgreSQL: one GROUP BY (column, register) statement."""
    from executors.metadata import hll

    print(f"\n## PostgreSQL: a HyperLogLog of the 10 columns in one statement, {rows:,} rows")
    make_pg_table(rows)
    values = ", ".join(f"({i}, hashtextextended({c}::text, 0) | 2147483648)"
                       for i, c in enumerate(COLUMNS))
    sql = (f"SELECT c, r, count(*) FROM (SELECT c, (h >> 48) & 65535 AS reg, "
           f"max(round(ln((h & -h)::float8) / ln(2))::int + 1) AS r FROM {BIG_SCHEMA}.big "
           f"CROSS JOIN LATERAL (VALUES {values}) v(c, h) WHERE h IS NOT NULL GROUP BY 1, 2) g "
           f"GROUP BY 1, 2")
    start = time.perf_counter()
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-Atc", sql],
                         check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - start
    histograms = [[0] * (hll.SLOTS + 1) for _ in COLUMNS]
    for line in out.split():
        column, rank, registers = map(int, line.split("|"))
        histograms[column][rank] += registers
    for histogram in histograms:
        histogram[0] = (1 << 16) - sum(histogram)
    estimates = ", ".join(f"{c} {hll.estimate(h):,.0f}" for c, h in zip(COLUMNS, histograms))
    print(f"{'psql: HyperLogLog statement':<55} {elapsed:7.2f} s\n  estimates: {estimates}")


def bench_catalog(tables: int, repeat: int) -> None:
    import sqlalchemy as sa

    from executors.metadata.sql_catalog import read_catalog

    print(f"\n## Schema extraction: {tables} tables with primary and foreign keys (in process)")
    statements = [f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};",
                  f"CREATE TABLE {SCHEMA}.parent (id int PRIMARY KEY, name text);"]
    statements += [f"CREATE TABLE {SCHEMA}.t{i} (id bigint PRIMARY KEY, parent_id int REFERENCES {SCHEMA}.parent(id),"
                   f" a text, b numeric(10,2), c timestamptz);" for i in range(tables - 1)]
    psql("".join(statements))
    engine = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    counted: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: counted.append(a[2]))

    def inspector() -> int:
        inspect = sa.inspect(engine)
        names = inspect.get_table_names(schema=SCHEMA)
        for name in names:
            inspect.get_columns(name, schema=SCHEMA)
            inspect.get_pk_constraint(name, schema=SCHEMA)
            inspect.get_foreign_keys(name, schema=SCHEMA)
        return len(names)

    def ours() -> int:
        with engine.connect() as conn:
            return len([t for t in read_catalog(conn, "postgresql").tables if t.name.startswith(SCHEMA + ".")])

    with engine.connect():
        pass  # dialect initialisation outside the measurement
    runs = (("SQLAlchemy inspector, table by table", inspector, 1),
            ("set-based pg_catalog queries, never analyzed", ours, 1),
            ("set-based pg_catalog queries, analyzed", ours, 0))
    for label, fn, fresh in runs:
        if not fresh:
            psql(f"ANALYZE {SCHEMA}.parent;"
                 + "".join(f"ANALYZE {SCHEMA}.t{i};" for i in range(tables - 1)))
        times, found = [], 0
        for _ in range(max(repeat, 5) if fn is ours else repeat):
            counted.clear()
            start = time.perf_counter()
            found = fn()
            times.append(time.perf_counter() - start)
        median, best = statistics.median(times) * 1000, min(times) * 1000
        print(f"{label:<55} {median:8.1f} ms (min {best:6.1f})  "
              f"{len(counted):5d} statements  {found} tables")
    engine.dispose()


def make_files(folder: Path, megabytes: int) -> tuple[Path, Path]:
    import duckdb

    rows = int(megabytes * 1024 * 1024 / 105)  # about 105 bytes a row
    csv, parquet = folder / "mixed.csv", folder / "mixed.parquet"
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE m AS SELECT i AS id, (random()*1000)::INT AS a_int, (random()*1e6)::INT AS b_int,
        random() AS c_float, CASE WHEN i % 10 = 0 THEN NULL ELSE random()*100 END AS d_float,
        'k' || (i % 5000) AS e_text, md5(i::VARCHAR) AS f_text, DATE '2020-01-01' + (i % 1500)::INT AS g_date,
        i % 3 = 0 AS h_bool, (i % 997)::DECIMAL(10,2) AS i_num FROM range({rows}) t(i)""")
    con.execute(f"COPY m TO '{csv}' (HEADER, DELIMITER ',')")
    con.execute(f"COPY m TO '{parquet}' (FORMAT parquet)")
    exact = dict(zip(COLUMNS, con.execute("SELECT " + ", ".join(f"count(DISTINCT {c})" for c in COLUMNS)
                                          + " FROM m").fetchone()))
    duckdb_approx = dict(zip(COLUMNS, con.execute(
        "SELECT " + ", ".join(f"approx_count_distinct({c})" for c in COLUMNS) + " FROM m"
    ).fetchone()))
    con.close()
    (folder / "exact.txt").write_text(repr(exact))
    (folder / "duckdb_approx.txt").write_text(repr(duckdb_approx))
    return csv, parquet


def bench_files(megabytes: int, repeat: int, home: str) -> None:
    import json

    print(f"\n## Files: a {megabytes} MiB CSV of 10 mixed columns, and the same data as Parquet")
    folder = Path(home) / "files"
    folder.mkdir(parents=True, exist_ok=True)
    # in a child process: a forked child's peak RSS counts the parent's memory, so the parent
    # must not hold DuckDB's buffers while the others are measured
    subprocess.run([sys.executable, __file__, "--make-files", str(folder), str(megabytes)], check=True)
    csv, parquet = folder / "mixed.csv", folder / "mixed.parquet"
    exact = eval((folder / "exact.txt").read_text())  # noqa: S307 - our own repr of a dict of ints
    report_errors("DuckDB approx_count_distinct, for comparison",
                  eval((folder / "duckdb_approx.txt").read_text()), exact)  # noqa: S307
    env = {**os.environ, "ORCHESTRATOR_HOME": home}
    for path, reader in ((csv, "read_csv"), (parquet, "read_parquet")):
        summarize = [sys.executable, "-c", f"import duckdb; duckdb.sql(\"SUMMARIZE SELECT * FROM {reader}('{path}')\")"
                     ".fetchall()"]
        seconds, cpu, rss = median_of(summarize, repeat)
        size = path.stat().st_size / 2**20
        print(f"DuckDB SUMMARIZE {path.name:<14} {seconds:7.2f} s  {size / seconds:5.0f} MiB/s  "
              f"CPU {cpu:6.2f} s  peak RSS {rss:5.0f} MiB")
        ours = [sys.executable, "-m", "orchestrator.cli", "metadata", str(path), "--target",
                f"sqlite:///{home}/files.db", "--json"]
        seconds, cpu, rss = median_of(ours, repeat, env)
        print(f"orchestrate metadata {path.name:<10} {seconds:7.2f} s  "
              f"{size / seconds:5.0f} MiB/s  "
              f"CPU {cpu:6.2f} s  peak RSS {rss:5.0f} MiB")
        columns = {c["column_name"]: c for c in json.loads(LAST_OUTPUT[0])["columns"]}
        report_errors(f"ours (approximate: {columns['id']['distinct_approx']})",
                      {c: columns[c]["distinct_count"] for c in COLUMNS}, exact)


def main() -> None:
    if sys.argv[1:2] == ["--make-files"]:
        make_files(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-rows", type=int, default=1_000_000)
    parser.add_argument("--tables", type=int, default=500)
    parser.add_argument("--csv-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("pg", "estimate", "pg-hll", "catalog", "files"))
    parser.add_argument("--keep-table", action="store_true",
                        help=f"keep {BIG_SCHEMA}.big for the next run (10 M rows take a while)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        try:
            if args.only in (None, "pg"):
                bench_pg(args.pg_rows, args.repeat, home)
            if args.only == "estimate":
                make_pg_table(args.pg_rows)
                bench_estimate_step(args.repeat)
            if args.only == "pg-hll":
                bench_pg_hll(args.pg_rows)
            if args.only in (None, "catalog"):
                bench_catalog(args.tables, args.repeat)
        finally:
            psql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            if not args.keep_table:
                psql(f"DROP SCHEMA IF EXISTS {BIG_SCHEMA} CASCADE")
        if args.only in (None, "files"):
            bench_files(args.csv_mb, args.repeat, home)


if __name__ == "__main__":
    main()
