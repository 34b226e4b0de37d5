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

# The earliest date a zip entry can hold (DOS time): every entry gets it, so the bytes do not
# depend on when the files were installed or built.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
# Unix permissions live in the high 16 bits of external_attr; one fixed mode for every entry keeps
# the umask and the installed files' modes out of the bytes.
FILE_MODE = 0o644 << 16
# PEP 552 flags: bit 0 set = hash-based, bit 1 clear = never checked against the source. A
# timestamp .pyc would not match the unpacked sources' mtimes and would be recompiled (impossible
# on a read-only file system); a checked one would hash every source at every import.
UNCHECKED_HASH_FLAGS = (0b01).to_bytes(4, "little")


def pyc_bytes(source: bytes, filename: str) -> bytes | None:
    """An unchecked hash-based ``.pyc`` (PEP 552) for this interpreter; None if not compilable."""
    try:
        # dont_inherit: this module's own 'from __future__ import annotations' must not leak into
        # the code compiled for someone else's file.
        code = compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        # A file this Python cannot compile (test data, another Python's syntax) ships as source
        # only and fails at import exactly as it would where it is installed.
        return None
    return (
        importlib.util.MAGIC_NUMBER
        + UNCHECKED_HASH_FLAGS
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def pyc_name(arcname: str) -> str:
    folder, _, file = arcname.rpartition("/")
    # The cache tag ('cpython-311') ties the .pyc to this interpreter; the artifacts are generated
    # for the same Python minor version they run with, and another one would just ignore the file.
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
                # writestr() with a ZipInfo uses the entry's own compress_type (ZIP_STORED by
                # default), not the archive's, so each entry has to be told.
                info.compress_type = compression
                out.writestr(info, self.entries[arcname])
        return buffer.getvalue()

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.entries.values())
