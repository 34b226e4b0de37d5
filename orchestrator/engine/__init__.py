"""The engine: plan a validated routine into ordered steps, then run them.

``plan.py`` orders the steps; ``run.py`` schedules them and decides the outcome;
``task_runner.py`` executes one task (attempts, retries, timeout, masking, watermarks, restore);
``cancellation.py`` is what a cancel reaches; ``options.py`` how the user asked to run.
Everything the rest of the code uses is re-exported here, so callers write
``from orchestrator.engine import Run, plan``.
"""
from __future__ import annotations

from .options import Resume, RunOptions
from .plan import Plan, Step, plan
from .run import EARLIER_TASK_FAILED, Run, run
from .task_runner import CANCEL_GRACE, MAX_RETRY_DELAY, TaskRunner, TaskTimeout, WatermarkStore

__all__ = ["CANCEL_GRACE", "EARLIER_TASK_FAILED", "MAX_RETRY_DELAY", "Plan", "Resume", "Run",
           "RunOptions", "Step", "TaskRunner", "TaskTimeout", "WatermarkStore", "plan", "run"]
