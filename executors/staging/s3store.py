"""An S3 prefix as a store. Imported only when a location is ``s3://``: boto3 loads here (and
smart-open, when a transformation streams through S3).

Requests are counted against the server: one LIST per 1,000 objects, a server-side copy per file
(no GET), one HEAD per upload, one DeleteObjects per 1,000 keys. Every delete is conditional on the
ETag that was copied (``If-Match`` on DeleteObject, ``ETag`` per key in DeleteObjects), so an
object replaced since is never deleted. Multipart uploads in flight are journaled with their
upload ids (``uploads``), so recovery aborts exactly the uploads of a dead run.
"""
from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import posixpath
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .journal import Journal
from .locations import is_private, split_s3
from .storage import CHANGED, CountingWriter, Entry, Fill, SourceChanged, VerifyError
from .uploads import error_code, in_flight

# CopyObject copies at most 5 GiB in one request; bigger objects go through a multipart copy.
COPY_OBJECT_LIMIT = 5 * 1024**3
# Below 8 MiB one PutObject, verified by Content-MD5; at or above it, a multipart upload (the size
# at which s3transfer switches to multipart by default).
SINGLE_PUT_LIMIT = 8 * 1024**2
# The most keys DeleteObjects accepts in one request.
DELETE_BATCH = 1000


def make_client() -> Any:
    """A client that honours ``AWS_ENDPOINT_URL`` and retries throttling the standard way."""
    # Standard mode backs off on SlowDown and retries resets; more connections than the 16
    # staging threads, so urllib3 reuses them instead of discarding ("Connection pool is full").
    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 8},
                                            max_pool_connections=32))


def _etag(value: str) -> str:
    return value.strip('"')


def _plain_md5_etag(response: dict[str, Any]) -> str | None:
    """The ETag of a PUT/HEAD response when it is the MD5 of the bytes, else None.

    Multipart ETags carry a '-'; with SSE-KMS or SSE-C a single-part ETag is not the MD5 either.
    """
    etag = _etag(response.get("ETag", ""))
    encrypted = str(response.get("ServerSideEncryption", "")).startswith("aws:kms") or \
        "SSECustomerAlgorithm" in response
    if not etag or "-" in etag or encrypted:
        return None
    return etag.lower()


