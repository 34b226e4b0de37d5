"""Per-task cost of the engine, with and without run tracking: routines of 1 and N no-op tasks,
whole processes, against a plain loop calling the same method with `getattr`.

    python bench/bench_overhead.py [--tasks 1000] [--repeat 11] [--python OTHER_VENV/bin/python ...]

The cost per task is the difference between the N-task and the 1-task routine divided by N - 1:
start-up cancels out, what remains is validation, planning, events and records of one more task.
Each variant runs in fresh processes, interleaved with the others (`--python` adds interpreters,
another checkout's virtualenv say, measured in the same run).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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


def timed(python: str, code: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # from a neutral folder: `python -c` would import the orchestrator of a checkout it runs in
    subprocess.run([python, "-c", code], check=True, env=env, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def routine(folder: str, tasks: int) -> str:
    path = Path(folder, f"noop-{tasks}.json")
    path.write_text(json.dumps({"routine_name": f"noop_{tasks}", "executors": [
        {"name": "noop", "executor": "noop", "tasks": ["nothing"] * tasks}]}))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter to measure alongside")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-overhead-")
    Path(folder, "bench_noop_plugin.py").write_text(PLUGIN)
    one, many = routine(folder, 1), routine(folder, args.tasks)
    pythons = [sys.executable, *args.python]
    env = {python: dict(os.environ, ORCHESTRATOR_HOME=str(Path(folder, f"home-{n}")))
           for n, python in enumerate(pythons)}
    for python_env in env.values():
        python_env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users have it: compiled modules cached
        python_env.pop("ORCHESTRATOR_STORE", None)
    cases = {"loop": BASELINE.format(folder=folder, tasks=args.tasks)}
    for track in (False, True):
        for label, path in (("1", one), ("N", many)):
            cases[f"{track}-{label}"] = RUNNER.format(folder=folder, routine=path, track=track)
    for python in pythons:  # warm-up: compiled modules, plugin index, run store
        for code in cases.values():
            timed(python, code, env[python])
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for case, code in cases.items():
            for python in pythons:
                times.setdefault((python, case), []).append(timed(python, code, env[python]))
    wall = {key: statistics.median(w for w, _ in values) for key, values in times.items()}
    cpu = {key: statistics.median(c for _, c in values) for key, values in times.items()}
    print(f"{args.tasks} no-op tasks in one step, medians of {args.repeat} whole processes "
          "(interleaved); wall (CPU)")
    for python in pythons:
        loop = wall[(python, "loop")]
        loop_cpu = cpu[(python, "loop")]
        print(f"\n{python}\n  plain getattr loop: {loop * 1000:.1f} ms ({loop_cpu * 1000:.1f})")
        for track in (False, True):
            one, many = (python, f"{track}-1"), (python, f"{track}-N")
            label = "with run tracking (SQLite store)" if track else "without run tracking"
            per_task = (wall[many] - wall[one]) / (args.tasks - 1) * 1e6
            per_task_cpu = (cpu[many] - cpu[one]) / (args.tasks - 1) * 1e6
            print(f"  {label}: 1 task {wall[one] * 1000:.1f} ms, {args.tasks} tasks "
                  f"{wall[many] * 1000:.1f} ms -> {per_task:.1f} us per task ({per_task_cpu:.1f}); "
                  f"against the loop, start-up included: "
                  f"{(wall[many] - loop) / args.tasks * 1e6:.1f} us")


if __name__ == "__main__":
    main()
