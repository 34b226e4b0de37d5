"""Dependency bookkeeping in time linear in steps + edges, for the planner and the engine.

A routine may have thousands of steps: rescanning every step at each completion (or each
placement) costs steps² and was minutes for a 10,000-step chain. Here each step keeps a count of
unfinished dependencies, and each finished step decrements the counts of its dependents only.
"""
from __future__ import annotations

import collections
from typing import Generic, Hashable, Iterable, Iterator, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)


def waves(names: Sequence[K], depends_on: dict[K, Sequence[K]]) -> list[K]:
    """``names`` in dependency order: each step in the first wave where all its dependencies are
    placed, waves in order, declared order within a wave. Raises ValueError on a cycle."""
    depth: dict[K, int] = {}
    queue = ReadyQueue(names, depends_on)
    for name in queue:
        depth[name] = 1 + max((depth[d] for d in set(depends_on.get(name, ()))), default=-1)
        queue.finish(name)
    if len(depth) != len(names):
        raise ValueError(f"dependency cycle among {sorted(map(str, set(names) - set(depth)))}")
    buckets: list[list[K]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for name in names:
        buckets[depth[name]].append(name)
    return [name for bucket in buckets for name in bucket]


class ReadyQueue(Generic[K]):
    """Steps whose dependencies have all finished, in the order they became ready (declared order
    at first). ``pop()`` takes one; ``finish(name)`` may make its dependents ready."""

    def __init__(self, names: Iterable[K], depends_on: dict[K, Sequence[K]]) -> None:
        self.waiting: dict[K, int] = {}
        self.dependents: dict[K, list[K]] = collections.defaultdict(list)
        for name in names:
            deps = set(depends_on.get(name, ()))
            self.waiting[name] = len(deps)
            for dep in deps:
                self.dependents[dep].append(name)
        self.ready = collections.deque(name for name, count in self.waiting.items() if count == 0)
        self.taken: set[K] = set()

    def __bool__(self) -> bool:
        return bool(self.ready)

    def __iter__(self) -> Iterator[K]:
        while self.ready:
            yield self.pop()

    def pop(self) -> K:
        name = self.ready.popleft()
        self.taken.add(name)
        return name

    def finish(self, name: K) -> None:
        for dependent in self.dependents.get(name, ()):
            self.waiting[dependent] -= 1
            if self.waiting[dependent] == 0:
                self.ready.append(dependent)

    def take_rest(self) -> list[K]:
        """Take every step not taken yet, ready or not, in declared order (the run stops)."""
        if len(self.taken) == len(self.waiting):
            return []
        rest = [name for name in self.waiting if name not in self.taken]
        self.taken.update(rest)
        self.ready.clear()
        return rest
