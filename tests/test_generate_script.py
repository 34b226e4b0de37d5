"""``generate --target script``: a zipapp run by a bare interpreter (``python -I -S``, a clean
environment,
none of our packages) gives the same result as a normal run."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from generate_helpers import bare_python, clean_env, demo_copy, orchestrate, summary


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("script")
    routine = demo_copy(folder / "demo")
    home = folder / "home"
    result = orchestrate("generate", str(routine), "-o", str(folder / "ship_demo.pyz"), home=home)
    assert result.returncode == 0, result.stderr
    return {"folder": folder, "routine": routine, "pyz": folder / "ship_demo.pyz", "home": home}


def run_pyz(
    built: dict[str, Path],
    *args: str,
    isolation: tuple[str, ...] = ("-I", "-S"),
    home: str = "user",
) -> subprocess.CompletedProcess[str]:
    env = clean_env(built["folder"] / home)
    return subprocess.run(
        [bare_python(), *isolation, str(built["pyz"]), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=built["folder"],
    )


def test_the_bare_interpreter_has_none_of_our_packages(built):
    probe = subprocess.run(
        [bare_python(), "-I", "-S", "-c", "import pluggy"],
        capture_output=True,
        text=True,
        env=clean_env(built["folder"] / "probe"),
    )
    assert probe.returncode != 0 and "No module named 'pluggy'" in probe.stderr


def test_the_script_gives_the_same_result_as_a_normal_run(built):
    normal_out, script_out = built["folder"] / "normal-out", built["folder"] / "script-out"
    normal = orchestrate(
        "run",
        str(built["routine"]),
        "--json",
        "--param",
        f"out={normal_out}",
        "--param",
        "greeting=bonjour",
        home=built["home"],
    )
    assert normal.returncode == 0, normal.stderr
    script = run_pyz(built, "--json", "--param", f"out={script_out}", "--param", "greeting=bonjour")
    assert script.returncode == 0, script.stderr
    expected, got = json.loads(normal.stdout), json.loads(script.stdout)
    assert got["status"] == expected["status"] == "succeeded"
    assert summary(got) == summary(expected)
    dumped = sorted(p.relative_to(script_out) for p in script_out.rglob("*.csv"))
    assert dumped == sorted(p.relative_to(normal_out) for p in normal_out.rglob("*.csv")) and dumped
    for relative in dumped:
        assert (
            (script_out / relative).read_text()
            == (normal_out / relative).read_text()
            == "name,n\nbonjour,1\n"
        )
    origin = got["tasks"][0]["metrics"]["execution_metadata"]
    cache = str(built["folder"] / "user" / ".cache" / "orchestrator" / "pyz")
    assert origin["orchestrator"].startswith(cache) and origin["pluggy"].startswith(cache)
    assert origin["yaml"].startswith(cache)


def test_the_bundled_orchestrator_wins_over_an_installed_one(built):
    """``python -I`` keeps the interpreter's site-packages, where an orchestrator may be."""
    result = run_pyz(
        built,
        "--json",
        "--param",
        f"out={built['folder'] / 'isolated-out'}",
        isolation=("-I",),
        home="user-i",
    )
    assert result.returncode == 0, result.stderr
    origin = json.loads(result.stdout)["tasks"][0]["metrics"]["execution_metadata"]
    assert origin["orchestrator"].startswith(str(built["folder"] / "user-i" / ".cache"))


def test_dry_run_prints_the_plan_and_runs_nothing(built):
    out = built["folder"] / "dry-out"
    result = run_pyz(built, "--dry-run", "--param", f"out={out}")
    assert result.returncode == 0, result.stderr
    assert "1. land [python]" in result.stdout and "2. stage [staging]  after land" in result.stdout
    assert f'parent_directory = "{out}/landing"' in result.stdout
    assert not out.exists()
    runs = run_pyz(built, "runs", "--json")
    assert runs.returncode == 0 and all(
        r["params"].get("out") != str(out) for r in json.loads(runs.stdout)
    )


def test_version_validate_and_bad_params(built):
    version = run_pyz(built, "--version")
    assert version.returncode == 0 and version.stdout.startswith("orchestrate ")
    assert run_pyz(built, "validate").returncode == 0
    bad = run_pyz(built, "--param", "nonsense")
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr


def test_the_archive_pins_what_generated_it(built):
    import importlib.metadata as metadata

    with zipfile.ZipFile(built["pyz"]) as outer:
        assert sorted(outer.namelist()) == ["__main__.py", "payload.zip"]
        with outer.open("payload.zip") as inner, zipfile.ZipFile(inner) as payload:
            app = json.loads(payload.read("app.json"))
            names = set(payload.namelist())
    assert f"pluggy=={metadata.version('pluggy')}" in app["requirements"]
    assert f"PyYAML=={metadata.version('PyYAML')}" in app["requirements"]
    assert "rpds-py" in app["native"]
    assert set(app["files"]) == {"routine.yaml", "steps.py", "lib/transforms.py"}
    assert {"routine/routine.yaml", "routine/steps.py", "routine/lib/transforms.py"} <= names
    assert any(
        n.startswith("site/lake_orchestrator-") and n.endswith(".dist-info/entry_points.txt")
        for n in names
    )
    assert built["pyz"].read_bytes().startswith(b"#!/usr/bin/env python3.")


def test_the_same_inputs_give_the_same_bytes(built, tmp_path):
    again = tmp_path / "again.pyz"
    result = orchestrate("generate", str(built["routine"]), "-o", str(again), home=built["home"])
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == built["pyz"].read_bytes()


def test_an_altered_unpacked_routine_is_refused(built):
    assert run_pyz(built, "--version", home="tamper").returncode == 0
    [folder] = (built["folder"] / "tamper" / ".cache" / "orchestrator" / "pyz").iterdir()
    (folder / "routine" / "steps.py").write_text("raise SystemExit(7)\n")
    result = run_pyz(built, "--param", f"out={built['folder'] / 'tamper-out'}", home="tamper")
    assert result.returncode == 2 and "checksum mismatch for steps.py" in result.stderr
    assert not (built["folder"] / "tamper-out").exists()


def test_detach_and_wait_work_from_the_script(built):
    out = built["folder"] / "detached-out"
    started = run_pyz(built, "--detach", "--param", f"out={out}", home="detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    waited = run_pyz(built, "wait", run_id, "--timeout", "120", home="detach")
    assert waited.returncode == 0 and f"run {run_id} succeeded" in waited.stdout
    assert (out / "dump" / "greeting.csv").read_text() == "name,n\nhello,1\n"
    shown = json.loads(run_pyz(built, "show", run_id, "--json", home="detach").stdout)
    [land] = [t for t in shown["tasks"] if t["step"] == "land"]
    origin = json.dumps(
        land
    )  # the background process ran the bundled orchestrator, not another one
    assert str(built["folder"] / "detach" / ".cache" / "orchestrator" / "pyz") in origin
