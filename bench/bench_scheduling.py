"""Scheduling cost of many steps: a chain of N one-task steps, declared in order or by depends_on.

    python bench/bench_scheduling.py [--steps 10000] [--repeat 3]

Times each phase in one process, without run tracking: load + validate the routine, plan it,
execute it (the engine: scheduling, threads, events). A no-op task costs next to nothing, so
"execute" is the engine's own cost; divided by N it is the cost per step. A scheduler that
rescans every step on every completion grows quadratically here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from orchestrator import Executor, hookimpl, task
from orchestrator.routine.load import load_routine
from orchestrator.engine import Run, RunOptions, plan
from orchestrator.registry import Registry


class Noop(Executor):
    name = "noop"

    @task
    def nothing(self) -> None:
        return None


class _Plugin:
    @hookimpl
    def register_executors(self) -> list[type]:
        return [Noop]


def routine_doc(steps: int, explicit: bool) -> dict[str, Any]:
    entries = []
    for i in range(steps):
        entry: dict[str, Any] = {"name": f"s{i}", "executor": "noop", "tasks": ["nothing"]}
        if explicit and i:
            entry["depends_on"] = [f"s{i - 1}"]
        entries.append(entry)
    return {"routine_name": "chain", "executors": entries}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def measure(path: Path, registry: Registry) -> dict[str, float]:
    load_s, routine = timed(lambda: load_routine(path, {}, registry, env={}))
    plan_s, the_plan = timed(lambda: plan(routine))
    run_s, result = timed(lambda: Run(the_plan, [], RunOptions(max_parallel=4)).execute())
    assert result.status == "succeeded", result.status
    return {"load": load_s, "plan": plan_s, "execute": run_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry = Registry(load_entrypoints=False)
    registry.register(_Plugin())
    folder = Path(tempfile.mkdtemp(prefix="bench-scheduling-"))
    for explicit in (False, True):
        path = folder / f"chain-{explicit}.json"
        path.write_text(json.dumps(routine_doc(args.steps, explicit)))
        runs = [measure(path, registry) for _ in range(args.repeat)]
        medians = {phase: statistics.median(r[phase] for r in runs) for phase in runs[0]}
        label = "depends_on chain" if explicit else "declared order"
        print(f"{args.steps} steps, {label}, medians of {args.repeat}: "
              + ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in medians.items())
              + f"; execute {medians['execute'] / args.steps * 1e6:.0f} us per step")


if __name__ == "__main__":
    main()
