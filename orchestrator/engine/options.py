"""How to run a routine, as the user asked: one value built where the input is read.

The CLI (its flags), the Python API (its arguments) and the Lambda adapter (its event) each build a
``RunOptions`` once; the run store's ``TrackedRun`` and the engine's ``Run`` take it whole instead
of each forwarding a growing list of keyword parameters.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .plan import Plan


@dataclasses.dataclass(frozen=True)
class Resume:
    """Resuming run ``run_id``: each task that already succeeded (``(step position, task
    index)``, in that run or one it resumed) mapped to the id of the run it succeeded in."""

    run_id: str
    done: Mapping[tuple[int, int], str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # overrides, as given
    run_id: str | None = None  # None: the run gets a new id (a detached run's child is told it)
    max_parallel: int = 4  # independent steps running at once
    only: tuple[str, ...] = ()  # --only: just these steps
    start: str | None = None  # --from: this step and everything downstream
    allow_concurrent: bool = False  # claim the routine even while another run of it is going
    track: bool = True  # record the run in the run store (the Python API may turn it off)
    resume: Resume | None = None

    @property
    def resumed_from(self) -> str | None:
        return self.resume.run_id if self.resume else None

    @property
    def done(self) -> Mapping[tuple[int, int], str]:
        return self.resume.done if self.resume else {}

    def excluded(self, plan: Plan) -> dict[str, str]:
        """Step name -> why ``--only``/``--from`` leave it out; raises ``UserError`` for a step
        the plan does not have (so call it before anything starts)."""
        if not self.only and not self.start:
            return {}
        from ..selection import excluded_steps

        return excluded_steps(plan, self.only, self.start)

    def resuming(self, resume: Resume) -> RunOptions:
        return dataclasses.replace(self, resume=resume)
