"""``NAME@VERSION`` and ``NAME@latest``: how the command line names a routine in the catalog."""

from __future__ import annotations

import dataclasses
import os
import re

from ..errors import UserError

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
NAME_PATTERN = re.compile(NAME)
REF_PATTERN = re.compile(rf"({NAME})@({NAME})")
LATEST = "latest"


@dataclasses.dataclass(frozen=True)
class RoutineRef:
    name: str
    version: str  # a version, or "latest" until resolved

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


def parse_ref(text: str) -> RoutineRef | None:
    """A catalog reference, or None when ``text`` names a file (an existing file always wins)."""
    match = REF_PATTERN.fullmatch(text)
    if match is None or os.path.exists(text):
        return None
    return RoutineRef(match.group(1), match.group(2))


def check_name(what: str, value: str) -> str:
    if not NAME_PATTERN.fullmatch(value) or value == LATEST:
        raise UserError(
            f"{what} {value!r} cannot name a catalog entry: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128), and not 'latest'"
        )
    return value


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: ``2 < 10``, ``1.9 < 1.10``; numbers before words at the same place."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"\d+|[^\d.\-_]+", version)
    )


def next_version(existing: list[str]) -> str:
    """The next integer after the highest integer version (``1`` for an empty catalog entry)."""
    return str(max((int(v) for v in existing if v.isdigit()), default=0) + 1)


def resolve_routine_arg(text: str) -> str:
    """A routine argument as a local path: a file as given, ``NAME@VERSION`` fetched and verified.

    Kept here, away from the catalog, so that running a file costs nothing extra."""
    ref = parse_ref(text)
    if ref is None:
        return text
    from .catalog import Catalog

    return str(Catalog.from_config().fetch(ref).routine_path)
