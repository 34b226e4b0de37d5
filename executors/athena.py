"""Placeholder; replaced by the AWS executor."""
from orchestrator.hookspecs import hookimpl


@hookimpl
def register_executors():
    return []
