"""Land one CSV and say which orchestrator, PyYAML and pluggy this process imported (in_process)."""

from __future__ import annotations

import os
import sys

import orchestrator
from orchestrator import TaskMetrics


def land(out: str, greeting: str) -> TaskMetrics:
    os.makedirs(os.path.join(out, "landing"), exist_ok=True)
    with open(os.path.join(out, "landing", "greeting.csv"), "w") as handle:
        handle.write(f"column1,column2\n{greeting},1\n")
    modules = {
        name: getattr(sys.modules.get(name), "__file__", None) for name in ("yaml", "pluggy")
    }
    return TaskMetrics(
        total_rows=1, execution_metadata={"orchestrator": orchestrator.__file__, **modules}
    )
