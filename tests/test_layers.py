"""The layering rules of DESIGN.md, checked on the source: a violation fails here, not in review."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "orchestrator"
ADAPTERS = ("orchestrator.cli", "orchestrator.aws_lambda")
# Entry points that exist to start another adapter: the generated zipapp's __main__ runs the CLI.
LAUNCHERS = {"orchestrator.generate.pyz_main": ("orchestrator.cli",)}
HEAVY = ("boto3", "botocore", "docker", "sqlalchemy", "psycopg", "pymysql", "pyarrow", "duckdb")
# Optional libraries the core may use, but only inside the function that needs them: a run that
# does not use them (lineage unconfigured) never imports them.
LAZY = ("openlineage",)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved, at any depth (function bodies too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def core_modules() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py"))
            if not module_name(p).startswith(ADAPTERS)]


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: module_name(p))
def test_the_core_imports_no_executor_adapter_or_heavy_library(path: Path) -> None:
    allowed = LAUNCHERS.get(module_name(path), ())
    bad = sorted(n for n in imported(path) if under(n, ("executors", *ADAPTERS, *HEAVY)) and not under(n, allowed))
    assert not bad, f"{module_name(path)} imports {bad}"


def imported_at_start(path: Path) -> set[str]:
    """The modules a file imports when it is imported: its top level, not its function bodies."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: module_name(p))
def test_the_core_imports_optional_libraries_only_where_they_are_used(path: Path) -> None:
    bad = sorted(n for n in imported_at_start(path) if under(n, LAZY))
    assert not bad, f"{module_name(path)} imports {bad} at start-up"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_do_not_import_each_other(adapter: str) -> None:
    others = tuple(a for a in ADAPTERS if a != adapter)
    folder = ROOT / adapter.split(".")[1]
    bad = {module_name(p): sorted(n for n in imported(p) if under(n, others)
                                  and not under(n, LAUNCHERS.get(module_name(p), ())))
           for p in folder.rglob("*.py")}
    assert not any(bad.values()), bad


def test_the_rule_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    """A checker that missed `from ..cli import x` inside a function would pass everything."""
    probe = ROOT / "runs" / "_layer_probe.py"
    probe.write_text("def f():\n    from ..cli import app\n    import boto3\n")
    try:
        assert {"orchestrator.cli.app", "boto3"} <= imported(probe)
    finally:
        probe.unlink()
