"""``s3://`` sources: listing with boto3, reading with pyarrow's S3 filesystem, scanned by DuckDB.

DuckDB reads S3 through its httpfs extension, which it downloads at run time; pyarrow's S3
support ships in its wheel. A pyarrow dataset registered in DuckDB is streamed batch by batch
with projection pushdown, so memory stays bounded as for local files.
"""
from __future__ import annotations

import csv
import functools
from typing import Any

from .file_layout import FileEntry, FileTable

# Enough lines for csv.Sniffer to tell the delimiter and the header, read with one ranged GET.
SNIFF_BYTES = 65536


def split(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def s3_problems(location: str) -> list[str]:
    bucket, _ = split(location)
    return [] if bucket else [f"{location!r} names no bucket: use s3://bucket/prefix"]


# One client per region for the process: making one costs tens of milliseconds (and a credential
# lookup), and listing, sniffing and reading all need it.
@functools.lru_cache(maxsize=8)
def _client(region: str | None) -> Any:
    import boto3

    return boto3.client("s3", region_name=region)


def list_s3(location: str, region: str | None) -> tuple[str, list[FileEntry]]:
    """(the folder the entries are relative to, every object under the prefix); a location that
    names one object lists that object."""
    bucket, prefix = split(location)
    client = _client(region)
    entries = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):]
            # A key ending in "/" is a folder placeholder (the console's "create folder").
            if relative and not relative.endswith("/"):
                entries.append(FileEntry(relative, item["Size"], item["LastModified"].timestamp()))
    if entries or not prefix:
        return f"{bucket}/{prefix}", entries
    key = prefix.rstrip("/")
    head = client.head_object(Bucket=bucket, Key=key)
    folder, _, name = key.rpartition("/")
    root = f"{bucket}/{folder}/" if folder else f"{bucket}/"
    return root, [FileEntry(name, head["ContentLength"], head["LastModified"].timestamp())]


def _filesystem(region: str | None) -> Any:
    from urllib.parse import urlsplit

    from pyarrow import fs

    client = _client(region)
    # The boto3 chain's credentials handed to pyarrow, so both read as one identity; frozen: key,
    # secret and token of one moment, not torn by a refresh in between.
    credentials = client._request_signer._credentials.get_frozen_credentials()  # the boto3 chain's
    endpoint = urlsplit(client.meta.endpoint_url)
    # An endpoint that is not AWS's (a moto server in tests, MinIO) is handed to pyarrow with its
    # scheme (plain http for a local server), as boto3 resolved it.
    custom = not endpoint.netloc.endswith("amazonaws.com")
    return fs.S3FileSystem(access_key=credentials.access_key, secret_key=credentials.secret_key,
                           session_token=credentials.token, region=client.meta.region_name,
                           endpoint_override=endpoint.netloc if custom else None,
                           scheme=endpoint.scheme if custom else "https")


def _csv_format(root: str, table: FileTable, region: str | None) -> Any:
    """Delimiter and header sniffed from the first bytes of the first file."""
    import pyarrow.csv as pcsv
    import pyarrow.dataset as ds

    bucket, _, key = f"{root}{table.files[0].path}".partition("/")
    head = (
        _client(region)
        .get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SNIFF_BYTES - 1}")["Body"]
        .read()
    )
    text = head.decode("utf-8", errors="replace")
    # Cut at the last full line: the range ends mid-row, and a half row misleads the sniffer.
    sample = text[: text.rfind("\n")] if "\n" in text else text
    try:
        # Only the usual delimiters: left free, the sniffer may pick a letter.
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        delimiter = dialect.delimiter
        header = csv.Sniffer().has_header(sample)
    except csv.Error:
        delimiter, header = ",", True
    read = pcsv.ReadOptions(autogenerate_column_names=not header, block_size=1 << 20)
    return ds.CsvFileFormat(parse_options=pcsv.ParseOptions(delimiter=delimiter), read_options=read)


def register_dataset(con: Any, root: str, table: FileTable, region: str | None) -> str:
    """Register the table's objects as a pyarrow dataset view in DuckDB; return its quoted name."""
    import pyarrow.dataset as ds

    name = "s3_" + "".join(c if c.isalnum() else "_" for c in table.name)
    # Registered once per connection: extract describes the table and profile scans it, both
    # through this view.
    if name in {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}:
        return f'"{name}"'
    fmt: Any = {"parquet": "parquet", "json": ds.JsonFileFormat()}.get(table.file_type)
    if table.file_type == "csv":
        fmt = _csv_format(root, table, region)
    partitioning = ds.partitioning(flavor="hive") if table.partition_keys else None
    nested = "=" not in table.files[0].path.split("/", 1)[0]
    base = f"{root}{table.name}" if table.folder and nested else root.rstrip("/")
    dataset = ds.dataset(
        [f"{root}{f.path}" for f in table.files],
        filesystem=_filesystem(region),
        format=fmt,
        partitioning=partitioning,
        # The folder the key=value parts are read from, so partition columns get their keys' names.
        partition_base_dir=base,
    )
    con.register(name, dataset)
    return f'"{name}"'
