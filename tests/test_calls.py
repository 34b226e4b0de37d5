"""Call keys tie attempts, retries and resumes to one piece of remote work; every executor that
records remote work (AWS, ECS, Docker) counts them the same way, skipped calls included."""
from __future__ import annotations

import pytest

from orchestrator.executor import Context


def context(task: str, attempt: int = 1) -> Context:
    return Context(run_id="r", run_date="2026-11-30", routine_name="x", step="s", task=task, attempt=attempt)


@pytest.mark.parametrize("module, name, params", [
    ("executors.athena", "AthenaExecutor", {"output_location": "s3://o/"}),
    ("executors.ecs", "EcsExecutor", {"cluster": "c", "task_definition": "t", "container": "x",
                                      "subnets": ["subnet-1"]}),
    ("executors.docker.executor", "DockerExecutor", {"image": "busybox:1"}),
])
def test_a_call_skipped_by_resume_still_counts(module: str, name: str, params: dict) -> None:
    """Before, the docker executor had no restore(): after a resume skipped its first `run`, the
    second `run` took the first one's key and so the first container's (successful) outcome."""
    import importlib

    executor = getattr(importlib.import_module(module), name)(**params)
    assert executor.restore(context("run"), "earlier-run") is True
    assert executor.call_key(context("run")) == "run-2"
    assert executor.call_key(context("run", attempt=2)) == "run-2"  # a retry is the same call
    assert executor.call_key(context("run")) == "run-3"
    assert executor.call_key(context("other")) == "other-1"
