"""`orchestrate doctor`: is each executor usable here (libraries, credentials, endpoints)?"""
from __future__ import annotations

import inspect
from typing import Any

from .registry import BLOCK_VARIABLE, Registry


def diagnose(routine_path: str | None = None) -> list[dict[str, Any]]:
    """One entry per subject checked, with the problems found and how to fix them."""
    report = [_store_check()]
    if routine_path is None:
        registry = Registry()
        for info in registry.executors():
            report.append(_check(f"executor {info.name}", lambda info=info: _bare_instance(info.cls)))
        for broken in registry.broken():
            fix = f"repair or reinstall it, or set {BLOCK_VARIABLE}={broken.name}"
            report.append({"subject": f"plugin {broken.name} ({broken.origin})",
                           "problems": [f"failed to load: {broken.reason}; {fix}"]})
        return report
    from .config import load_routine

    routine = load_routine(routine_path)
    for step in routine.steps:
        report.append(_check(f"step {step.name} ({step.executor.name})", lambda step=step: step.executor.cls(**step.params)))
    return report


def _bare_instance(cls: type) -> Any:
    required = [p for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return cls() if not required else None


def _check(subject: str, make: Any) -> dict[str, Any]:
    try:
        instance = make()
        if instance is None:
            return {"subject": subject, "problems": [],
                    "skipped": "needs params to check: run `orchestrate doctor ROUTINE` with a routine that uses it"}
        problems = instance.check()
    except Exception as exc:
        problems = [f"{type(exc).__name__}: {exc}"]
    return {"subject": subject, "problems": list(problems)}


def _store_check() -> dict[str, Any]:
    from .runs import open_store

    try:
        store = open_store()
        store.list_runs(limit=1)
        return {"subject": f"run store ({type(store).__name__})", "problems": []}
    except Exception as exc:
        return {"subject": "run store", "problems": [f"{exc}; check ORCHESTRATOR_HOME / ORCHESTRATOR_STORE"]}
