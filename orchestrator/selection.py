"""Run part of a plan: ``--only STEP[,STEP]`` or ``--from STEP`` (that step and all downstream).

Steps left out are skipped with a reason that says so; names are checked against the plan first.
"""
from __future__ import annotations

from typing import Sequence

from .errors import UserError
from .registry import unknown_message


def excluded_steps(
    plan: object, only: Sequence[str] = (), start: str | None = None
) -> dict[str, str]:
    """Step name -> why it is left out; empty when everything runs."""
    steps = list(plan.steps)  # type: ignore[attr-defined]
    names = [s.name for s in steps]
    if only and start:
        # Together they would have no clear meaning (the union? the intersection?): refused rather
        # than guessed.
        raise UserError("give --only or --from, not both")
    # Checked before anything runs: a misspelt step would otherwise run nothing, or everything.
    for name in [*only, *([start] if start else [])]:
        if name not in names:
            raise UserError(unknown_message("step", name, names) + " (see `orchestrate plan`)")
    if only:
        chosen = set(only)
        # --only runs exactly the named steps, not their dependencies: what those produced is taken
        # as already there (a rerun of one step after fixing it).
        return {n: f"not selected (--only {','.join(only)})" for n in names if n not in chosen}
    if start:
        chosen = {start}
        for step in steps:  # the plan is in dependency order: downstream steps come later
            if set(step.after) & chosen:
                chosen.add(step.name)
        return {n: f"not selected (--from {start})" for n in names if n not in chosen}
    return {}
