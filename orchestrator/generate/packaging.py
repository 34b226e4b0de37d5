"""The orchestrator's own distribution and its installed dependencies, as files to copy into an
artifact, each pinned to the version that generated it.

The distribution is found by its ``orchestrate`` console script, not by name, so renaming it in
setup.cfg changes nothing here. Its packages are copied from where Python imports them (an editable
install has no file list); dependencies are copied from their installed file lists (RECORD).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import importlib.util
import re
from pathlib import Path
from typing import Iterator

from ..errors import UserError

CONSOLE_SCRIPT = "orchestrator.cli:main"
# Also '.so.' (see native): versioned shared libraries that auditwheel vendors into '<pkg>.libs/'.
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
# They describe this machine's install, not the package: RECORD's list and hashes would not match
# the files we ship (our own .pyc, no .pth), and direct_url.json may hold a local path.
SKIPPED_METADATA = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
# name, [extras], version specifier, ;marker. A small parser, because 'packaging' is not one of our
# dependencies.
_REQUIREMENT = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*)(?:;(.*))?$"
)


@dataclasses.dataclass(frozen=True)
class Package:
    """One distribution's files: ``(path under site-packages, file on disk)``."""

    name: str
    version: str
    files: tuple[tuple[str, Path], ...]

    @property
    def native(self) -> bool:
        return any(rel.endswith(NATIVE_SUFFIXES) or ".so." in rel for rel, _ in self.files)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def our_distribution() -> metadata.Distribution:
    for dist in metadata.distributions():
        if any(
            # An entry point value may carry spaces ('orchestrator.cli : main'), as written.
            ep.group == "console_scripts" and ep.value.replace(" ", "") == CONSOLE_SCRIPT
            for ep in dist.entry_points
        ):
            return dist
    raise UserError(
        "cannot find the installed orchestrator distribution (no console script "
        f"{CONSOLE_SCRIPT}); install it with pip (pip install -e . in a checkout)"
    )


def canonical(name: str) -> str:
    # PEP 503: requirements and installed metadata spell names differently ('PyYAML', 'pyyaml').
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: metadata.Distribution) -> list[metadata.Distribution]:
    """``root``'s install requirements, recursively, with the extras they ask for."""
    seen: dict[str, metadata.Distribution] = {}
    pending: list[tuple[metadata.Distribution, frozenset[str]]] = [(root, frozenset())]
    wanted_extras: dict[str, set[str]] = {}
    while pending:
        dist, extras = pending.pop()
        for line in dist.requires or ():
            match = _REQUIREMENT.match(line)
            if match is None or not _marker_holds(match.group(4), extras):
                continue
            name = canonical(match.group(1))
            asked = {canonical(e) for e in (match.group(2) or "").split(",") if e.strip()}
            known = wanted_extras.setdefault(name, set())
            # A package already seen is visited again only when new extras are asked of it: an
            # extra brings requirements of its own.
            if name in seen and asked <= known:
                continue
            known.update(asked)
            try:
                child = seen.get(name) or metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise UserError(
                    f"{dist.metadata['Name']} requires {line.split(';')[0].strip()}, which is not "
                    "installed here; install it, then generate again"
                ) from None
            seen[name] = child
            pending.append((child, frozenset(known)))
    # A dependency that requires us back does not make us a dependency: our own files are copied
    # by our_package, not from an install record.
    seen.pop(canonical(root.metadata["Name"]), None)
    # Sorted: the walk follows each METADATA's requirement order, the pins (app.json, messages)
    # should not.
    return sorted(seen.values(), key=lambda d: canonical(d.metadata["Name"]))


def _marker_holds(marker: str | None, extras: frozenset[str]) -> bool:
    if not marker or not marker.strip():
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # pip's vendored copy is the usual fallback
        try:
            from pip._vendor.packaging.markers import Marker  # type: ignore[assignment]
        except ImportError:
            # Neither copy of 'packaging' available: keep every plain requirement, drop the
            # extras-only ones (they are the optional part).
            return "extra" not in marker
    parsed = Marker(marker)
    if "extra" in marker:
        return any(parsed.evaluate({"extra": extra}) for extra in extras)
    return parsed.evaluate({"extra": ""})


def dependency_package(dist: metadata.Distribution) -> Package:
    files = []
    for path in dist.files or ():
        text = str(path)
        # '..' files live outside site-packages (console scripts, data files); .pyc files are
        # compiled afresh by the archive; a .pth would point at this machine's paths.
        if text.startswith("..") or "__pycache__" in path.parts or text.endswith((".pyc", ".pth")):
            continue
        if ".dist-info/" in text and path.name in SKIPPED_METADATA:
            continue
        source = Path(str(dist.locate_file(path)))
        if source.is_file():
            files.append((path.as_posix(), source))
    return Package(dist.metadata["Name"], dist.version, tuple(files))


def our_package(dist: metadata.Distribution) -> tuple[Package, dict[str, str]]:
    """Our packages (from where they are imported) and a fresh dist-info (path → text), so entry
    points (the built-in executors are plugins) work in the artifact as they do here."""
    files: list[tuple[str, Path]] = []
    for top in top_level_packages(dist):
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"cannot find package {top!r} of {dist.metadata['Name']}")
        folder = Path(list(spec.submodule_search_locations)[0])
        files.extend(
            (f"{top}/{p.relative_to(folder).as_posix()}", p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    # A dist-info written from scratch, with what importlib.metadata needs in the artifact (name,
    # version, entry points): the installed one describes this install, and an editable one
    # points back at the checkout.
    info = f"{canonical(dist.metadata['Name']).replace('-', '_')}-{dist.version}.dist-info"
    texts = {
        f"{info}/{name}": dist.read_text(name) or "" for name in ("METADATA", "entry_points.txt")
    }
    texts[f"{info}/top_level.txt"] = "\n".join(top_level_packages(dist)) + "\n"
    return Package(dist.metadata["Name"], dist.version, tuple(files)), texts


def top_level_packages(dist: metadata.Distribution) -> list[str]:
    listed = (dist.read_text("top_level.txt") or "").split()
    if listed:
        return sorted(set(listed))
    # Newer build back-ends write no top_level.txt; the entry points name our top-level packages
    # (orchestrator for the CLI, executors for the built-in plugins).
    modules = {ep.value.split(":")[0].split(".")[0] for ep in dist.entry_points}
    return sorted(modules)


def packages() -> tuple[Package, dict[str, str], list[Package]]:
    """Ours (with its dist-info texts) and every dependency, as installed here."""
    dist = our_distribution()
    ours, texts = our_package(dist)
    return ours, texts, [dependency_package(d) for d in closure(dist)]


def iter_python_sources(files: Iterator[tuple[str, Path]]) -> Iterator[tuple[str, Path]]:
    return (item for item in files if item[0].endswith(".py"))
