"""The engine: plan a validated routine into ordered steps, then run them.

Everything the rest of the code uses is re-exported here, so callers write
``from orchestrator.engine import Run, plan`` whatever module a name lives in.
"""
from __future__ import annotations

from .run import (CANCEL_GRACE, EARLIER_TASK_FAILED, MAX_RETRY_DELAY, Plan, Run, Step, TaskTimeout,
                  WatermarkStore, plan, run)

__all__ = ["CANCEL_GRACE", "EARLIER_TASK_FAILED", "MAX_RETRY_DELAY", "Plan", "Run", "Step",
           "TaskTimeout", "WatermarkStore", "plan", "run"]
