"""Plugin loading as a user meets it: real packages installed with pip, the real CLI in a process.

Plugins load lazily through a cached entry-point index; a plugin that fails to load breaks nothing
but the routines that use it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import PLUGIN_SOURCE, cli_env, install_package

README = Path(__file__).resolve().parents[1] / "README.md"
BROKEN_DIST = ("orch-broken", "0.4")
BROKEN_ORIGIN = " ".join(BROKEN_DIST)
MISSING_LIBRARY = "nosuchlib_for_orchestrator_tests"
# What a process imported, printed after running the CLI in it.
PROBE = """
import json, sys
from orchestrator.cli import main
code = main({argv!r})
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def build_package(folder: Path, dist: str, version: str, modules: dict[str, str],
                  entry_points: dict[str, str]) -> Path:
    """A plugin distribution's source folder: setup.cfg, pyproject.toml and its modules."""
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text((PLUGIN_SOURCE / "pyproject.toml").read_text())
    eps = "".join(f"\n    {name} = {target}" for name, target in entry_points.items())
    (folder / "setup.cfg").write_text(
        f"[metadata]\nname = {dist}\nversion = {version}\n\n[options]\n"
        f"py_modules = {', '.join(modules)}\n\n[options.entry_points]\norchestrator ={eps}\n")
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    return folder


def executor_module(*executors: tuple[str, str]) -> str:
    """A plugin module with one executor per ``(class name, name)``, each with a task ``go``."""
    classes = "".join(f"class {cls}(Executor):\n    name = {name!r}\n\n    @task\n"
                      f"    def go(self):\n        print('{name} went')\n\n\n"
                      for cls, name in executors)
    listed = ", ".join(cls for cls, _ in executors)
    return (f"from orchestrator import Executor, hookimpl, task\n\n\n{classes}"
            f"@hookimpl\ndef register_executors():\n    return [{listed}]\n")


def one_step(executor: str, task: str) -> dict[str, Any]:
    entry = {"name": "only", "executor": executor, "tasks": [task]}
    return {"routine_name": f"uses_{executor}", "executors": [entry]}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``orch-broken``: its module needs a library that is not installed (the usual breakage)."""
    module = {"orch_broken": f"import {MISSING_LIBRARY}\n"}
    folder = tmp_path_factory.mktemp("broken-src") / "pkg"
    source = build_package(folder, "orch-broken", "0.4", module, {"broken": "orch_broken"})
    site = tmp_path_factory.mktemp("broken-site")
    install_package(source, site)
    return site


def orchestrate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def probe(env: dict[str, str], *argv: str) -> dict[str, Any]:
    """Run the CLI in a process; its exit code and every module it imported."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv))], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def plugin_modules(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(("executors.", "orch_"))]


