"""The HyperLogLog distinct counts of file profiles, built by real DuckDB on deterministic data.

Tolerances come from the sketch's standard error (1.04 / sqrt(2^p)): 4 standard errors, which a
correct estimator misses about once in 15,000 data sets; the data are fixed, so a pass is stable
and a biased or broken estimator (wrong rank, wrong register, NULLs counted, raw HyperLogLog's
bias between 2.5 and 5 times the register count) fails.
"""
from __future__ import annotations

import math

import pytest

duckdb = pytest.importorskip("duckdb")

from executors.metadata import file_profile, hll  # noqa: E402

P = hll.MAX_PRECISION
REGISTERS = 1 << P


def sketch_of(con, select: str, column: str = "v", p: int = P) -> str:
    hashed = hll.duckdb_hash(column)
    sketch = hll.duckdb_sketch("h", p)
    return con.execute(f"SELECT {sketch} FROM (SELECT {hashed} AS h FROM ({select}))").fetchone()[0]


def count_of(con, select: str) -> int:
    """The estimate as a profile makes it: NULL's bit taken out when the column had NULLs."""
    nulls = con.execute(f"SELECT count(*) > count(v) FROM ({select})").fetchone()[0]
    null_hash = con.execute(hll.NULL_HASH_QUERY).fetchone()[0] if nulls else None
    return hll.distinct_count(sketch_of(con, select), P, null_hash)


@pytest.fixture(scope="module")
def con():
    connection = file_profile.connect()
    yield connection
    connection.close()


@pytest.mark.parametrize("distinct", [1, 2, 17, 100], ids=lambda n: f"{n}-values")
def test_small_cardinalities_are_counted_exactly(con, distinct):
    bits = sketch_of(con, f"SELECT i % {distinct} AS v FROM range({distinct * 7}) t(i)")
    assert hll.distinct_count(bits, P) == distinct


@pytest.mark.parametrize("distinct", [1000, 5000])
def test_few_thousand_values_within_linear_countings_error(con, distinct):
    """Far fewer values than registers: the estimate is linear counting, error sqrt(m(e^t-t-1))."""
    bits = sketch_of(con, f"SELECT i % {distinct} AS v FROM range({distinct * 3}) t(i)")
    load = distinct / REGISTERS
    tolerance = 4 * math.sqrt(REGISTERS * (math.exp(load) - load - 1))
    assert abs(hll.distinct_count(bits, P) - distinct) <= tolerance


@pytest.mark.parametrize("distinct", [20_000, 150_000, 250_000, 1_500_000],
                         ids=["linear", "transition-2.3m", "transition-3.8m", "hll-23m"])
def test_large_cardinalities_within_four_standard_errors(con, distinct):
    # every value three times, as text: duplicates must not count, text must hash like numbers do
    select = f"SELECT 'v' || (i % {distinct}) AS v FROM range({distinct * 3}) t(i)"
    estimate = hll.distinct_count(sketch_of(con, select), P)
    assert abs(estimate - distinct) <= 4 * hll.standard_error(P) * distinct


def test_nulls_are_not_values(con):
    assert count_of(con, "SELECT NULL::INT AS v FROM range(100)") == 0
    assert count_of(con, "SELECT NULL::VARCHAR AS v FROM range(100)") == 0
    half = "SELECT CASE WHEN i % 2 = 0 THEN NULL ELSE i END AS v FROM range(200) t(i)"
    assert count_of(con, half) == 100
    null_hash = con.execute(hll.NULL_HASH_QUERY).fetchone()[0]
    typed = con.execute("SELECT hash(NULL::DATE), hash(NULL::VARCHAR)").fetchone()
    assert typed == (null_hash, null_hash)


def test_sql_registers_match_the_definition(con):
    """Register = top p bits of DuckDB's hash; value = trailing zeros of the low 31 bits + 1."""
    hashes = [h for (h,) in con.execute("SELECT hash(i) FROM range(5000) t(i)").fetchall()]
    registers = [0] * REGISTERS
    for h in hashes:
        low = (h & ((1 << hll.RANK_BITS) - 1)) | (1 << hll.RANK_BITS)
        rank = (low & -low).bit_length()
        registers[h >> (64 - P)] = max(registers[h >> (64 - P)], rank)
    expected = [registers.count(k) for k in range(hll.SLOTS + 1)]
    bits = sketch_of(con, "SELECT i AS v FROM range(5000) t(i)")
    assert hll.register_histogram(bits, P) == expected


def test_estimator_on_known_histograms():
    assert hll.estimate([REGISTERS] + [0] * hll.SLOTS) == 0
    one = hll.estimate([REGISTERS - 1, 1] + [0] * (hll.SLOTS - 1))
    assert one == pytest.approx(1, rel=1e-3)
    assert hll.estimate([0] * hll.SLOTS + [REGISTERS]) == float("inf")  # saturated, not a crash


def test_precision_keeps_wide_tables_within_the_bit_budget():
    assert hll.precision(10) == 16 and hll.precision(16) == 16
    assert hll.precision(17) == 15 and hll.precision(10_000) == hll.MIN_PRECISION
    for columns in (1, 33, 100, 1000):
        assert columns * (1 << hll.precision(columns)) * hll.SLOTS <= hll.BIT_BUDGET


def test_a_profile_states_its_error_and_meets_it(con, tmp_path):
    path = tmp_path / "data.csv"
    con.execute(f"COPY (SELECT i AS id, i % 3000 AS k, md5((i % 400000)::VARCHAR) AS s "
                f"FROM range(800000) t(i)) TO '{path}' (HEADER)")
    relation = f"read_csv('{path}')"
    columns = file_profile.describe(con, relation)
    profile = file_profile.profile_relation(con, "data.csv", relation, columns, False, 0, 0, set())
    assert "2^16 registers" in profile.note and "0.41%" in profile.note
    for name, exact in (("id", 800_000), ("k", 3000), ("s", 400_000)):
        column = profile.columns[name]
        assert column.distinct_approx
        assert abs(column.distinct_count - exact) <= 4 * hll.standard_error(P) * exact, name


def test_frequent_values_are_skipped_for_columns_unique_in_the_head(con, tmp_path):
    """approx_top_k is the scan's costliest aggregate; nearly unique columns don't get it."""
    path = tmp_path / "head.csv"
    con.execute(f"COPY (SELECT i AS id, i % 15000 AS cycle, i // 5000 AS sorted, i % 7 AS few "
                f"FROM range(30000) t(i)) TO '{path}' (HEADER)")
    relation = f"read_csv('{path}')"
    columns = file_profile.describe(con, relation)
    assert file_profile.unique_in_head(con, relation, columns) == {"id", "cycle"}
    profile = file_profile.profile_relation(con, "head.csv", relation, columns, False, 3, 0, set())
    assert profile.columns["id"].top_values is None and profile.columns["cycle"].top_values is None
    assert {v["value"] for v in profile.columns["few"].top_values} <= set(range(7))
    assert profile.columns["sorted"].top_values
