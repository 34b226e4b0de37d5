"""The metadata executor on files: local CSV (sniffed), JSON lines, Parquet, Hive folders, and
the same on S3 (the moto server)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from metadata_fixtures import context, executor


def write_landing(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    lines = ["id;name;email;score"] + [f"{i};n{i % 9};u{i}@x.com;{'' if i % 10 == 0 else i / 2}"
                                       for i in range(1, 1001)]
    (root / "people.csv").write_text("\n".join(lines) + "\n")
    (root / "events.jsonl").write_text("".join(json.dumps({"id": i, "kind": "ab"[i % 2], "token": f"t{i}"}) + "\n"
                                               for i in range(500)))
    for month in ("01", "02"):
        folder = root / "orders" / "year=2024" / f"month={month}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"id": list(range(100)), "amount": [i * 1.5 for i in range(100)]}),
                       folder / "part-0.parquet")
    return root


def columns_of(doc: dict, table: str) -> dict[str, dict]:
    return {c["column_name"]: c for c in doc["columns"] if c["table_name"] == table}


def check_landing(doc: dict) -> None:
    tables = {t["table_name"]: t for t in doc["tables"]}
    assert set(tables) == {"people.csv", "events.jsonl", "orders"}
    assert tables["orders"]["row_count"] == 200 and json.loads(tables["orders"]["partition_keys"]) == ["year", "month"]
    assert tables["people.csv"]["row_count"] == 1000 and tables["people.csv"]["file_type"] == "csv"
    people = columns_of(doc, "people.csv")
    assert list(people) == ["id", "name", "email", "score"]  # ';' and the header were sniffed
    assert people["score"]["null_count"] == 100 and people["score"]["mean"] == pytest.approx(250.0)
    assert people["name"]["distinct_count"] == 9 and people["id"]["distinct_count"] == 1000
    assert people["email"]["sensitive"] and people["email"]["sample_values"] is None
    assert people["email"]["distinct_count"] == 1000
    assert {v["value"] for v in people["name"]["top_values"]} <= {f"n{i}" for i in range(9)}
    orders = columns_of(doc, "orders")
    assert set(orders) == {"id", "amount", "year", "month"} and orders["month"]["distinct_count"] == 2
    events = columns_of(doc, "events.jsonl")
    assert events["token"]["sensitive"] and events["token"]["sample_values"] is None
    assert events["kind"]["sample_values"][:2] == ["a", "b"]


def test_local_folder_of_csv_jsonl_and_hive_parquet(tmp_path):
    land = write_landing(tmp_path / "land")
    meta = executor(source=str(land), target=f"sqlite:///{tmp_path}/m.db")
    ctx = context(tmp_path)
    assert meta.extract(ctx).tables_seen == 3
    metrics = meta.profile(ctx)
    doc = meta.store.run_document(ctx.run_id)
    meta.close()
    assert metrics.rows_profiled == 1700 and metrics.bytes_scanned > 0
    check_landing(doc)


def test_large_files_get_approximate_distinct_counts_and_say_so(tmp_path, monkeypatch):
    from executors.metadata import file_source

    monkeypatch.setattr(file_source, "EXACT_DISTINCT_BELOW", 0)
    land = write_landing(tmp_path / "land")
    meta = executor(source=str(land / "people.csv"), target=f"sqlite:///{tmp_path}/m.db")
    ctx = context(tmp_path)
    meta.profile(ctx)
    doc = meta.store.run_document(ctx.run_id)
    meta.close()
    people = columns_of(doc, "people.csv")
    assert people["id"]["distinct_approx"] is True
    assert abs(people["id"]["distinct_count"] - 1000) <= 40
    assert "HyperLogLog" in doc["tables"][0]["profile_note"]


def test_a_file_that_is_not_what_its_extension_says(cli, write_routine, tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_text("id,name\n1,a\n")
    routine = write_routine({"routine_name": "m", "executors": [{"executor": "metadata", "params": {
        "source": str(fake)}, "tasks": ["extract"]}]})
    proc = cli("validate", str(routine))
    assert proc.returncode == 2 and "fake.parquet: not a Parquet file" in proc.stderr, proc.stderr
    # in a folder the file is only found at run time: the run fails, naming the file
    folder = tmp_path / "land"
    folder.mkdir()
    fake.rename(folder / "fake.parquet")
    routine = write_routine({"routine_name": "m", "executors": [{"executor": "metadata", "params": {
        "source": str(folder), "target": f"sqlite:///{tmp_path}/m.db"}, "tasks": ["extract"]}]})
    proc = cli("run", str(routine))
    assert proc.returncode == 1, proc.stderr
    assert f"{folder}/fake.parquet: cannot read as parquet" in proc.stderr


def test_missing_local_source_is_a_validation_error(cli, write_routine, tmp_path):
    routine = write_routine({"routine_name": "m", "executors": [{"executor": "metadata", "params": {
        "source": "nowhere/landing"}, "tasks": ["extract"]}]})
    proc = cli("validate", str(routine))
    assert proc.returncode == 2 and "nowhere/landing: no such file or folder" in proc.stderr, proc.stderr


def upload(s3, bucket: str, root: Path, prefix: str) -> None:
    s3.create_bucket(Bucket=bucket)
    for path in root.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}{path.relative_to(root).as_posix()}")


def test_s3_prefix_on_moto(aws, cli, write_routine, tmp_path):
    """Through the CLI in its own process: pyarrow's S3 reads, called from DuckDB's scan, need the
    GIL free for the in-process moto server to answer."""
    import sqlalchemy as sa

    from executors.metadata.store import MetadataStore

    land = write_landing(tmp_path / "land")
    upload(aws.client("s3"), "landing", land, "daily/")
    routine = write_routine({"routine_name": "m", "executors": [{"name": "meta", "executor": "metadata", "params": {
        "source": "s3://landing/daily/", "target": f"sqlite:///{tmp_path}/m.db"}, "tasks": ["extract", "profile"]}]})
    proc = cli("run", str(routine), env=aws.env())
    assert proc.returncode == 0, proc.stderr
    store = MetadataStore(f"sqlite:///{tmp_path}/m.db")
    with store.engine.connect() as conn:
        run_id = conn.execute(sa.select(store.t["sources"].c.run_id)).scalar()
    doc = store.run_document(run_id)
    store.close()
    check_landing(doc)
    assert {t["file_path"] for t in doc["tables"]} >= {"s3://landing/daily/orders"}


def test_s3_missing_bucket_fails_with_the_location(aws, tmp_path):
    from executors.metadata.source import SourceError

    meta = executor(source="s3://no-such-bucket/x/", target=f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(SourceError, match=r"s3://no-such-bucket/x/: cannot list: .*NoSuchBucket"):
        meta.extract(context(tmp_path))
    meta.close()


def test_glue_database_on_moto_catalogued_then_profiled_at_its_locations(aws, cli, write_routine, tmp_path):
    import sqlalchemy as sa

    from executors.metadata.store import MetadataStore

    land = write_landing(tmp_path / "land")
    upload(aws.client("s3"), "lake", land / "orders", "orders/")
    glue = aws.client("glue")
    glue.create_database(DatabaseInput={"Name": "sales"})
    glue.create_table(DatabaseName="sales", TableInput={
        "Name": "orders", "Parameters": {"classification": "parquet"},
        "PartitionKeys": [{"Name": "year", "Type": "int"}, {"Name": "month", "Type": "string"}],
        "StorageDescriptor": {"Location": "s3://lake/orders/", "Columns": [
            {"Name": "id", "Type": "bigint"}, {"Name": "amount", "Type": "double"}]}})
    routine = write_routine({"routine_name": "g", "executors": [{"name": "meta", "executor": "metadata", "params": {
        "source": "glue://sales", "target": f"sqlite:///{tmp_path}/m.db"}, "tasks": ["extract", "profile"]}]})
    proc = cli("run", str(routine), env=aws.env())
    assert proc.returncode == 0, proc.stderr
    store = MetadataStore(f"sqlite:///{tmp_path}/m.db")
    with store.engine.connect() as conn:
        run_id = conn.execute(sa.select(store.t["sources"].c.run_id)).scalar()
    doc = store.run_document(run_id)
    store.close()
    (table,) = doc["tables"]
    assert table["table_name"] == "sales.orders" and table["file_path"] == "s3://lake/orders/"
    assert json.loads(table["partition_keys"]) == ["year", "month"] and table["row_count"] == 200
    columns = columns_of(doc, "sales.orders")
    assert [columns[c]["data_type"] for c in ("id", "amount", "year", "month")] == ["bigint", "double", "int", "string"]
    assert columns["amount"]["mean"] == pytest.approx(74.25) and columns["month"]["distinct_count"] == 2


def test_a_partitioned_folder_given_as_the_source_is_one_table(tmp_path):
    land = write_landing(tmp_path / "land")
    meta = executor(source=str(land / "orders"), target=f"sqlite:///{tmp_path}/m.db")
    ctx = context(tmp_path)
    meta.profile(ctx)
    doc = meta.store.run_document(ctx.run_id)
    meta.close()
    (table,) = doc["tables"]
    assert table["table_name"] == "orders" and table["row_count"] == 200
    assert json.loads(table["partition_keys"]) == ["year", "month"] and table["file_path"] == str(land / "orders")
