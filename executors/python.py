"""Placeholder; replaced by the staging executor."""
from orchestrator.hookspecs import hookimpl


@hookimpl
def register_executors():
    return []
