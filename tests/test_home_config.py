"""The home config: file, environment overrides, `config show` sources, `config set`, bad files."""

from __future__ import annotations

import json

import pytest


def show(cli, **env):
    result = cli("config", "show", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_show_says_where_each_value_comes_from(cli, orchestrator_home):
    orchestrator_home.mkdir(parents=True, exist_ok=True)
    file = orchestrator_home / "config.json"
    file.write_text(
        json.dumps(
            {"catalog": "s3://acme/routines/", "docker": {"registry": "registry.local:5000"}}
        )
    )
    doc = show(cli, ORCHESTRATOR_DOCKER_BASE_IMAGE="python:3.11-slim@sha256:abc")
    settings = doc["settings"]
    assert doc["file"] == str(file)
    assert settings["catalog"] == {"value": "s3://acme/routines/", "source": str(file)}
    assert settings["artifacts"] == {
        "value": "s3://acme/routines/_artifacts/",
        "source": "default (beside the catalog)",
    }
    assert settings["docker.registry"]["source"] == str(file)
    assert settings["docker.base_image"] == {
        "value": "python:3.11-slim@sha256:abc",
        "source": "env ORCHESTRATOR_DOCKER_BASE_IMAGE",
    }
    assert settings["docker.run_options"] == {"value": None, "source": "unset"}
    text = cli("config", "show", env={"ORCHESTRATOR_DOCKER_BASE_IMAGE": "python:3.11-slim"}).stdout
    assert (
        "catalog" in text and f"({file})" in text and "(env ORCHESTRATOR_DOCKER_BASE_IMAGE)" in text
    )


def test_environment_overrides_the_file(cli, orchestrator_home):
    orchestrator_home.mkdir(parents=True, exist_ok=True)
    (orchestrator_home / "config.json").write_text(json.dumps({"catalog": "/from/file"}))
    settings = show(cli, ORCHESTRATOR_CATALOG="https://catalog.example/api/")["settings"]
    assert settings["catalog"] == {
        "value": "https://catalog.example/api/",
        "source": "env ORCHESTRATOR_CATALOG",
    }


def test_set_and_unset_edit_the_file_and_keep_the_rest(cli, orchestrator_home):
    assert cli("config", "set", "catalog", "s3://acme/routines/").returncode == 0
    result = cli("config", "set", "docker.run_options", '["--network", "host"]')
    assert result.returncode == 0, result.stderr
    assert cli("config", "set", "docker.base_image", "python:3.11-slim").returncode == 0
    file = orchestrator_home / "config.json"
    assert json.loads(file.read_text()) == {
        "catalog": "s3://acme/routines/",
        "docker": {"run_options": ["--network", "host"], "base_image": "python:3.11-slim"},
    }
    assert cli("config", "unset", "docker.run_options").returncode == 0
    assert cli("config", "unset", "docker.base_image").returncode == 0
    assert json.loads(file.read_text()) == {"catalog": "s3://acme/routines/"}
    assert show(cli)["settings"]["catalog"]["source"] == str(file)


def test_run_options_as_one_shell_string(cli):
    settings = show(cli, ORCHESTRATOR_DOCKER_RUN_OPTIONS="--network host --label 'a b'")["settings"]
    assert settings["docker.run_options"]["value"] == ["--network", "host", "--label", "a b"]


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"catalog": "s3://x/",}', "invalid JSON at line 1"),
        (json.dumps({"catalogue": "s3://x/"}), "unknown key 'catalogue'; did you mean 'catalog'?"),
        (json.dumps({"catalog": 5}), "catalog must be a non-empty string"),
        (
            json.dumps({"docker": {"run_options": [1]}}),
            "docker.run_options must be a list of strings",
        ),
        (
            json.dumps({"docker": {"registy": "r"}}),
            "unknown key 'docker.registy'; did you mean 'docker.registry'?",
        ),
        (
            json.dumps({"docker": "python:3.11"}),
            "docker must be an object with base_image, registry, run_options",
        ),
        (json.dumps(["catalog"]), "the config must be a JSON object"),
    ],
    ids=["json", "unknown-key", "type", "list-type", "nested-unknown", "not-object", "array"],
)
def test_a_malformed_config_file_is_exit_2_naming_file_and_key(
    cli, orchestrator_home, content, expected
):
    orchestrator_home.mkdir(parents=True, exist_ok=True)
    file = orchestrator_home / "config.json"
    file.write_text(content)
    for args in (
        ("config", "show"),
        ("routines",),
        ("config", "set", "docker.registry", "r.local"),
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(f"{file}: "), result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
    assert file.read_text() == content  # set refused before writing


def test_a_malformed_override_names_the_variable(cli):
    result = cli("config", "show", env={"ORCHESTRATOR_DOCKER_RUN_OPTIONS": "--label 'unclosed"})
    assert result.returncode == 2
    assert "environment variable ORCHESTRATOR_DOCKER_RUN_OPTIONS" in result.stderr


def test_set_refuses_unknown_keys(cli, orchestrator_home):
    result = cli("config", "set", "catalgo", "s3://x/")
    assert (
        result.returncode == 2
        and "unknown config key 'catalgo'; did you mean 'catalog'?" in result.stderr
    )
    assert not (orchestrator_home / "config.json").exists()


def test_running_a_file_never_reads_the_config(cli, orchestrator_home, write_routine):
    orchestrator_home.mkdir(parents=True, exist_ok=True)
    (orchestrator_home / "config.json").write_text("{broken")
    routine = write_routine({"routine_name": "r", "executors": {"echo": {"tasks": ["noop"]}}})
    result = cli("validate", str(routine))
    assert result.returncode == 0, result.stderr


def test_catalog_commands_without_a_catalog_say_how_to_set_one(cli):
    result = cli("routines")
    assert result.returncode == 2
    assert "no catalog is configured" in result.stderr and "ORCHESTRATOR_CATALOG" in result.stderr


def test_a_routine_file_costs_no_catalog_or_generate_imports(write_routine, tmp_path):
    import subprocess
    import sys

    routine = write_routine(
        {
            "routine_name": "r",
            "executors": {
                "staging": {
                    "params": {
                        "parent_directory": str(tmp_path),
                        "dump_directory": str(tmp_path / "d"),
                    },
                    "tasks": ["transfer"],
                }
            },
        }
    )
    probe = (
        "import sys; from orchestrator.cli import main; main(['validate', sys.argv[1]]); "
        "print(sorted(m for m in sys.modules if m.startswith(('orchestrator.catalog.', "
        "'orchestrator.generate.', 'orchestrator.home_config', 'urllib.request', 'boto3'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(routine)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.strip().splitlines()[-1]
    assert loaded == "[]", loaded
