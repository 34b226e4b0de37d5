"""Shared by the generate tests: an interpreter with none of our packages, a clean environment,
and the generate command run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEMO = HERE / "generate_demo"


def bare_python() -> str:
    """The interpreter this venv was made from: with ``-I -S`` it sees no site-packages at all."""
    return getattr(sys, "_base_executable", None) or sys.executable


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what a cron job would have: no PYTHONPATH, no venv, a home of its own."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NO_COLOR": "1", **extra}


def demo_copy(folder: Path) -> Path:
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder / "routine.yaml"


def orchestrate(
    *args: str,
    home: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, ORCHESTRATOR_HOME=str(home), NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(result: dict[str, Any]) -> list[tuple[str, str, str, int | None]]:
    return [
        (t["step"], t["task"], t["status"], (t["metrics"] or {}).get("total_rows"))
        for t in result["tasks"]
    ]
