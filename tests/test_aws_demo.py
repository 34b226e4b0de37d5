"""The README's AWS demo runs end to end against its own moto server on loopback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "routines" / "aws_demo" / "run_demo.py"


def test_aws_demo_runs_every_step(tmp_path):
    proc = subprocess.run([sys.executable, str(DEMO), "--json"], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "ORCHESTRATOR_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    tasks = {(t["step"], t["task"]): t for t in result["tasks"]}
    assert result["status"] == "succeeded"
    assert all(t["status"] == "succeeded" for t in tasks.values()), tasks
    assert ("query", "repair_table") in tasks
    assert tasks[("stage_people", "transfer")]["metrics"]["total_rows"] == 3
    assert tasks[("load_warehouse", "copy_from_s3")]["metrics"]["inserts"] == 5
    # the run is in the store the user's own commands read, and the summary says how to look at it
    assert f"orchestrate show {result['run_id']}" in proc.stderr and "does not execute SQL" in proc.stderr
    shown = subprocess.run([sys.executable, "-m", "orchestrator.cli", "show", result["run_id"]], capture_output=True,
                           text=True, env={**__import__("os").environ, "ORCHESTRATOR_HOME": str(tmp_path)})
    assert shown.returncode == 0 and "load_warehouse" in shown.stdout, shown.stderr
