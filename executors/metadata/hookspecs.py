"""The source hook: how a third party adds a source type (Azure Blob, Snowflake, a REST API...).

A plugin module registered under the entry-point group ``orchestrator.metadata_sources``
implements ``metadata_source`` with ``@executors.metadata.hookspecs.hookimpl``. The built-in
SQL, file and Glue sources register the same way.
"""
from __future__ import annotations

from typing import Any

import pluggy

# A plugin project of its own, apart from the orchestrator's: source plugins are loaded by the
# metadata executor, when a routine uses it, not by the core.
PROJECT = "orchestrator.metadata_sources"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# firstresult: the first source that claims the location is used and the others are not asked; the
# built-in sources claim disjoint locations (schemes, glue://, paths and s3://).
@hookspec(firstresult=True)
def metadata_source(location: str, options: dict[str, Any]) -> Any:  # type: ignore[empty-body]
    """Return a source object for ``location`` if it is yours, else None.

    ``options`` are the executor's params (include, exclude, password, region...). Return fast
    and touch nothing: this runs at validation time. The object follows
    ``executors.metadata.source.Source``: ``kind``, ``problems()``, ``extract()``, ``profile()``,
    ``close()``.
    """


@hookspec
def metadata_source_types() -> list[str]:  # type: ignore[empty-body]
    """Return short descriptions of the locations this plugin handles, for error messages."""
