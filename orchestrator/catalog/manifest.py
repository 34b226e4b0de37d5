"""What a published version holds: each file's path and SHA-256; checked before anything runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import UserError

# Bumped only when an older orchestrator must refuse the manifest rather than misread it.
FORMAT = 1
# Hash in 1 MiB reads so a large shipped file never has to fit in memory.
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """``routine`` and every key of ``files`` are relative POSIX paths under one root folder."""

    name: str
    version: str
    routine: str
    files: dict[str, FileEntry]
    orchestrator: str = ""
    published: str = ""

    def to_json(self) -> bytes:
        # Sorted keys and a fixed indent: the bytes depend on the content only, not on dict order,
        # and two versions of a routine diff line by line.
        doc: dict[str, Any] = {"format": FORMAT, **dataclasses.asdict(self)}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
            files = {
                check_relative(p, where): FileEntry(str(e["sha256"]), int(e["size"]))
                for p, e in doc["files"].items()
            }
            manifest = cls(
                str(doc["name"]),
                str(doc["version"]),
                str(doc["routine"]),
                files,
                str(doc.get("orchestrator", "")),
                str(doc.get("published", "")),
            )
        except UserError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{where}: not a valid catalog manifest ({exc}); nothing ran") from None
        # Only listed files are fetched and verified: an unlisted routine would be missing from
        # the fetch folder, or an unchecked leftover there.
        if manifest.routine not in files:
            raise UserError(
                f"{where}: the manifest's routine {manifest.routine!r} is not among its files"
            )
        return manifest


def check_relative(path: str, where: str) -> str:
    """A manifest path may not climb out of the folder it is unpacked into."""
    parts = path.split("/")
    # The paths come from the catalog, which is not trusted: '..', an absolute path or a backslash
    # (a separator on Windows) would let a manifest write outside the fetch folder. An empty part
    # also catches 'a//b' and a trailing '/'.
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise UserError(
            f"{where}: file path {path!r} is not a plain relative path; refusing the manifest"
        )
    return path


def verify_tree(root: Path, files: dict[str, FileEntry], where: str) -> None:
    """Every file present with its recorded SHA-256, or one error naming the first that is not."""
    # Sorted so that the one error reported is the same on every run and every machine.
    for relative, entry in sorted(files.items()):
        path = root / relative
        if not path.is_file():
            raise UserError(f"{where}: {relative} is missing; nothing ran")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise UserError(
                f"{where}: checksum mismatch for {relative}: expected sha256 {entry.sha256}, "
                f"got {actual}; the file was altered, nothing ran"
            )