class S3Store:
    is_local = False

    def __init__(self, uri: str, client: Any) -> None:
        self.bucket, self.prefix = split_s3(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.client = client

    def key(self, rel: str) -> str:
        return self.prefix + rel

    # A prefix exists as soon as a key under it does; an empty one simply lists nothing.
    def exists(self) -> bool:
        return True

    def list(self, start_after: str = "") -> Iterator[Entry]:
        """One page (1,000 objects) at a time; from the first key after ``start_after``."""
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"StartAfter": start_after} if start_after else {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, **extra):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix):]
                # Keys ending in '/' are the folder markers consoles create, not files.
                if rel and not rel.endswith("/") and not is_private(posixpath.basename(rel)):
                    yield Entry(rel, obj["Size"], _etag(obj["ETag"]))

    def stat(self, rel: str) -> Entry | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return Entry(rel, head["ContentLength"], _etag(head["ETag"]))

    def ensure_unchanged(self, entry: Entry) -> None:
        """Reads are pinned to the listed ETag (``IfMatch``), so a changed object fails the read."""

    def checksum(self, rel: str) -> str:
        entry = self.stat(rel)
        return entry.version if entry else ""

    def open_read(self, entry: Entry) -> BinaryIO:
        params = {"client": self.client,
                  "client_kwargs": {"S3.Client.get_object": {"IfMatch": f'"{entry.version}"'}}}
        import smart_open  # only for transformations: 6 MiB that plain copies do without

        return smart_open.open(f"s3://{self.bucket}/{self.key(entry.rel)}", "rb",
                               compression="disable", transport_params=params)

    def write_stream(self, rel: str, fill: Fill, journal: Journal, size_hint: int | None,
                     before_publish: Callable[[], None]) -> int:
        """Small outputs are one PutObject; bigger ones a multipart upload, recorded while in flight."""
        import smart_open

        uri = f"s3://{self.bucket}/{self.key(rel)}"
        multipart = size_hint is None or size_hint >= SINGLE_PUT_LIMIT
        params: dict[str, Any] = {"client": self.client, "multipart_upload": multipart}
        with in_flight(self.client, uri, journal) if multipart else contextlib.nullcontext():
            with smart_open.open(uri, "wb", compression="disable", transport_params=params) as raw:
                out = CountingWriter(raw, digest=None if multipart else hashlib.md5())
                fill(out)  # type: ignore[arg-type]
                before_publish()
        return self._verify(rel, out.count, out.digest.hexdigest() if out.digest else None)

    def upload_file(self, path: str, rel: str, entry: Entry, journal: Journal,
                    before_publish: Callable[[], None]) -> int:
        key = self.key(rel)
        md5 = None
        if entry.size < SINGLE_PUT_LIMIT:
            with open(path, "rb") as body:
                digest = hashlib.file_digest(body, "md5")  # type: ignore[arg-type]
                body.seek(0)
                # S3 rejects the PUT when the bytes it received do not match Content-MD5.
                try:
                    response = self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentMD5=base64.b64encode(digest.digest()).decode(),
                    )
                except self.client.exceptions.ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "BadDigest":
                        before_publish()  # the file changed while it was read: SourceChanged
                    raise
            md5 = digest.hexdigest()
            etag = _plain_md5_etag(response)
            if etag is not None and etag != md5:
                raise VerifyError(
                    f"s3://{self.bucket}/{key}: ETag {etag} is not the MD5 {md5} of {path}"
                )
        else:
            with in_flight(self.client, f"s3://{self.bucket}/{key}", journal):
                self.client.upload_file(path, self.bucket, key)
        before_publish()
        return self._verify(rel, entry.size, md5)

    def copy_from(self, source: "S3Store", entry: Entry, rel: str, journal: Journal) -> int:
        """Server-side copy of exactly the listed version: no byte crosses this machine.
        Verified by ETag, else by size. A source replaced since it was listed: ``SourceChanged``."""
        copy_source = {"Bucket": source.bucket, "Key": source.key(entry.rel)}
        # Copies exactly the listed version: a source replaced since fails with 412 instead of
        # publishing bytes that were never listed.
        condition = {"CopySourceIfMatch": f'"{entry.version}"'}
        try:
            if entry.size < COPY_OBJECT_LIMIT:
                result = self.client.copy_object(CopySource=copy_source, Bucket=self.bucket,
                                                 Key=self.key(rel), **condition)
                copied = _etag(result["CopyObjectResult"]["ETag"])
                # A plain-MD5 ETag equal on both sides proves the bytes; otherwise (multipart,
                # encrypted) the size is checked by a HEAD.
                if "-" not in entry.version and copied == entry.version:
                    return entry.size
            else:
                with in_flight(self.client, f"s3://{self.bucket}/{self.key(rel)}", journal):
                    self.client.copy(copy_source, self.bucket, self.key(rel), ExtraArgs=condition)
        except ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412", "NoSuchKey"):
                raise SourceChanged(entry.rel) from exc  # replaced or gone since it was listed
            raise
        return self._verify_size(rel, entry.size)

    def _verify_size(self, rel: str, expected: int) -> int:
        return self._verify(rel, expected, None)

    def _verify(self, rel: str, expected: int, md5: str | None) -> int:
        """The published object has ``expected`` bytes and, when ``md5`` is given and its ETag is
        a plain MD5 (single-part, not KMS/SSE-C encrypted), that MD5."""
        head = self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
        uri = f"s3://{self.bucket}/{self.key(rel)}"
        if head["ContentLength"] != expected:
            raise VerifyError(f"{uri}: {head['ContentLength']} bytes, expected {expected}")
        etag = _plain_md5_etag(head) if md5 is not None else None
        if etag is not None and etag != md5:
            raise VerifyError(f"{uri}: ETag {etag} is not the MD5 {md5} of the bytes written")
        return expected

    def delete(self, entries: Sequence[Entry]) -> dict[str, str]:
        """Delete each object only if its ETag is still the one copied; return why, for each one
        kept (``CHANGED`` when it was replaced). An object already gone counts as deleted: a retry
        whose first attempt did delete it (reply lost) gets ``NoSuchKey``."""
        if len(entries) == 1:
            return self._delete_one(entries[0])
        kept: dict[str, str] = {}
        for start in range(0, len(entries), DELETE_BATCH):
            batch = entries[start:start + DELETE_BATCH]
            objects = [{"Key": self.key(e.rel), "ETag": f'"{e.version}"'} for e in batch]
            response = self.client.delete_objects(Bucket=self.bucket,
                                                  Delete={"Objects": objects, "Quiet": True})
            for error in response.get("Errors", []):
                why = _why_kept(error.get("Code", ""), error.get("Message", ""))
                if why is not None:
                    kept[error["Key"][len(self.prefix):]] = why
        return kept

    def _delete_one(self, entry: Entry) -> dict[str, str]:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(entry.rel),
                                      IfMatch=f'"{entry.version}"')
        except ClientError as exc:
            why = _why_kept(error_code(exc), str(exc))
            return {} if why is None else {entry.rel: why}
        return {}


def _why_kept(code: str, message: str) -> str | None:
    """Why S3 kept an object we asked to delete; None when it is gone anyway."""
    if code in ("NoSuchKey", "404"):
        return None
    if code in ("PreconditionFailed", "412"):
        return CHANGED
    return f"{code}: {message}" if code else message
