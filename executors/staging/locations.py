"""Reasoning about locations (local paths and ``s3://`` URIs): no writes, no network.

Validation runs before any side effect. Nesting checks compare normalised strings; for local paths
the symlinks are resolved first (a read of the filesystem), so a dump that is a link to the
landing folder is caught as the same place.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import random
import re
from datetime import datetime, timezone
from typing import Any, Iterator

NAME_MAX = 255  # bytes in one path component, on Linux and macOS filesystems alike
# Our own temporary names: a hidden prefix (Hive, Athena and Spark skip names starting with '.'),
# what the name is for, a digest of the name it stands for and a random token. Fixed length, so a
# landing name of any legal length still has one; exact, so a user's file is never taken for ours.
_PRIVATE = re.compile(r"\.orchestrator-(partial|claim)-[0-9a-f]{16}-[0-9a-f]{12}")


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b/")``: a prefix always ends with '/' unless empty."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    key = key.strip("/")
    return bucket, f"{key}/" if key else ""


def scheme_error(location: str) -> str | None:
    """Why a location cannot be used, or None."""
    if "://" in location and not is_s3(location) and not location.startswith("file://"):
        return f"unsupported location {location!r}: use a local path or an s3:// URI"
    if is_s3(location) and not split_s3(location)[0]:
        return f"{location!r} names no bucket"
    return None


def local_path(location: str) -> str:
    """A local location as an absolute, normalised path (``file://`` stripped), symlinks kept."""
    path = location[len("file://"):] if location.startswith("file://") else location
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def identity(location: str) -> tuple[str, str]:
    """A comparable ``(scheme, prefix/)`` so that nesting is a plain ``startswith``.

    Local paths are resolved with ``realpath``: two names for one folder (a symlink) are one place.
    """
    if is_s3(location):
        bucket, prefix = split_s3(location)
        return "s3", f"{bucket}/{prefix}"
    return "file", os.path.realpath(local_path(location)).rstrip("/") + "/"


def overlaps(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are the same place or one lies inside the other."""
    (scheme_a, key_a), (scheme_b, key_b) = identity(a), identity(b)
    return scheme_a == scheme_b and (key_a.startswith(key_b) or key_b.startswith(key_a))


def default_archive(parent: str) -> str | None:
    """``<landing>_archive``, a sibling of the landing folder; None for a bucket or filesystem root."""
    if is_s3(parent):
        bucket, prefix = split_s3(parent)
        return f"s3://{bucket}/{prefix.rstrip('/')}_archive/" if prefix else None
    path = local_path(parent)
    return None if path == "/" else path.rstrip("/") + "_archive"


def matches(rel: str, pattern: str | None) -> bool:
    """Glob on the relative path or on the basename, so ``*.csv`` and ``2024/*.csv`` both work."""
    if not pattern or pattern == "*":
        return True
    return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(
        posixpath.basename(rel), pattern
    )


def private_name(kind: str, name: str) -> str:
    """A fresh temporary name in ``name``'s folder: ``kind`` is ``partial`` (a copy being written)
    or ``claim`` (a landing file being archived or deleted)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    # The token only has to differ between writers, not resist guessing: ``random`` (reseeded in
    # a forked child) costs no system call, where ``secrets`` made a getrandom call per file.
    return f".orchestrator-{kind}-{digest}-{random.getrandbits(48):012x}"


def is_private(name: str) -> bool:
    """A name only ``private_name`` makes: listings skip it, and only it."""
    return _PRIVATE.fullmatch(name) is not None


def timestamped(rel: str) -> str:
    """``a/b.csv`` → ``a/b.<UTC timestamp>.csv``, the stem cut so the name still fits NAME_MAX."""
    folder, name = posixpath.split(rel)
    stem, ext = posixpath.splitext(name)
    stamp = f".{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}"
    if _size(ext) > 32:
        stem, ext = name, ""  # a long "extension" is part of the name, not a type
    return posixpath.join(folder, f"{_cut(stem, NAME_MAX - _size(stamp + ext))}{stamp}{ext}")


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _cut(text: str, room: int) -> str:
    """The longest start of ``text`` that takes at most ``room`` bytes, cut between characters."""
    used = 0
    for i, char in enumerate(text):
        used += _size(char)
        if used > room:
            return text[:i]
    return text


def split_callable(ref: str) -> tuple[str, str]:
    """``/path/file.py:function`` → ``("/path/file.py", "function")``."""
    path, sep, function = ref.rpartition(":")
    if not sep or not path or not function.isidentifier():
        raise ValueError(f"{ref!r} is not 'file.py:function'")
    return path, function


def local_path_strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """``(key path, path)`` for each string in a free-form value (a function's kwargs) that names a
    local file outside the working folder: absolute, ``~``-relative or ``file://``, or climbing
    with a ``..`` segment (URLs included). Other relative names (``in/orders.csv``, an S3 key) stay
    under the working folder (in Lambda: the read-only package) and are left alone. ``~`` is
    expanded and ``file://`` removed; ``..`` is left for the checker to resolve."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from local_path_strings(item, f"{key}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from local_path_strings(item, f"{key}[{i}]")
    elif isinstance(value, str) and _names_outside_cwd(value):
        path = value[len("file://"):] if value.startswith("file://") else value
        yield key, os.path.expanduser(path)


def _names_outside_cwd(text: str) -> bool:
    if text.startswith(("/", "~", "file://")):
        return True
    return ".." in text.replace("\\", "/").split("/")
