"""Per-task overhead of the engine, with and without run tracking: N no-op tasks against a plain loop.

    python bench/bench_overhead.py [--tasks 1000] [--repeat 5]

Both sides run as fresh processes; the difference, divided by N, is the orchestrator's cost per task
(loading the routine, validation, planning, events, records).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLUGIN = '''
from orchestrator import Executor, hookimpl, task

class Noop(Executor):
    name = "noop"

    @task
    def nothing(self):
        return None

@hookimpl
def register_executors():
    return [Noop]
'''

BASELINE = '''
import sys
sys.path.insert(0, {folder!r})
from bench_noop_plugin import Noop
instance = Noop()
for _ in range({tasks}):
    getattr(instance, "nothing")()
'''

RUNNER = '''
import sys
sys.path.insert(0, {folder!r})
import bench_noop_plugin
from orchestrator.registry import Registry
from orchestrator.api import Orchestrator
registry = Registry()
registry.register(bench_noop_plugin)
result = Orchestrator(registry).run({routine!r}, track={track})
assert result.status == "succeeded", result.status
'''


def timed(code: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-overhead-")
    Path(folder, "bench_noop_plugin.py").write_text(PLUGIN)
    routine = Path(folder, "noop.json")
    routine.write_text(json.dumps({"routine_name": "noop", "executors": [
        {"name": "noop", "executor": "noop", "tasks": ["nothing"] * args.tasks}]}))
    os.environ.setdefault("ORCHESTRATOR_HOME", str(Path(folder, "home")))
    base = statistics.median(timed(BASELINE.format(folder=folder, tasks=args.tasks), args.repeat))
    print(f"{args.tasks} no-op tasks, medians of {args.repeat} whole processes; plain loop {base * 1000:.1f} ms")
    for track in (False, True):
        ours = statistics.median(timed(RUNNER.format(folder=folder, routine=str(routine), track=track), args.repeat))
        per_task = (ours - base) / args.tasks * 1e6
        label = "with run tracking (SQLite store)" if track else "without run tracking"
        print(f"  {label}: {ours * 1000:.1f} ms, overhead {per_task:.1f} us per task (start-up, validation, planning included)")


if __name__ == "__main__":
    main()
