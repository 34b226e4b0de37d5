"""The routine catalog on S3 (``catalog: s3://bucket/prefix/``), registered through the
``catalog_store`` hook so the core never imports boto3; boto3 loads when the store is first used.

New keys are written with ``If-None-Match: *`` (S3 conditional writes), so a published version or
an artifact is never replaced, even by two publishers racing.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from orchestrator.hookspecs import hookimpl

SCHEME = "s3://"


class S3CatalogStore:
    def __init__(self, url: str, client: Any = None) -> None:
        self.url = url
        self.bucket, _, prefix = url[len(SCHEME) :].partition("/")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is not None:
            self.client = client

    @cached_property
    def client(self) -> Any:
        import boto3

        return boto3.client("s3")

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write_new(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise

    def children(self, prefix: str) -> list[str]:
        names: set[str] = set()
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"
        )
        start = len(self.prefix + prefix)
        for page in pages:
            names.update(p["Prefix"][start:] for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][start:] for o in page.get("Contents", []))
        return sorted(n for n in names if n)


@hookimpl
def catalog_store(url: str) -> Any:
    """``s3://bucket/prefix/`` → a catalog store there (usual AWS settings)."""
    if not url.startswith(SCHEME) or not url[len(SCHEME) :].split("/")[0]:
        return None
    return S3CatalogStore(url)
