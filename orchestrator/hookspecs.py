"""The plugin contract: hook specifications a plugin module may implement.

A plugin is a module registered under the entry-point group ``orchestrator``;
it implements hooks with ``@orchestrator.hookimpl``.
"""
from __future__ import annotations

import pluggy

PROJECT = "orchestrator"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_executors() -> list[type]:  # type: ignore[empty-body]
    """Return the executor classes (subclasses of ``orchestrator.Executor``) this plugin provides.

    Called once when the registry loads. Importing the plugin module must stay cheap:
    import heavy libraries (boto3, database drivers) inside the tasks that need them.
    """
