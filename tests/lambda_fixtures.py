"""Fixtures for the Lambda handler and DynamoDB store tests: a moto server on loopback, real boto3 clients.

Import the fixtures you use into the test module (``from lambda_fixtures import ...``).
"""
from __future__ import annotations

import dataclasses
import logging
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from orchestrator.registry import Registry

__all__ = ["lambda_moto", "lambda_aws", "dynamo_store", "lambda_registry", "FakeContext", "LambdaAws"]


@pytest.fixture(scope="session")
def lambda_moto() -> Iterator[str]:
    """One moto server for these tests, bound to loopback on a free port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1", host
    yield f"http://{host}:{port}"
    server.stop()


@dataclasses.dataclass
class LambdaAws:
    endpoint: str

    def client(self, service: str) -> Any:
        import boto3

        client = boto3.client(service)
        assert client.meta.endpoint_url.startswith("http://127.0.0.1:"), client.meta.endpoint_url
        return client


@pytest.fixture
def lambda_aws(lambda_moto: str, monkeypatch: pytest.MonkeyPatch) -> LambdaAws:
    """An emptied moto server; every boto3 client made from the environment goes there."""
    urllib.request.urlopen(urllib.request.Request(f"{lambda_moto}/moto-api/reset", method="POST")).close()
    for name, value in {"AWS_ENDPOINT_URL": lambda_moto, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_ENDPOINT_URL_S3",
                 "AWS_ENDPOINT_URL_DYNAMODB", "AWS_SESSION_TOKEN", "ORCHESTRATOR_STORE"):
        monkeypatch.delenv(name, raising=False)
    aws = LambdaAws(lambda_moto)
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
    """The installed plugins plus the DynamoDB store plugin (registered here until its entry point exists)."""
    from executors import dynamodb_store

    registry = Registry()
    if not registry.pm.is_registered(dynamodb_store):
        registry.register(dynamodb_store, name="dynamodb-store-test")
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
