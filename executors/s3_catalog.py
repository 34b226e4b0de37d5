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
        # "" or "a/b/": keys are joined to it by plain concatenation.
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is not None:
            # Assigning the attribute pre-empts the cached_property below (tests pass a client bound
            # to moto).
            self.client = client

    @cached_property
    def client(self) -> Any:
        import boto3

        # A plain client: the catalog is used outside any executor, so there is no session to share.
        return boto3.client("s3")

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            # A missing key is an answer (nothing published there), not an error.
            return None

    def write_new(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                IfNoneMatch="*",
                # S3 checks the SHA-256 botocore computes and refuses a body damaged on the way
                # (moto accepts any checksum, so tests cannot show this).
                ChecksumAlgorithm="SHA256",
            )
            return True
        except ClientError as exc:
            # 412: the key exists. 409 ConditionalRequestConflict: another conditional write to it
            # is in flight. Either way it is someone else's now. A botocore retry after a lost
            # reply also ends here, with our own bytes already stored: harmless for a
            # content-addressed artifact; a manifest's publisher then takes the next version.
            if exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise

    def children(self, prefix: str) -> list[str]:
        names: set[str] = set()
        pages = self.client.get_paginator("list_objects_v2").paginate(
            # One level only: sub-folders come back as CommonPrefixes, objects as Contents.
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
