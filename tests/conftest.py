"""Shared fixtures: an isolated orchestrator home, routine files, the real CLI in a subprocess,
and a third-party plugin package built and installed for real into a private folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

HERE = Path(__file__).parent
pytest_plugins = ["aws_fixtures", "lambda_fixtures", "metadata_fixtures", "docker_fixtures", "loopback"]
REPO = HERE.parent
PLUGIN_SOURCE = HERE / "plugin_pkg"


@pytest.fixture(autouse=True)
def orchestrator_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "orchestrator-home"
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    return home


@pytest.fixture
def write_routine(tmp_path: Path) -> Callable[..., Path]:
    def write(doc: Any, name: str = "routine.json") -> Path:
        path = tmp_path / name
        if name.endswith((".yaml", ".yml")):
            import yaml

            path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
        else:
            path.write_text(json.dumps(doc, indent=2) if not isinstance(doc, str) else doc)
        return path

    return write


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the whole session, bound to loopback on a free port."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1", host
    yield f"http://{host}:{port}"
    server.stop()


def use_moto(endpoint: str, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Empty the moto server and point every boto3 client made from the environment at it."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    values = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": "us-east-1", **extra}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN",
                                                            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_RETRY_MODE",
                                                            "ORCHESTRATOR_STORE"):
            if name not in values:
                monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``orch-testkit`` installed with pip into a private folder (offline, no build isolation)."""
    target = tmp_path_factory.mktemp("plugin-site")
    install_package(PLUGIN_SOURCE, target)
    return target


def install_package(source: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index", "--no-deps",
           "--target", str(target), str(source)]
    subprocess.run(cmd, check=True, cwd=source, capture_output=True, text=True)


@pytest.fixture
def cli(plugin_site: Path, orchestrator_home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``orchestrate`` as a user would, with the test plugin installed."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        full_env = cli_env(plugin_site, orchestrator_home, env)
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=full_env, capture_output=True,
                              text=True, timeout=timeout, **kwargs)

    return run


def cli_env(plugin_site: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, ORCHESTRATOR_HOME=str(home), NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_site), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env
