"""Streaming per-file transformations for the staging executor: ``fn(source, destination, **args)``."""
from __future__ import annotations

import shutil
from typing import BinaryIO


def rename_columns(source: BinaryIO, destination: BinaryIO, mapper: dict[str, str]) -> None:
    """Rename header columns; the body is copied in 1 MiB blocks, so memory stays flat."""
    header = source.readline()
    ending = b"\r\n" if header.endswith(b"\r\n") else b"\n" if header.endswith(b"\n") else b""
    names = header[: len(header) - len(ending)].decode("utf-8").split(",")
    destination.write(",".join(mapper.get(n, n) for n in names).encode("utf-8") + ending)
    shutil.copyfileobj(source, destination, 1 << 20)
