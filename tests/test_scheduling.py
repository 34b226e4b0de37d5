"""Linear-time dependency bookkeeping keeps the planner's order and the engine's semantics."""

from __future__ import annotations

import random

import pytest

from inline_executors import Worker, inline_registry
from orchestrator.routine.load import load_routine
from orchestrator.engine import Run, RunOptions, plan
from orchestrator.scheduling import ReadyQueue, waves


def reference_waves(names: list[str], deps: dict[str, list[str]]) -> list[str]:
    """The planner's former quadratic loop: repeatedly place, in declared order, what is ready."""
    ordered: list[str] = []
    placed: set[str] = set()
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if set(deps.get(n, ())) <= placed]
        for name in ready:
            ordered.append(name)
            placed.add(name)
            remaining.remove(name)
    return ordered


def random_dag(seed: int, size: int = 60) -> tuple[list[str], dict[str, list[str]]]:
    rng = random.Random(seed)
    topo = [f"s{i}" for i in range(size)]
    deps = {name: rng.sample(topo[:i], k=min(i, rng.randint(0, 3))) for i, name in enumerate(topo)}
    declared = topo[:]
    rng.shuffle(declared)
    return declared, deps


@pytest.mark.parametrize("seed", range(25))
def test_waves_keep_the_planners_order(seed: int) -> None:
    names, deps = random_dag(seed)
    assert waves(names, deps) == reference_waves(names, deps)


def test_a_cycle_is_an_error_not_a_hang() -> None:
    with pytest.raises(ValueError, match="cycle"):
        waves(["a", "b", "c"], {"a": ["c"], "b": ["a"], "c": ["b"]})


def test_ready_queue_releases_a_step_when_its_last_dependency_finishes() -> None:
    queue = ReadyQueue(["a", "b", "c", "d"], {"c": ["a", "b"], "d": ["c", "c"]})
    assert [queue.pop(), queue.pop()] == ["a", "b"] and not queue
    queue.finish("a")
    assert not queue, "c still waits for b"
    queue.finish("b")
    assert queue.pop() == "c"
    queue.finish("c")
    assert queue.take_rest() == ["d"] and queue.take_rest() == []


def test_a_long_chain_runs_in_order_and_a_failure_skips_the_rest(write_routine) -> None:
    Worker.reset()
    steps = [
        {
            "name": f"s{i}",
            "executor": "worker",
            "params": {"label": f"s{i}"},
            "tasks": ["fail" if i == 300 else "busy"],
        }
        for i in range(500)
    ]
    for i, step in enumerate(steps[1:], 1):
        step["depends_on"] = [f"s{i - 1}"]
    routine = load_routine(
        write_routine({"routine_name": "chain", "executors": steps}), {}, inline_registry(), env={}
    )
    result = Run(plan(routine), [], RunOptions(max_parallel=4)).execute()
    statuses = [t.status for t in result.tasks]
    assert statuses == ["succeeded"] * 300 + ["failed"] + ["skipped"] * 199
    assert [t.step for t in result.tasks] == [f"s{i}" for i in range(500)]
    assert Worker.peak == 1, "a chain never runs two steps at once"
