"""The plan: a validated routine's steps in the order they may start, each with what it waits for.

A routine without ``depends_on`` is a chain in declared order; with it, a topological order in
waves (``scheduling.waves``). ``describe()`` is what ``orchestrate plan`` shows.
"""
from __future__ import annotations

from typing import Any

from ..records import FrozenRecord, frozen_record
from ..routine.load import Routine, StepSpec
from ..scheduling import waves


@frozen_record
class Step(FrozenRecord):
    """One executor entry of the plan and the steps it runs after."""

    spec: StepSpec
    after: tuple[str, ...]  # the steps that must finish before this one starts

    @property
    def name(self) -> str:
        return self.spec.name


@frozen_record
class Plan(FrozenRecord):
    """A validated routine's steps in the order they may start."""

    routine: Routine
    steps: tuple[Step, ...]

    def describe(self) -> list[dict[str, Any]]:
        """The ordered steps with resolved, secret-masked params (``orchestrate plan``)."""
        masked = self.routine.masked
        return [
            {
                "step": s.name,
                "executor": s.spec.executor.name,
                "class": s.spec.executor.class_name,
                "active": s.spec.active and self.routine.active,
                "after": list(s.after),
                "params": masked(s.spec.params),
                "tasks": [{"task": c.task, "args": masked(c.args), "retries": c.retries,
                           "retry_delay": c.retry_delay, "timeout": c.timeout}
                          for c in s.spec.tasks],
            }
            for s in self.steps
        ]


def plan(routine: Routine) -> Plan:
    """Order the steps: declared order as a chain, or topological order of ``depends_on``."""
    specs = routine.steps
    if not routine.explicit_dependencies:
        chain = [Step(spec, (specs[i - 1].name,) if i else ()) for i, spec in enumerate(specs)]
        return Plan(routine, tuple(chain))
    by_name = {spec.name: spec for spec in specs}
    order = waves(list(by_name), {spec.name: spec.depends_on for spec in specs})
    return Plan(routine, tuple(Step(by_name[name], by_name[name].depends_on) for name in order))
