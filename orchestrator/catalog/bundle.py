"""A routine and every file it names (code, SQL files, ``py_exec`` folders), under one root folder.

What counts as a file the routine needs comes from the executors' contract, not from names: a
param or task argument typed :class:`~orchestrator.CodeLocation` is shipped (a file, the file of
``file.py:function``, or a whole folder); one typed :class:`~orchestrator.Location` is shipped when
it names an existing file (``sql_file``) and left alone when it names a folder (landing, dump and
archive folders hold data, not code). ``--include`` adds anything else the code reads by itself.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..routine.load import Routine, load_routine
from ..errors import UserError
from ..routine.introspect import location_kinds, signature_schema
from .manifest import FileEntry, sha256_file

# Caches and version control inside a shipped code folder: specific to this machine (bytecode for
# its Python) or not code at all, and rewritten as the code runs here.
SKIPPED_PARTS = ("__pycache__", ".git", ".mypy_cache", ".pytest_cache")


@dataclasses.dataclass(frozen=True)
class Reference:
    path: str  # JSON path in the routine
    kind: str  # "code" or "location"
    value: str  # the resolved local path


@dataclasses.dataclass(frozen=True)
class Bundle:
    """``files``: relative POSIX path (under ``root``) -> file on disk, the routine included."""

    name: str
    root: Path
    routine: str
    files: dict[str, Path]
    version: str | None = None
    source: str = ""  # what the user named: a file or NAME@VERSION

    @property
    def routine_path(self) -> Path:
        return self.root / self.routine

    def entries(self) -> dict[str, FileEntry]:
        return {
            rel: FileEntry(sha256_file(path), path.stat().st_size)
            for rel, path in sorted(self.files.items())
        }

    def copy_to(self, folder: Path) -> Path:
        """Lay the files out under ``folder`` as under ``root``; return the routine's copy."""
        for relative, source in self.files.items():
            target = folder.joinpath(*relative.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return folder.joinpath(*self.routine.split("/"))


def references(routine: Routine) -> Iterator[Reference]:
    """Every local location the routine's params and task args name, with its kind."""
    for step in routine.steps:
        yield from _found(
            step.params, location_kinds(step.executor.params_schema), f"{step.path}.params"
        )
        methods = step.executor.cls.tasks()
        for i, call in enumerate(step.tasks):
            kinds = location_kinds(signature_schema(methods[call.task]))
            yield from _found(call.args, kinds, f"{step.path}.tasks[{i}].args")


def _found(values: Mapping[str, Any], kinds: Mapping[str, str], prefix: str) -> Iterator[Reference]:
    for key, kind in kinds.items():
        value = values.get(key)
        if not isinstance(value, str) or not value:
            continue
        # s3:// and other remote locations are read where they are; only local files are shipped.
        if "://" in value and not value.startswith("file://"):
            continue
        local = value.removeprefix("file://")
        # 'jobs.py:load_orders' names a function in a file: ship the file. Only the last segment is
        # looked at, so a ':' in a folder name is left alone.
        if kind == "code" and ":" in local.rsplit("/", 1)[-1]:
            local = local.rpartition(":")[0]
        yield Reference(f"{prefix}.{key}", kind, os.path.normpath(local))


def needed_files(routine: Routine) -> dict[str, list[Path]]:
    """JSON path → files to ship for it."""
    found: dict[str, list[Path]] = {}
    for ref in references(routine):
        path = Path(ref.value)
        # A folder is shipped only as code (a py_exec folder); a folder typed as a location holds
        # data.
        if path.is_dir() and ref.kind == "code":
            found[ref.path] = sorted(p for p in path.rglob("*") if _shippable(p, path))
        elif path.is_file():
            found[ref.path] = [path]
    return found


def _shippable(path: Path, top: Path) -> bool:
    parts = path.relative_to(top).parts
    return path.is_file() and path.suffix != ".pyc" and not any(p in SKIPPED_PARTS for p in parts)


def _included(items: tuple[str, ...], folder: Path) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        path = Path(os.path.normpath(folder / item))
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if _shippable(p, path)))
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"--include {item}: no such file or folder (relative to {folder})")
    return paths


def collect(
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    registry: Any = None,
    include: tuple[str, ...] = (),
) -> Bundle:
    """Validate the routine, gather what it names, and check that a copy elsewhere finds it all."""
    routine = load_routine(path, params, registry)
    file = Path(path).resolve()
    by_ref = needed_files(routine)
    paths = {
        file,
        *(p for files in by_ref.values() for p in files),
        *_included(include, file.parent),
    }
    # The root is the deepest folder holding every file, so '../shared/x.py' keeps its place
    # relative to the routine in the copy.
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    files = {p.relative_to(root).as_posix(): p for p in sorted(paths)}
    bundle = Bundle(routine.name, root, file.relative_to(root).as_posix(), files, source=str(path))
    _check_self_contained(bundle, by_ref, params, registry)
    return bundle


def _check_self_contained(
    bundle: Bundle, original: dict[str, list[Path]], params: Mapping[str, Any] | None, registry: Any
) -> None:
    """Load a copy in another folder: a file still found at its old place was named by an absolute
    path (or through ``${env.X}``), and the copy would silently depend on this machine."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-bundle-") as folder:
        copy = bundle.copy_to(Path(folder))
        moved = needed_files(load_routine(copy, params, registry))
        # realpath on both sides: the temp folder may be reached through a symlink (macOS's /var),
        # and a plain prefix test would then call every file outside.
        real = os.path.realpath(folder)
        for json_path, files in moved.items():
            outside = [f for f in files if not os.path.realpath(f).startswith(real + os.sep)]
            if outside:
                raise UserError(
                    f"{bundle.source}: {json_path}: names {outside[0]} outside the routine's "
                    "folder "
                    "tree by an absolute path; name it relative to the routine file so the routine "
                    "can be shipped with it"
                )
        # A file found from here but not from the copy would be missing wherever the routine is
        # fetched: refuse it now, at publish time, not on the machine that runs it.
        missing = sorted(set(original) - set(moved))
        if missing:
            raise UserError(
                f"{bundle.source}: {missing[0]}: its file is not found in a copy of the routine; "
                "name it relative to the routine file"
            )