def with_sites(plugin_site: Path, home: Path, *sites: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine that has used the orchestrator before: its home exists (the
    plugin index is cached only into an existing home)."""
    home.mkdir(exist_ok=True)
    env = cli_env(plugin_site, home, extra)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, sites), env["PYTHONPATH"]])
    return env


def listed(env: dict[str, str]) -> dict[str, Any]:
    proc = orchestrate(env, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_broken_plugin_breaks_nothing_else(broken_site, plugin_site, orchestrator_home,
                                             write_routine):
    env = with_sites(plugin_site, orchestrator_home, broken_site)
    echo = write_routine({"routine_name": "fine", "executors": [
        {"name": "hello", "executor": "echo", "tasks": [{"task": "say", "args": {"text": "hi"}}]}]})
    ran = orchestrate(env, "run", str(echo))
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    (warning,) = [line for line in ran.stderr.splitlines() if "broken" in line]
    assert f"plugin 'broken' ({BROKEN_ORIGIN}) failed to load" in warning
    assert "ModuleNotFoundError" in warning and "ORCHESTRATOR_BLOCK_PLUGINS=broken" in warning

    doc = listed(env)
    assert {"echo", "sleeper", "staging"} <= {row["name"] for row in doc["executors"]}
    (broken,) = doc["broken"]
    assert (broken["name"], broken["distribution"], broken["version"]) == ("broken", *BROKEN_DIST)
    assert f"No module named '{MISSING_LIBRARY}'" in broken["reason"]
    text = orchestrate(env, "plugins")
    assert text.returncode == 0 and "BROKEN" in text.stdout and MISSING_LIBRARY in text.stdout

    user = write_routine(one_step("broken", "go"), "user.json")
    refused = orchestrate(env, "validate", str(user))
    assert refused.returncode == 2, refused.stderr
    assert (f"executors[0].executor: executor 'broken' comes from plugin 'broken' "
            f"({BROKEN_ORIGIN}), which failed to load: ModuleNotFoundError") in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_blocked_broken_plugin_is_silent(broken_site, plugin_site, orchestrator_home):
    env = with_sites(plugin_site, orchestrator_home, broken_site,
                     ORCHESTRATOR_BLOCK_PLUGINS="broken")
    proc = orchestrate(env, "plugins", "--json")
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["broken"] == []


def test_doctor_reports_a_broken_plugin(broken_site, plugin_site, orchestrator_home):
    env = with_sites(plugin_site, orchestrator_home, broken_site)
    checked = orchestrate(env, "doctor", "--json")
    assert checked.returncode == 1
    (item,) = [item for item in json.loads(checked.stdout) if "broken" in item["subject"]]
    assert item["subject"] == f"plugin broken ({BROKEN_ORIGIN})"
    assert "ORCHESTRATOR_BLOCK_PLUGINS=broken" in item["problems"][0]


def test_a_routine_imports_only_the_plugins_it_names(plugin_site, orchestrator_home, write_routine):
    env = with_sites(plugin_site, orchestrator_home)
    path = str(write_routine(one_step("Echo", "noop")))  # by class name: the cache knows those too
    first = probe(env, "validate", path)  # the first run after an install learns who provides what
    assert first["code"] == 0
    assert "executors.staging" in first["modules"] and "orch_testkit" in first["modules"]
    second = probe(env, "validate", path)
    assert second["code"] == 0
    assert plugin_modules(second["modules"]) == ["orch_testkit"]
    for heavy in ("importlib.metadata", "jsonschema", "rich", "sqlite3", "boto3", "difflib"):
        assert heavy not in second["modules"], f"validate imported {heavy}"
    ran = probe(env, "run", path, "--quiet")
    assert ran["code"] == 0
    assert plugin_modules(ran["modules"]) == ["orch_testkit"]
    for heavy in ("importlib.metadata", "jsonschema", "rich", "socket", "uuid", "shutil"):
        assert heavy not in ran["modules"], f"run imported {heavy}"


def test_a_hook_call_imports_only_the_plugins_that_implement_it(plugin_site, orchestrator_home):
    env = with_sites(plugin_site, orchestrator_home, ORCHESTRATOR_STORE="nosuch://runs")
    for _ in range(2):  # cold, then from the cache
        listed_runs = probe(env, "runs")
        assert listed_runs["code"] == 2
    assert plugin_modules(listed_runs["modules"]) == ["executors.dynamodb_plugin"]


def test_the_catalog_hook_imports_only_the_catalog_plugin(plugin_site, orchestrator_home):
    env = with_sites(plugin_site, orchestrator_home, ORCHESTRATOR_CATALOG="nosuch://routines/")
    for _ in range(2):  # cold, then from the cache
        listing = probe(env, "routines")
        assert listing["code"] == 2
    assert plugin_modules(listing["modules"]) == ["executors.s3_catalog"]


def test_the_cache_follows_installs_and_edits(tmp_path, plugin_site, orchestrator_home,
                                              write_routine):
    site = tmp_path / "site"
    site.mkdir()
    env = with_sites(plugin_site, orchestrator_home, site)
    late = str(write_routine(one_step("late", "go"), "late.json"))
    assert orchestrate(env, "validate", late).returncode == 2  # not installed; the cache now warm

    source = build_package(tmp_path / "late-src", "orch-late", "1.0",
                           {"orch_late": executor_module(("Late", "late"))}, {"late": "orch_late"})
    install_package(source, site)
    installed = orchestrate(env, "run", late)
    assert installed.returncode == 0, installed.stderr
    assert "late went" in installed.stdout

    # An edit in place, as an editable install sees it: no pip involved.
    (site / "orch_late.py").write_text(executor_module(("Late", "late"), ("Later", "later")))
    edited = orchestrate(env, "run", str(write_routine(one_step("later", "go"), "later.json")))
    assert edited.returncode == 0, edited.stderr
    assert "later went" in edited.stdout

    for path in site.iterdir():  # uninstalled
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    gone = orchestrate(env, "validate", late)
    assert gone.returncode == 2 and "unknown executor 'late'" in gone.stderr
    assert "late" not in {row["name"] for row in listed(env)["executors"]}


def test_a_plugin_that_broke_after_it_worked_is_named_by_its_executors(
        tmp_path, plugin_site, orchestrator_home, write_routine):
    """Its entry point is not named after its executor: the cached claims say who provides it."""
    site = tmp_path / "site"
    install_package(build_package(tmp_path / "src", "orch-flaky", "1.0", {
        "orch_flaky": "import orch_flaky_dep\n" + executor_module(("Flaky", "flaky")),
        "orch_flaky_dep": "",
    }, {"flakykit": "orch_flaky"}), site)
    env = with_sites(plugin_site, orchestrator_home, site)
    flaky = str(write_routine(one_step("flaky", "go"), "flaky.json"))
    assert orchestrate(env, "run", flaky).returncode == 0
    (site / "orch_flaky_dep.py").unlink()  # its dependency was uninstalled
    shutil.rmtree(site / "__pycache__", ignore_errors=True)

    other = orchestrate(env, "run", str(write_routine(one_step("echo", "noop"), "other.json")))
    assert other.returncode == 0 and "flaky" not in other.stderr, "not used, so never loaded"
    refused = orchestrate(env, "validate", flaky)
    assert refused.returncode == 2
    assert ("executor 'flaky' comes from plugin 'flakykit' (orch-flaky 1.0), which failed to load: "
            "ModuleNotFoundError: No module named 'orch_flaky_dep'") in refused.stderr


def test_conflicts_are_found_with_a_warm_cache(tmp_path, plugin_site, orchestrator_home,
                                               write_routine):
    site = tmp_path / "site"
    module = executor_module(("OtherEcho", "echo"))
    install_package(build_package(tmp_path / "src", "orch-clash", "0.9", {"orch_clash": module},
                                  {"clash": "orch_clash"}), site)
    env = with_sites(plugin_site, orchestrator_home, site)
    path = str(write_routine(one_step("echo", "say")))
    for _ in range(2):  # cold, then from the cache
        proc = orchestrate(env, "validate", path)
        assert proc.returncode == 2
        assert "orch-testkit 1.2.3" in proc.stderr and "orch-clash 0.9" in proc.stderr


def readme_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_readme_plugin_recipe_installs_and_runs(tmp_path, plugin_site, orchestrator_home,
                                                    write_routine):
    """The README's plugin, built and installed with pip: found, run, depending on this project."""
    from importlib.metadata import packages_distributions

    source = tmp_path / "hello-plugin"
    source.mkdir()
    (source / "pyproject.toml").write_text((PLUGIN_SOURCE / "pyproject.toml").read_text())
    (source / "setup.cfg").write_text(readme_block("ini", "name = hello-plugin"))
    (source / "hello_plugin.py").write_text(readme_block("python", "class HelloExecutor"))
    site = tmp_path / "site"
    install_package(source, site)
    (metadata,) = site.glob("hello_plugin-*.dist-info/METADATA")
    required = [line.split(": ", 1)[1] for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist")]
    # an editable install may list the distribution twice (its egg-info in the source tree too)
    ours = sorted(set(packages_distributions()["orchestrator"]))
    assert required == ours, "it must require this distribution"

    env = with_sites(plugin_site, orchestrator_home, site)
    rows = {row["name"]: row for row in listed(env)["executors"]}
    assert rows["hello"]["distribution"] == "hello-plugin"
    step = {"executor": "hello", "params": {"greeting": "hi"},
            "tasks": [{"task": "greet", "args": {"who": "you"}}]}
    path = write_routine({"routine_name": "hello", "executors": [step]})
    ran = orchestrate(env, "run", str(path))
    assert ran.returncode == 0, ran.stderr
    assert "hi, you" in ran.stderr


@pytest.mark.parametrize("damage", ["not json", "[]", '{"version": 1}', "claims"])
def test_a_damaged_cache_is_read_afresh(tmp_path, damage):
    from orchestrator.plugin_index import PluginIndex
    from orchestrator.registry import Registry

    PluginIndex.load(tmp_path).save()
    (cache,) = tmp_path.glob("plugins-*.json")
    if damage == "claims":
        doc = json.loads(cache.read_text())
        doc["claims"] = {name: {"value": 3} for name in ("staging", "python")}
        cache.write_text(json.dumps(doc))
    elif damage == '{"version": 1}':
        cache.write_text(json.dumps({"version": 1, "path": json.loads(cache.read_text())["path"]}))
    else:
        cache.write_text(damage)
    registry = Registry(index=PluginIndex.load(tmp_path))
    assert registry.resolve("staging").class_name == "StagingExecutor"
    assert {"staging", "python"} <= {info.name for info in registry.executors()}


def test_the_plugin_cache_never_creates_the_home(plugin_site, orchestrator_home, write_routine):
    env = cli_env(plugin_site, orchestrator_home)
    path = str(write_routine(one_step("echo", "noop")))
    assert orchestrate(env, "validate", path).returncode == 0
    assert not orchestrator_home.exists(), "validating creates nothing"
    orchestrator_home.mkdir()
    assert orchestrate(env, "validate", path).returncode == 0
    assert [p.name for p in (orchestrator_home / "cache").iterdir()][0].startswith("plugins-")
