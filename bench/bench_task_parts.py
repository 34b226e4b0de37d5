"""Where a tracked task's instructions go: validation, engine, recorder, run store, renderer.

    python bench/bench_task_parts.py [--python OTHER_VENV/bin/python ...]   # needs valgrind

Each part runs alone in a whole process for 1 and for N no-op tasks under callgrind; the
difference / (N - 1) is that part's cost per task. The recorder and the renderer are fed the
engine's events by a plain loop (the loop's own cost is included); the run store is given its
records (status a ``Status``, as the recorder gives it) in batches of 200, as group commit
writes them in a quick step. Instructions, unlike time, do not move with the machine's load;
the recorder's real batches depend on time (a timer flushes them), so the end-to-end figures
of `bench_instructions.py` vary a little with speed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_instructions import instructions  # noqa: E402
from bench_overhead import PLUGIN  # noqa: E402
from bench_startup import noop_routine  # noqa: E402

PARTS = {
    "validation (load_routine)": '''
import sys; sys.path.insert(0, {folder!r})
import bench_noop_plugin
from orchestrator.registry import Registry
from orchestrator.routine.load import load_routine
registry = Registry(); registry.register(bench_noop_plugin)
load_routine({routine!r}, {{}}, registry)
''',
    "validation + engine (untracked)": '''
import sys; sys.path.insert(0, {folder!r})
import bench_noop_plugin
from orchestrator.registry import Registry
from orchestrator.routine.load import load_routine
from orchestrator.engine import Run, plan
registry = Registry(); registry.register(bench_noop_plugin)
assert Run(plan(load_routine({routine!r}, {{}}, registry))).execute().status == "succeeded"
''',
    "recorder (no store writes)": '''
import time
from orchestrator.events import SUCCEEDED, TaskResult
from orchestrator.runs.recorder import RunRecorder
from orchestrator.runs.store import RunRecord, RunStore
class Null(RunStore):
    def record_tasks(self, tasks): pass
record = RunRecord(run_id="0f1e2d3c-aaaa-bbbb-cccc-111122223333", routine="x")
recorder = RunRecorder(Null(), record, step_sizes=[{tasks}])
for index in range({tasks}):
    result = TaskResult("noop", "noop", "nothing", index, 0)
    result.started, result.attempts = time.time(), 1
    recorder.task_started(result)
    result.status, result.ended = SUCCEEDED, time.time()
    recorder.task_finished(result)
''',
    "SQLite store (record_tasks)": '''
import tempfile, time
from orchestrator.events import SUCCEEDED
from orchestrator.runs.store import RunRecord, SQLiteStore, TaskRecord
run = "0f1e2d3c-aaaa-bbbb-cccc-111122223333"
store = SQLiteStore(tempfile.mkdtemp() + "/runs.sqlite")
store.start_run(RunRecord(run_id=run, routine="x"))
records = [TaskRecord(f"{{run}}:0.{{i}}.1", run, "noop", "noop", "nothing", 0, i, 1, SUCCEEDED,
                      time.time(), time.time()) for i in range({tasks})]
for start in range(0, {tasks}, 200):
    store.record_tasks(records[start:start + 200])
''',
    "plain renderer (two lines a task)": '''
import os, time
from orchestrator.cli.render import PlainRenderer
from orchestrator.events import SUCCEEDED, TaskResult
renderer = PlainRenderer(open(os.devnull, "w"))
for index in range({tasks}):
    result = TaskResult("noop", "noop", "nothing", index, 0)
    result.started, result.attempts = time.time(), 1
    renderer.task_started(result)
    result.status, result.ended = SUCCEEDED, time.time()
    renderer.task_finished(result)
''',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[], help="another interpreter")
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-task-parts-"))
    (folder / "bench_noop_plugin.py").write_text(PLUGIN)
    routines = {1: noop_routine(folder, 1), args.tasks: noop_routine(folder, args.tasks)}
    env = dict(os.environ, PYTHONMALLOC="malloc", ORCHESTRATOR_HOME=str(folder / "home"))
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "ORCHESTRATOR_STORE"):
        env.pop(name, None)
    for python in [sys.executable, *args.python]:
        print(f"\n{python}")
        for label, code in PARTS.items():
            counts = [instructions([python, "-c", code.format(folder=str(folder), tasks=n,
                                                              routine=str(routines[n]))], env)
                      for n in (1, args.tasks)]
            per_task = (counts[1] - counts[0]) / (args.tasks - 1)
            print(f"  {label:36} {per_task / 1e3:7.1f} k instructions per task")


if __name__ == "__main__":
    main()
