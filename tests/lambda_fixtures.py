"""Fixtures for the Lambda handler and DynamoDB store tests: a moto server on loopback, real boto3 clients.

conftest.py loads this module as a pytest plugin, so its fixtures need no import.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import use_moto
from orchestrator.registry import Registry

__all__ = ["lambda_aws", "dynamo_store", "lambda_registry", "FakeContext", "LambdaAws"]


@dataclasses.dataclass
class LambdaAws:
    endpoint: str

    def client(self, service: str) -> Any:
        import boto3

        client = boto3.client(service)
        assert client.meta.endpoint_url.startswith("http://127.0.0.1:"), client.meta.endpoint_url
        return client


@pytest.fixture
def lambda_aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> LambdaAws:
    """An emptied moto server; every boto3 client made from the environment goes there."""
    use_moto(moto_server, monkeypatch)
    aws = LambdaAws(moto_server)
    aws.client("dynamodb")
    return aws


@pytest.fixture
def dynamo_store(lambda_aws: LambdaAws) -> Any:
    """A fresh table (unique name) and a DynamoDBStore on it, its client checked to be on loopback."""
    from executors.dynamodb_store import DynamoDBStore

    store = DynamoDBStore(f"runs-{uuid.uuid4().hex[:12]}")
    store.create_table()
    assert store.client.meta.endpoint_url.startswith("http://127.0.0.1:"), store.client.meta.endpoint_url
    return store


@pytest.fixture
def lambda_registry() -> Registry:
    """The installed plugins, the DynamoDB store plugin among them (registered here if not installed)."""
    from executors import dynamodb_plugin

    registry = Registry()
    if not registry.pm.is_registered(dynamodb_plugin):
        registry.register(dynamodb_plugin, name="dynamodb-store-test")
    return registry


class FakeContext:
    """What the handler reads of Lambda's context object; the deadline is real wall time."""

    def __init__(self, seconds: float, function_name: str = "orchestrator-test") -> None:
        self.deadline = time.monotonic() + seconds
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.deadline - time.monotonic()) * 1000), 0)


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
