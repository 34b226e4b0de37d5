"""``NAME@VERSION`` and ``NAME@latest``: how the command line names a routine in the catalog."""

from __future__ import annotations

import dataclasses
import os
import re

from ..errors import UserError

# A name and a version each become one path segment in a folder, an S3 key and a URL: no '/', and a
# first letter or digit so that neither can be '.', '..' or a hidden '.incoming-' temp file.
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
    # A file literally called 'daily@3' in the working folder must still run as a file, so the
    # catalog is only asked when nothing by that name exists here.
    match = REF_PATTERN.fullmatch(text)
    if match is None or os.path.exists(text):
        return None
    return RoutineRef(match.group(1), match.group(2))


def check_name(what: str, value: str) -> str:
    # A version called 'latest' could never be fetched: the ref would always resolve to the
    # highest.
    if not NAME_PATTERN.fullmatch(value) or value == LATEST:
        raise UserError(
            f"{what} {value!r} cannot name a catalog entry: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128), and not 'latest'"
        )
    return value


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: ``2 < 10``, ``1.9 < 1.10``; numbers before words at the same place."""
    # The (0, int) / (1, str) tags keep ints and strs from ever being compared with each other,
    # which would raise TypeError on mixed versions like '2' and '2a'. Separators ('.', '-', '_')
    # are dropped.
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"\d+|[^\d.\-_]+", version)
    )


def next_version(existing: list[str]) -> str:
    """The next integer after the highest integer version (``1`` for an empty catalog entry)."""
    # Non-integer versions ('2026.11') are ignored here: the default numbering goes on from the
    # integers, whatever names were chosen by hand with --version.
    return str(max((int(v) for v in existing if v.isdigit()), default=0) + 1)


def resolve_routine_arg(text: str) -> str:
    """A routine argument as a local path: a file as given, ``NAME@VERSION`` fetched and verified.

    Kept here, away from the catalog, so that running a file costs nothing extra."""
    ref = parse_ref(text)
    if ref is None:
        return text
    from .catalog import Catalog

    return str(Catalog.from_config().fetch(ref).routine_path)
