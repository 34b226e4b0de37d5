"""Deterministic zip archives: the same inputs give the same bytes (sorted entries, fixed times and
modes), so an artifact's digest names its content. Python files get an unchecked-hash ``.pyc`` in
``__pycache__`` beside them, so the artifact starts as fast as an installed package and never
recompiles, even on a read-only file system (Lambda's ``/var/task``)."""

from __future__ import annotations

import importlib.util
import io
import marshal
import sys
import zipfile
from pathlib import Path
from typing import Iterable

from .packaging import Package

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16
UNCHECKED_HASH_FLAGS = (0b01).to_bytes(4, "little")


def pyc_bytes(source: bytes, filename: str) -> bytes | None:
    """An unchecked hash-based ``.pyc`` (PEP 552) for this interpreter; None if not compilable."""
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return (
        importlib.util.MAGIC_NUMBER
        + UNCHECKED_HASH_FLAGS
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def pyc_name(arcname: str) -> str:
    folder, _, file = arcname.rpartition("/")
    cached = f"__pycache__/{file[:-3]}.{sys.implementation.cache_tag}.pyc"
    return f"{folder}/{cached}" if folder else cached


class Archive:
    """Collects entries, then writes them sorted with fixed metadata."""

    def __init__(self, compile_python: bool = True) -> None:
        self.entries: dict[str, bytes] = {}
        self.compile_python = compile_python

    def add_bytes(self, arcname: str, data: bytes) -> None:
        self.entries[arcname] = data

    def add_file(self, arcname: str, path: Path) -> None:
        data = path.read_bytes()
        self.entries[arcname] = data
        if self.compile_python and arcname.endswith(".py") and not arcname.endswith("__main__.py"):
            compiled = pyc_bytes(data, arcname)
            if compiled is not None:
                self.entries[pyc_name(arcname)] = compiled

    def add_packages(self, packages: Iterable[Package], prefix: str = "") -> None:
        for package in packages:
            for relative, path in package.files:
                self.add_file(prefix + relative, path)

    def to_bytes(self, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(
            buffer,
            "w",
            compression,
            compresslevel=6 if compression == zipfile.ZIP_DEFLATED else None,
        ) as out:
            for arcname in sorted(self.entries):
                info = zipfile.ZipInfo(arcname, FIXED_TIME)
                info.external_attr = FILE_MODE
                info.compress_type = compression
                out.writestr(info, self.entries[arcname])
        return buffer.getvalue()

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.entries.values())
