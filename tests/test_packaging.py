"""What gets published: the distribution's own name, type information, the public API."""
from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import orchestrator

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTION = "lake-orchestrator"
TAKEN_ON_PYPI = {"orchestrator", "executors"}  # other projects' distributions


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The project's wheel, built for real (offline, no build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--wheel-dir", str(out), str(REPO)],
                   check=True, capture_output=True)
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def test_the_distribution_has_a_name_of_its_own(wheel):
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    lines = wheel.read(metadata).decode().splitlines()
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    assert fields["Name"] == DISTRIBUTION and DISTRIBUTION not in TAKEN_ON_PYPI
    dist_info = DISTRIBUTION.replace("-", "_")
    packages = {name.split("/")[0] for name in wheel.namelist() if not name.startswith(dist_info)}
    assert packages == {"orchestrator", "executors"}, "the import packages keep their names"
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "orchestrate = orchestrator.cli:main" in wheel.read(entry_points).decode()


def test_the_packages_say_they_are_typed(wheel):
    assert {"orchestrator/py.typed", "executors/py.typed"} <= set(wheel.namelist())


def test_every_public_name_is_visible_to_type_checkers():
    """Each name in ``__all__`` is bound by an import a type checker follows (at run time or under
    ``TYPE_CHECKING``), so none of them is ``Any`` to it."""
    tree = ast.parse((REPO / "orchestrator" / "__init__.py").read_text())
    bound = {"__version__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 1:
            bound.update(alias.asname or alias.name for alias in node.names)
    assert set(orchestrator.__all__) <= bound, set(orchestrator.__all__) - bound


def test_the_public_api_is_importable_and_is_the_real_thing():
    from orchestrator.events import Listener, RunResult
    from orchestrator.executor import Executor
    from orchestrator.runs import RunStore

    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
    names = ("Executor", "Listener", "RunResult", "RunStore")
    assert [getattr(orchestrator, n) for n in names] == [Executor, Listener, RunResult, RunStore]
    assert {"Listener", "RunResult", "RunStore"} <= set(dir(orchestrator))


def test_importing_the_package_stays_light():
    heavy = ("pluggy", "sqlite3", "jsonschema", "rich")
    code = f"import sys, orchestrator\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
