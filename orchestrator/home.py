"""Where the orchestrator keeps what must outlive a run: state, run records, logs."""
from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """``$ORCHESTRATOR_HOME`` or ``~/.orchestrator``, created on first use."""
    path = Path(os.environ.get("ORCHESTRATOR_HOME") or Path.home() / ".orchestrator").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
