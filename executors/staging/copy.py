"""Copy one file between any two stores by the cheapest verified route.

local→local: kernel copy; S3→S3: server-side copy; local→S3: PutObject/upload_file;
anything with a transformation (or S3→local): one streaming pass, memory bounded by its buffers.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, BinaryIO, Callable

from .journal import Journal
from .storage import Entry, SourceChanged, Store, as_local, as_s3

Transform = Callable[..., Any]


def copy_entry(src: Store, dst: Store, entry: Entry, rel: str, journal: Journal,
               transform: Transform | None = None,
               transform_args: dict[str, Any] | None = None) -> int:
    """Copy ``entry`` of ``src`` to ``rel`` in ``dst``; return the verified byte count there.

    A local source gone since it was listed (a concurrent run staged it) is ``SourceChanged``:
    left, not a failure."""
    try:
        return _copy(src, dst, entry, rel, journal, transform, transform_args)
    except FileNotFoundError:
        # Told apart from a missing dump folder (also FileNotFoundError), which is a failure: only
        # the source being gone means another run staged it.
        if src.is_local and not os.path.lexists(as_local(src).path(entry.rel)):
            raise SourceChanged(entry.rel) from None
        raise


def _copy(src: Store, dst: Store, entry: Entry, rel: str, journal: Journal,
          transform: Transform | None, transform_args: dict[str, Any] | None) -> int:
    # Every route calls this right before publishing: what is published is never a source that
    # changed while it was read.
    unchanged = lambda: src.ensure_unchanged(entry)  # noqa: E731
    if transform is None and src.is_local and dst.is_local:
        source = as_local(src).path(entry.rel)
        return as_local(dst).copy_file(source, rel, entry, journal, unchanged)
    if transform is None and not src.is_local and not dst.is_local:
        # No ``unchanged`` here: the server-side copy is itself conditional on the listed ETag.
        return as_s3(dst).copy_from(as_s3(src), entry, rel, journal)
    if transform is None and src.is_local:
        source = as_local(src).path(entry.rel)
        return as_s3(dst).upload_file(source, rel, entry, journal, unchanged)
    fill = _filler(src, entry, transform or _identity, transform_args or {})
    return dst.write_stream(rel, fill, journal, entry.size, unchanged)


def _identity(source: BinaryIO, destination: BinaryIO) -> None:
    # 1 MiB blocks, not copyfileobj's default 64 kB: fewer Python calls per byte, memory bounded.
    shutil.copyfileobj(source, destination, 1 << 20)


def _filler(src: Store, entry: Entry, transform: Transform,
            args: dict[str, Any]) -> Callable[[BinaryIO], None]:
    def fill(destination: BinaryIO) -> None:
        with src.open_read(entry) as source:
            transform(source, destination, **args)

    return fill
