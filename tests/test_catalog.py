"""The routine catalog: publish with every file, run NAME@VERSION elsewhere, checksums, immutable
versions;
on a folder, on S3 (the moto server) and on a real HTTPS server on loopback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from catalog_server import catalog_server, self_signed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of routines/test_routine: python lands samples/*.csv, staging renames columns."""
    folder = tmp_path / "src" / "test_routine"
    shutil.copytree(
        REPO / "routines" / "test_routine",
        folder,
        ignore=shutil.ignore_patterns("work", "__pycache__"),
    )
    return folder / "routine_config.json"


def dump_contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((folder / "work" / "dump").rglob("*.csv"))}


def publish(cli, routine: Path, env: dict[str, str], *extra: str) -> str:
    result = cli("publish", str(routine), "--include", "samples", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def fetched_folder(home: Path, name: str, version: str) -> Path:
    [folder] = home.glob(f"catalog/*/{name}/{version}")
    return folder


def blob(catalog: Path, text_file: Path) -> Path:
    return catalog / "_artifacts" / "sha256" / hashlib.sha256(text_file.read_bytes()).hexdigest()


def test_publish_then_run_by_version_elsewhere_gives_the_same_result(
    cli, source, tmp_path, orchestrator_home
):
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    direct = cli("run", str(source), env=env)
    assert direct.returncode == 0, direct.stderr
    expected = dump_contents(source.parent)
    assert len(expected) == 3 and all(text.startswith("name,age,job") for text in expected.values())
    assert publish(cli, source, env) == "test_routine@1"
    assert publish(cli, source, env) == "test_routine@2"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("run", "test_routine@1", "--json", env=env, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
    assert dump_contents(fetched_folder(orchestrator_home, "test_routine", "1")) == expected
    assert cli("validate", "test_routine@latest", env=env).returncode == 0
    plan = json.loads(cli("plan", "test_routine@2", "--json", env=env).stdout)
    assert [s["step"] for s in plan["steps"]] == ["prepare_demo", "stage_samples"]


def test_the_manifest_lists_every_file_the_routine_names_with_checksums(cli, source, tmp_path):
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    result = cli("publish", str(source), "--json", "--verbose", "--include", "samples", env=env)
    files = json.loads(result.stdout)["files"]
    assert "validating" in result.stderr and "stored transforms.py (sha256 " in result.stderr
    assert "published test_routine@1" in result.stderr
    assert set(files) == {
        "routine_config.json",
        "demo.py",
        "transforms.py",
        "samples/people_1.csv",
        "samples/people_2.csv",
        "samples/people_3.csv",
    }
    assert (
        files["transforms.py"]
        == hashlib.sha256((source.parent / "transforms.py").read_bytes()).hexdigest()
    )
    manifest = json.loads(
        (tmp_path / "catalog" / "test_routine" / "1" / "manifest.json").read_text()
    )
    assert (
        manifest["routine"] == "routine_config.json"
        and manifest["files"]["demo.py"]["sha256"] == files["demo.py"]
    )
    for sha in files.values():
        assert (tmp_path / "catalog" / "_artifacts" / "sha256" / sha).is_file()


def test_files_outside_the_routine_folder_keep_their_relative_place(cli, tmp_path, write_routine):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "steps.py").write_text("def hello():\n    return None\n")
    folder = tmp_path / "daily"
    folder.mkdir()
    routine = folder / "routine.json"
    routine.write_text(
        json.dumps(
            {
                "routine_name": "daily",
                "executors": [
                    {
                        "name": "hello",
                        "executor": "python",
                        "params": {"path": "../shared/steps.py"},
                        "tasks": [{"task": "call", "args": {"function": "hello"}}],
                    }
                ],
            }
        )
    )
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    result = cli("publish", str(routine), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["files"]) == {"daily/routine.json", "shared/steps.py"}
    assert cli("run", "daily@1", env=env).returncode == 0


def test_versions_are_never_overwritten(cli, source, tmp_path):
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    assert publish(cli, source, env, "--version", "2026.11") == "test_routine@2026.11"
    manifest = tmp_path / "catalog" / "test_routine" / "2026.11" / "manifest.json"
    before = manifest.read_bytes()
    (source.parent / "transforms.py").write_text(
        "# changed\n" + (source.parent / "transforms.py").read_text()
    )
    again = cli("publish", str(source), "--version", "2026.11", "--include", "samples", env=env)
    assert again.returncode == 2
    assert (
        "test_routine@2026.11 already exists" in again.stderr
        and "never overwritten" in again.stderr
    )
    assert manifest.read_bytes() == before
    assert publish(cli, source, env) == "test_routine@1"  # the next integer


def test_routines_lists_names_and_versions_and_latest_is_the_highest(
    cli, source, tmp_path, write_routine
):
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    for version in ("9", "10", "2"):
        publish(cli, source, env, "--version", version)
    other = write_routine({"routine_name": "other", "executors": {"echo": {"tasks": ["noop"]}}})
    assert cli("publish", str(other), env=env).stdout.strip() == "other@1"
    listing = json.loads(cli("routines", "--json", env=env).stdout)
    assert listing["routines"] == {"other": ["1"], "test_routine": ["2", "9", "10"]}
    versions = json.loads(cli("routines", "test_routine", "--json", env=env).stdout)["versions"]
    assert [v["version"] for v in versions] == ["2", "9", "10"] and all(
        v["files"] == 6 for v in versions
    )
    plain = cli("routines", env=env).stdout
    assert "test_routine  latest 10  versions: 2, 9, 10" in plain
    plan = json.loads(cli("plan", "test_routine@latest", "--json", env=env).stdout)
    assert "/test_routine/10/" in plan["steps"][0]["params"]["path"]


def test_a_tampered_artifact_is_refused_before_anything_runs(
    cli, source, tmp_path, orchestrator_home
):
    catalog = tmp_path / "catalog"
    env = {"ORCHESTRATOR_CATALOG": str(catalog)}
    publish(cli, source, env)
    marker = tmp_path / "tampered-code-ran"
    blob(catalog, source.parent / "demo.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef prepare():\n    pass\n"
    )
    result = cli("run", "test_routine@1", env=env)
    assert result.returncode == 2
    assert (
        "test_routine@1: checksum mismatch for demo.py" in result.stderr
        and "nothing ran" in result.stderr
    )
    assert not marker.exists()
    assert json.loads(cli("runs", "--json", env=env).stdout) == []


def test_a_missing_artifact_is_refused(cli, source, tmp_path):
    catalog = tmp_path / "catalog"
    env = {"ORCHESTRATOR_CATALOG": str(catalog)}
    publish(cli, source, env)
    blob(catalog, source.parent / "transforms.py").unlink()
    result = cli("validate", "test_routine@1", env=env)
    assert (
        result.returncode == 2
        and "artifact transforms.py" in result.stderr
        and "is missing" in result.stderr
    )


def test_a_local_copy_altered_after_fetching_is_fetched_again(
    cli, source, tmp_path, orchestrator_home
):
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    publish(cli, source, env)
    assert cli("validate", "test_routine@1", env=env).returncode == 0
    copy = fetched_folder(orchestrator_home, "test_routine", "1") / "transforms.py"
    copy.write_text("raise SystemExit('altered')\n")
    assert cli("run", "test_routine@1", env=env).returncode == 0
    assert copy.read_bytes() == (source.parent / "transforms.py").read_bytes()


def test_a_catalog_that_changes_a_published_manifest_is_refused(cli, source, tmp_path):
    catalog = tmp_path / "catalog"
    env = {"ORCHESTRATOR_CATALOG": str(catalog)}
    publish(cli, source, env)
    assert cli("validate", "test_routine@1", env=env).returncode == 0
    manifest = catalog / "test_routine" / "1" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["published"] = "2020-01-01T00:00:00+00:00"
    manifest.write_text(json.dumps(doc))
    result = cli("validate", "test_routine@1", env=env)
    assert (
        result.returncode == 2
        and "different manifest than when this version was first fetched" in result.stderr
    )


def test_unknown_versions_and_names_say_what_exists(cli, source, tmp_path):
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    publish(cli, source, env)
    missing = cli("run", "test_routine@5", env=env)
    assert missing.returncode == 2 and "test_routine@5: not in the catalog" in missing.stderr
    assert "versions: 1" in missing.stderr
    unknown = cli("run", "nothing@latest", env=env)
    assert (
        unknown.returncode == 2
        and "no routine 'nothing'" in unknown.stderr
        and "routines: test_routine" in unknown.stderr
    )


def test_a_file_named_by_an_absolute_path_cannot_be_published(cli, tmp_path, write_routine):
    code = tmp_path / "elsewhere" / "steps.py"
    code.parent.mkdir()
    code.write_text("def hello():\n    return None\n")
    routine = write_routine(
        {
            "routine_name": "absolute",
            "executors": [
                {
                    "name": "hello",
                    "executor": "python",
                    "params": {"path": str(code)},
                    "tasks": [{"task": "call", "args": {"function": "hello"}}],
                }
            ],
        }
    )
    result = cli("publish", str(routine), env={"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")})
    assert result.returncode == 2
    assert (
        "executors[0].params.path: names" in result.stderr
        and "by an absolute path" in result.stderr
    )
    assert not (tmp_path / "catalog" / "absolute").exists()


