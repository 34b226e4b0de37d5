"""Multipart uploads in flight: each journaled with its upload id, so that exactly the uploads of a
dead run are aborted, and those orphaned by a lost reply are aborted by the run that made them.

The ids come from an event hook on the client: the uploads are created inside smart-open and
s3transfer (on their own threads), which do not hand their ids back. A CreateMultipartUpload whose
reply was lost and that botocore retried leaves an upload nobody knows the id of; after such a
retry, the writer aborts the other incomplete uploads to its key once it is done, unless a live
run has that key in flight too (then the orphan is left for a lifecycle rule, never a live upload
aborted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import weakref
from typing import Any, Iterator

from botocore.exceptions import ClientError

from . import journal as _journal
from .journal import Journal
from .locations import split_s3


@dataclasses.dataclass
class _Upload:
    journal: Journal
    ids: list[str] = dataclasses.field(default_factory=list)
    retried: bool = False


# Per client, weakly: the event hook is registered once per client, and a closed client's uploads
# are forgotten with it.
_WATCHED: "weakref.WeakKeyDictionary[Any, dict[str, _Upload]]" = weakref.WeakKeyDictionary()
_WATCH_LOCK = threading.Lock()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def in_flight(client: Any, uri: str, journal: Journal) -> Iterator[None]:
    """Journal a multipart upload to ``uri`` (its id too, once created) while it runs."""
    watched = _watched(client)
    upload = watched[uri] = _Upload(journal)
    journal.begin(uri)
    try:
        yield
    finally:
        # Stop watching before the end record: an upload id reported after it would be journaled for
        # a key no longer in flight.
        watched.pop(uri, None)
        journal.end(uri)
        if upload.retried:
            abort_orphans(client, uri, upload.ids, journal.path.parent)


def abort_uploads(client: Any, uri: str, upload_ids: list[str] | None = None) -> int:
    """Abort a crashed run's multipart uploads to exactly the key ``uri``: those with
    ``upload_ids``, or, when their ids were never journaled, every incomplete one to that key."""
    bucket, key = split_s3(uri)
    key = key.rstrip("/")
    if upload_ids is None:
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        upload_ids = [u["UploadId"] for u in uploads if u["Key"] == key]
    for upload_id in upload_ids:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            # Recovery may run twice over one journal (killed while cleaning): aborting is
            # idempotent.
            if error_code(exc) != "NoSuchUpload":  # completed or aborted already
                raise
    return len(upload_ids)


def abort_orphans(client: Any, uri: str, ours: list[str], folder: Any) -> None:
    """After a retried create: abort the incomplete uploads to ``uri`` other than ``ours``,
    unless a live run's journal has ``uri`` in flight."""
    # Another live run writing the same key owns uploads we cannot tell from orphans: better an
    # orphan left for a lifecycle rule than a live upload aborted.
    if uri in _journal.in_flight(folder):
        return
    bucket, key = split_s3(uri)
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=key.rstrip("/")).get(
        "Uploads", []
    )
    orphans = [
        u["UploadId"] for u in uploads if u["Key"] == key.rstrip("/") and u["UploadId"] not in ours
    ]
    if orphans:
        abort_uploads(client, uri, orphans)


def _watched(client: Any) -> dict[str, _Upload]:
    with _WATCH_LOCK:
        watched = _WATCHED.get(client)
        if watched is None:
            watched = _WATCHED[client] = {}
            client.meta.events.register(
                "after-call.s3.CreateMultipartUpload", functools.partial(_note_upload, watched)
            )
        return watched


def _note_upload(watched: dict[str, _Upload], parsed: dict[str, Any], **_: Any) -> None:
    uri = f"s3://{parsed.get('Bucket')}/{parsed.get('Key')}"
    upload = watched.get(uri)
    if upload is None or "UploadId" not in parsed:
        return
    upload.ids.append(parsed["UploadId"])
    # RetryAttempts > 0: botocore sent the create more than once, so S3 may hold an upload whose id
    # we never saw.
    upload.retried = (
        upload.retried or parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
    )
    upload.journal.upload(uri, parsed["UploadId"])
