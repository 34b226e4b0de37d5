"""The hints are checked: mypy passes over ``orchestrator/`` and ``executors/`` (the ``[mypy]``
configuration in setup.cfg), the public API strictly, and a plugin author's checker sees real
types where ``orchestrator`` loads names lazily."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mypy`` from the project root, so setup.cfg's configuration applies."""
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


def test_mypy_finds_no_error_in_the_packages() -> None:
    done = mypy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def strict_modules() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    strict = [s for s in config.sections()
              if s.startswith("mypy-") and config[s].get("disallow_untyped_defs") == "True"]
    return {name.strip() for section in strict for name in section[len("mypy-"):].split(",")}


def test_every_module_the_public_api_exports_from_is_checked_strictly() -> None:
    """A name added to ``orchestrator``'s public API brings its module under the strict flags."""
    public = {f"orchestrator.{module}" for module in orchestrator._LAZY.values()}
    public |= {"orchestrator", "orchestrator.executor", "orchestrator.errors",
               "orchestrator.outcome", "orchestrator.events", "orchestrator.hookspecs"}
    assert public - strict_modules() == set()


def test_the_strict_flags_hold_in_the_public_modules(tmp_path: Path) -> None:
    """What the configuration promises: an unannotated function in a strict module is an error."""
    package = tmp_path / "orchestrator"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("def untyped(x):\n    return x\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
                           "--no-incremental", "orchestrator/errors.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert "errors.py:1: error: Function is missing a type annotation" in done.stdout, done.stdout


PLUGIN = """\
from orchestrator import Context, Executor, RunResult, RunStore, TaskMetrics, task


class Hello(Executor):
    @task
    def greet(self, context: Context) -> TaskMetrics:
        return TaskMetrics(total_rows="many")


reveal_type(Executor)
reveal_type(RunStore)
reveal_type(RunResult)
Executor.no_such_method()
"""


def test_a_plugin_sees_real_types_through_the_lazy_public_api(tmp_path: Path) -> None:
    """``from orchestrator import Executor`` is the class to a checker, not ``Any``: misuses are
    errors and the lazily loaded names (``RunStore``, ``RunResult``) are their classes."""
    plugin = tmp_path / "hello_plugin.py"
    plugin.write_text(PLUGIN)
    done = mypy("--no-incremental", str(plugin))
    out = done.stdout
    revealed = [line for line in out.splitlines() if "Revealed type" in line]
    assert len(revealed) == 3, out
    for line, name in zip(revealed, ("executor.Executor", "runs.store.RunStore",
                                     "events.RunResult")):
        assert f"orchestrator.{name}" in line and "Any" not in line, line
    assert 'hello_plugin.py:7: error: Argument "total_rows" to "TaskMetrics"' in out, out
    assert 'hello_plugin.py:13: error: "type[Executor]" has no attribute "no_such_method"' in out, out
    assert done.returncode == 1

