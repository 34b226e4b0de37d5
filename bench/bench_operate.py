"""`orchestrate report` for a run of N tasks (generation time, file size), and `orchestrate backfill`
of D dates of a one-task routine against D separate `orchestrate run` calls (per-run overhead).

    python bench/bench_operate.py [--tasks 1000] [--dates 30]
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
    def nothing(self, day: str = ""):
        return {"total_rows": 1}

@hookimpl
def register_executors():
    return [Noop]
'''


def fake_run(store_path: Path, tasks: int) -> str:
    """A recorded run of ``tasks`` tasks (every tenth retried once, one failed with a traceback)."""
    from orchestrator.runs.store import RunRecord, SQLiteStore, TaskRecord

    store = SQLiteStore(store_path)
    start = time.time() - 3600
    run = RunRecord(run_id="bench-run", routine="big", started=start, ended=start + tasks * 3.0, status="failed")
    store.start_run(run, allow_concurrent=True)
    store.update_run(run.run_id, status="failed", ended=run.ended)
    for i in range(tasks):
        attempts = 2 if i % 10 == 0 else 1
        for attempt in range(1, attempts + 1):
            begin = start + i * 3.0 + (attempt - 1)
            failed = attempt < attempts or i == tasks - 1
            store.record_task(TaskRecord(
                id=f"t{i}-{attempt}", run_id=run.run_id, step=f"step{i // 10}", executor="noop", task=f"task{i}",
                step_index=i // 10, task_index=i % 10, attempt=attempt, status="failed" if failed else "succeeded",
                started=begin, ended=begin + 0.8, error="boom" if failed else None,
                traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom\n" if failed else None,
                metrics={"total_rows": i, "execution_metadata": {"i": i}}))
    return run.run_id


def bench_report(tasks: int, repeat: int) -> None:
    from orchestrator.cli.report import run_report
    from orchestrator.runs.store import SQLiteStore

    with tempfile.TemporaryDirectory() as folder:
        store_path = Path(folder) / "runs.sqlite"
        run_id = fake_run(store_path, tasks)
        store = SQLiteStore(store_path)
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            page = run_report(store, store.get_run(run_id))
            times.append(time.perf_counter() - began)
    print(f"report of a run with {tasks} tasks (+{tasks // 10} retries): median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms over {repeat}; file {len(page.encode()) / 1024:.0f} KiB")


def bench_backfill(dates: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "bench_noop_plugin.py").write_text(PLUGIN)
        routine = root / "routine.json"
        routine.write_text(json.dumps({"routine_name": "daily", "params": {"run_date": "2026-01-01"}, "executors": [
            {"name": "one", "executor": "noop", "tasks": [{"task": "nothing", "args": {"day": "${params.run_date}"}}]}]}))
        env = dict(os.environ, PYTHONPATH=str(root), ORCHESTRATOR_HOME=str(root / "home-a"), NO_COLOR="1")
        runner = root / "orch.py"
        runner.write_text("import sys, bench_noop_plugin\nfrom orchestrator.registry import Registry\n"
                          "_orig = Registry.__init__\n"
                          "def _init(self, *a, **k):\n    _orig(self, *a, **k)\n"
                          "    self.register(bench_noop_plugin, name='bench_noop')\n"
                          "Registry.__init__ = _init\nfrom orchestrator.cli import main\nsys.exit(main())\n")
        last = f"2026-01-{dates:02d}" if dates <= 31 else None
        assert last, "at most 31 dates"
        began = time.perf_counter()
        subprocess.run([sys.executable, str(runner), "backfill", str(routine), "--param",
                        f"run_date=2026-01-01..{last}", "--quiet"], env=env, check=True, capture_output=True)
        backfill = time.perf_counter() - began
        env["ORCHESTRATOR_HOME"] = str(root / "home-b")
        began = time.perf_counter()
        for day in range(1, dates + 1):
            subprocess.run([sys.executable, str(runner), "run", str(routine), "--param", f"run_date=2026-01-{day:02d}",
                            "--quiet"], env=env, check=True, capture_output=True)
        separate = time.perf_counter() - began
    print(f"backfill of {dates} dates (1 task each): {backfill:.2f} s = {backfill / dates * 1000:.0f} ms per run; "
          f"{dates} separate `orchestrate run` calls: {separate:.2f} s = {separate / dates * 1000:.0f} ms per run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dates", type=int, default=30)
    args = parser.parse_args()
    bench_report(args.tasks, args.repeat)
    bench_backfill(args.dates)


if __name__ == "__main__":
    main()
