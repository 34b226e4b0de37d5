"""The source contract and the lookup of a source for a location through the source hook."""
from __future__ import annotations

import functools
from typing import Any, Callable, Protocol

import pluggy

from . import hookspecs
from .model import Catalog, TableInfo, TableProfile

ENTRY_POINT_GROUP = hookspecs.PROJECT


class SourceError(Exception):
    """A source cannot be read (unreachable, refused, not what it claims): one line, no secrets."""


class ProfileOptions(Protocol):
    mode: str  # estimate | sample | exact
    sample_percent: float
    sample_rows: int
    sample_limit: int  # rows read in sample mode where there is no TABLESAMPLE
    top_values: int
    distinct: str  # approx | exact (files)


class Source(Protocol):
    kind: str  # sql, files, glue, or a plugin's own

    def problems(self) -> list[str]:
        """What can be known wrong before any I/O (missing local file, bad URL)."""

    def extract(self) -> Catalog:
        """Tables, columns, keys, counts and sizes, in a few set-based reads."""

    def profile(self, table: TableInfo, options: ProfileOptions,
                check_cancelled: Callable[[], None]) -> TableProfile:
        """Per-column figures for one table, computed where the data is when possible."""

    def close(self) -> None:
        """Release connections."""


# Once per process: scanning the installed distributions' entry points costs milliseconds, and
# validation and every task ask for sources.
@functools.lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    # A plugin's hookimpl that matches no spec (a misspelt hook name) fails here, instead of the
    # source type silently never being found.
    pm.check_pending()
    return pm


def find_source(
    location: str, options: dict[str, Any], pm: pluggy.PluginManager | None = None
) -> Any:
    """The source for ``location``; SourceError naming the known types if no plugin claims it."""
    manager = pm or plugin_manager()
    found = manager.hook.metadata_source(location=location, options=options)
    if found is None:
        from .urls import mask_url

        known = sorted({t for types in manager.hook.metadata_source_types() for t in types or ()})
        # Masked: the location is often a URL with a password in it.
        raise SourceError(f"unknown source type {mask_url(location)!r}; known: {', '.join(known)}")
    return found
