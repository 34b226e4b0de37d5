"""The DynamoDB run store as a plugin: ``ORCHESTRATOR_STORE=dynamodb://TABLE``.

Kept apart from the store itself so that loading the plugin costs nothing until the store is used.
"""
from __future__ import annotations

from typing import Any

from orchestrator.hookspecs import hookimpl

SCHEME = "dynamodb://"


@hookimpl
def run_store(url: str) -> Any:
    """``dynamodb://TABLE`` → a store on that table (region and endpoint from the
    usual AWS settings)."""
    if not url.startswith(SCHEME):
        return None
    from .dynamodb_store import DynamoDBStore

    # Slashes stripped: dynamodb://TABLE/ and dynamodb:///TABLE name the same table.
    return DynamoDBStore(url[len(SCHEME):].strip("/"))
