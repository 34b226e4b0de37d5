"""`orchestrate doctor`: is each executor usable here (libraries, credentials, endpoints)?"""
from __future__ import annotations

from typing import Any

from .registry import BLOCK_VARIABLE, Registry


def diagnose(routine_path: str | None = None) -> list[dict[str, Any]]:
    """One entry per subject checked, with the problems found and how to fix them.

    Without a routine every executor gets the same, params-free check (libraries, credentials);
    with one, each step's configured executor also probes its endpoints.
    """
    # The store first: every run records through it, so a broken home or store breaks every
    # routine at once, whatever its executors.
    report = [_store_check()]
    if routine_path is None:
        registry = Registry()
        for info in registry.executors():
            report.append(_check(f"executor {info.name}", info.cls, None))
        for broken in registry.broken():
            fix = f"repair or reinstall it, or set {BLOCK_VARIABLE}={broken.name}"
            report.append({"subject": f"plugin {broken.name} ({broken.origin})",
                           "problems": [f"failed to load: {broken.reason}; {fix}"]})
        return report
    # A broken routine raises here: that is a validation error (exit 2), not something doctor
    # reports.
    from .routine.load import load_routine

    routine = load_routine(routine_path)
    for step in routine.steps:
        report.append(
            _check(f"step {step.name} ({step.executor.name})", step.executor.cls, step.params)
        )
    return report


def _check(subject: str, cls: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    try:
        problems = list(cls.check_environment())
        if not problems and params is not None:
            # Endpoints are probed only once the libraries and credentials are there: without them
            # every probe would fail with a less useful message.
            problems = list(cls(**params).check())
    except Exception as exc:  # doctor reports, it does not crash
        problems = [f"{type(exc).__name__}: {exc}"]
    return {"subject": subject, "problems": problems}


def _store_check() -> dict[str, Any]:
    from .runs.store import open_store

    try:
        store = open_store()
        # Opening alone may succeed on a damaged or unreachable store; one real read proves it
        # answers.
        store.list_runs(limit=1)
        return {"subject": f"run store ({type(store).__name__})", "problems": []}
    except Exception as exc:
        return {
            "subject": "run store",
            "problems": [f"{exc}; check ORCHESTRATOR_HOME / ORCHESTRATOR_STORE"],
        }
