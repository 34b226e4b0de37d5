"""Where the orchestrator keeps what must outlive a run: state, run records, logs."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import EnvironmentProblem


def home_path() -> Path:
    """``$ORCHESTRATOR_HOME`` or ``~/.orchestrator``, whether it exists or not."""
    return Path(os.environ.get("ORCHESTRATOR_HOME") or Path.home() / ".orchestrator").expanduser()


def home_dir() -> Path:
    """``$ORCHESTRATOR_HOME`` or ``~/.orchestrator``, created on first use."""
    path = home_path()
    try:
        # exist_ok: several processes may create it at once on a first run.
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise EnvironmentProblem(f"orchestrator home {path}: cannot create it ({reason}); make its "
                                 "parent writable or set ORCHESTRATOR_HOME elsewhere") from None
    return path