def test_an_invalid_routine_is_not_published(cli, tmp_path, write_routine):
    routine = write_routine({"routine_name": "bad", "executors": {"echo": {"tasks": ["nope"]}}})
    result = cli("publish", str(routine), env={"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")})
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr
    assert not (tmp_path / "catalog").exists()


def test_catalog_on_s3(cli, source, s3, orchestrator_home):
    s3.create_bucket(Bucket="acme-routines")
    env = {"ORCHESTRATOR_CATALOG": "s3://acme-routines/catalog/"}
    assert publish(cli, source, env) == "test_routine@1"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="acme-routines")["Contents"]}
    assert "catalog/test_routine/1/manifest.json" in keys
    assert sum(k.startswith("catalog/_artifacts/sha256/") for k in keys) == 6
    assert json.loads(cli("routines", "--json", env=env).stdout)["routines"] == {
        "test_routine": ["1"]
    }
    again = cli("publish", str(source), "--version", "1", "--include", "samples", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    result = cli("run", "test_routine@1", env=env)
    assert result.returncode == 0, result.stderr
    assert len(dump_contents(fetched_folder(orchestrator_home, "test_routine", "1"))) == 3
    sha = hashlib.sha256((source.parent / "transforms.py").read_bytes()).hexdigest()
    s3.put_object(
        Bucket="acme-routines", Key=f"catalog/_artifacts/sha256/{sha}", Body=b"import os\n"
    )
    shutil.rmtree(orchestrator_home / "catalog")
    tampered = cli("run", "test_routine@1", env=env)
    assert tampered.returncode == 2 and "checksum mismatch for transforms.py" in tampered.stderr


def test_catalog_on_a_real_https_server(cli, source, tmp_path, orchestrator_home):
    cert, key = self_signed(tmp_path)
    with catalog_server(tmp_path / "served", tls=(cert, key), token="s3cret") as server:
        env = {
            "ORCHESTRATOR_CATALOG": server.url,
            "SSL_CERT_FILE": str(cert),
            "ORCHESTRATOR_CATALOG_TOKEN": "s3cret",
        }
        assert server.url.startswith("https://127.0.0.1:")
        assert publish(cli, source, env) == "test_routine@1"
        assert ("PUT", "/catalog/test_routine/1/manifest.json") in server.requests
        assert json.loads(cli("routines", "--json", env=env).stdout)["routines"] == {
            "test_routine": ["1"]
        }
        again = cli("publish", str(source), "--version", "1", "--include", "samples", env=env)
        assert again.returncode == 2 and "already exists" in again.stderr
        result = cli("run", "test_routine@latest", env=env)
        assert result.returncode == 0, result.stderr
        assert len(dump_contents(fetched_folder(orchestrator_home, "test_routine", "1"))) == 3
        untrusted = cli("routines", env={**env, "SSL_CERT_FILE": ""})
        assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        unauthorised = cli("routines", env={**env, "ORCHESTRATOR_CATALOG_TOKEN": "wrong"})
        assert unauthorised.returncode == 2 and "HTTP 401" in unauthorised.stderr
        blob(tmp_path / "served" / "catalog", source.parent / "demo.py").write_text(
            "raise SystemExit(9)\n"
        )
        shutil.rmtree(orchestrator_home / "catalog")
        tampered = cli("run", "test_routine@1", env=env)
        assert tampered.returncode == 2 and "checksum mismatch for demo.py" in tampered.stderr
