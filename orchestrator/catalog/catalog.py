"""Publish a bundle as ``NAME/VERSION`` and fetch it back, every file checked against its SHA-256.

Publishing writes each file once under its content address, then the manifest, which is the commit
point: a version exists once its manifest does and is never replaced. Fetching verifies every file
before anything runs; the first fetch of a version also pins its manifest locally, so a catalog
that later serves a different manifest for the same version is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import UserError
from .bundle import Bundle
from .manifest import Manifest, check_relative, sha256_bytes, sha256_file, verify_tree
from .refs import LATEST, RoutineRef, check_name, next_version, version_key
from .stores import CatalogStore, open_store

MANIFEST = "manifest.json"
PINNED = ".manifest.json"
# Rounds of "take the next number, lose the race to another publisher, take the next one again"
# before giving up; each lost round means someone else did publish.
PUBLISH_ATTEMPTS = 5


def blob_key(sha256: str) -> str:
    return f"sha256/{sha256}"


class Catalog:
    def __init__(self, routines: CatalogStore, artifacts: CatalogStore) -> None:
        self.routines, self.artifacts = routines, artifacts

    @classmethod
    def from_config(cls, config: Any = None, registry: Any = None) -> Catalog:
        from ..home_config import load_config

        config = config or load_config()
        url = config.require("catalog", "publish, routines and NAME@VERSION need")
        return cls(open_store(url, registry), open_store(config.get("artifacts"), registry))

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        return [
            n.rstrip("/")
            for n in self.routines.children("")
            # '_' folders are not routines: the default artifacts store is '<catalog>/_artifacts/'.
            if n.endswith("/") and not n.startswith("_")
        ]

    def versions(self, name: str) -> list[str]:
        found = [v.rstrip("/") for v in self.routines.children(f"{name}/") if v.endswith("/")]
        return sorted(found, key=version_key)

    def resolve(self, ref: RoutineRef) -> RoutineRef:
        if ref.version != LATEST:
            return ref
        versions = self.versions(ref.name)
        if not versions:
            raise UserError(
                f"{ref}: the catalog {self.routines.url} has no routine {ref.name!r}"
                f"{self._known_names()}"
            )
        # versions() is in natural order, so 'latest' is 10 rather than 9.
        return RoutineRef(ref.name, versions[-1])

    def manifest(self, ref: RoutineRef) -> tuple[Manifest, bytes]:
        ref = self.resolve(ref)
        key = f"{ref.name}/{ref.version}/{MANIFEST}"
        data = self.routines.read(key)
        if data is None:
            versions = self.versions(ref.name)
            known = f"; versions: {', '.join(versions)}" if versions else self._known_names()
            raise UserError(f"{ref}: not in the catalog {self.routines.url}{known}")
        manifest = Manifest.from_json(data, f"{self.routines.url} {key}")
        # A manifest copied under another name or version would otherwise run as what the user
        # asked for.
        if (manifest.name, manifest.version) != (ref.name, ref.version):
            raise UserError(
                f"{key}: the manifest says {manifest.name}@{manifest.version}; refusing it"
            )
        return manifest, data

    def _known_names(self) -> str:
        names = self.names()
        return f"; routines: {', '.join(names)}" if names else "; it holds no routines yet"

    # ------------------------------------------------------------------ publishing

    def publish(
        self,
        bundle: Bundle,
        version: str | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> Manifest:
        name = check_name("routine_name", bundle.name)
        if version is not None:
            check_name("--version", version)
        entries = bundle.entries()
        for relative, entry in entries.items():
            data = bundle.files[relative].read_bytes()
            # The entries were hashed from disk before this read; a file edited in between would be
            # stored under a hash that is not its content, and every later fetch would refuse it.
            if sha256_bytes(data) != entry.sha256:
                raise UserError(
                    f"{bundle.files[relative]} changed while it was being published; publish again"
                )
            # Every artifact before the manifest: once the manifest exists the version does, and a
            # reader must never find a manifest whose files are not there yet.
            created = self.artifacts.write_new(blob_key(entry.sha256), data)
            say(
                f"{'stored' if created else 'already stored'} {relative} "
                f"(sha256 {entry.sha256[:12]})"
            )
        for _ in range(PUBLISH_ATTEMPTS):
            # The next number is read again each round: a lost race means another publisher took
            # it.
            chosen = version or next_version(self.versions(name))
            manifest = Manifest(
                name,
                chosen,
                bundle.routine,
                entries,
                __version__,
                dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            )
            if self.routines.write_new(f"{name}/{chosen}/{MANIFEST}", manifest.to_json()):
                say(f"published {name}@{chosen}")
                return manifest
            if version is not None:
                raise UserError(
                    f"{name}@{version} already exists in {self.routines.url}; versions are never "
                    "overwritten: choose another --version (or omit it for the next number)"
                )
        raise UserError(
            f"{name}: other publishers took each next version {PUBLISH_ATTEMPTS} times; try again"
        )

    # ------------------------------------------------------------------ fetching

    def cache_folder(self) -> Path:
        from ..home import home_dir

        # Cache per catalog: two catalogs may both hold daily@3 with different content, and each
        # pins its own manifest.
        identity = hashlib.sha256(f"{self.routines.url}|{self.artifacts.url}".encode()).hexdigest()[
            :16
        ]
        return home_dir() / "catalog" / identity

    def fetch(self, ref: RoutineRef, say: Callable[[str], None] = lambda _: None) -> Bundle:
        """The version's files in the local cache, each verified; raises before anything runs."""
        manifest, raw = self.manifest(ref)
        where = f"{manifest.name}@{manifest.version}"
        folder = self.cache_folder() / manifest.name / manifest.version
        folder.mkdir(parents=True, exist_ok=True)
        # Pinned before any file is fetched, so a changed manifest is refused before its files are.
        self._pin(folder / PINNED, raw, where)
        for relative, entry in sorted(manifest.files.items()):
            target = folder.joinpath(*check_relative(relative, where).split("/"))
            # A file already fetched and unchanged is kept (the size is the cheap test); one
            # altered locally since is fetched again rather than refused.
            if (
                target.is_file()
                and target.stat().st_size == entry.size
                and sha256_file(target) == entry.sha256
            ):
                continue
            data = self.artifacts.read(blob_key(entry.sha256))
            if data is None:
                raise UserError(
                    f"{where}: artifact {relative} (sha256 {entry.sha256}) is missing from "
                    f"{self.artifacts.url}; nothing ran"
                )
            if sha256_bytes(data) != entry.sha256:
                raise UserError(
                    f"{where}: checksum mismatch for {relative}: expected sha256 {entry.sha256}, "
                    f"got {sha256_bytes(data)} from {self.artifacts.url}; "
                    "the artifact was altered, "
                    "nothing ran"
                )
            _write(target, data)
            say(f"fetched {relative}")
        # One last pass over the whole tree, as the run will see it, after every write.
        verify_tree(folder, manifest.files, where)
        files = {rel: folder.joinpath(*rel.split("/")) for rel in manifest.files}
        return Bundle(manifest.name, folder, manifest.routine, files, manifest.version, where)

    def _pin(self, pinned: Path, raw: bytes, where: str) -> None:
        if pinned.exists():
            # Compared as bytes, not as parsed manifests: any change to a published manifest is
            # tampering.
            if pinned.read_bytes() != raw:
                raise UserError(
                    f"{where}: the catalog now serves a different manifest than when this "
                    "version was "
                    f"first fetched (kept in {pinned}); versions never change, so the catalog was "
                    "altered; nothing ran"
                )
            return
        _write(pinned, raw)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed into place: a crash or a concurrent fetch of the same version never
    # leaves a half-written file under the real name (os.replace is atomic within one folder).
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".fetching-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, target)
