"""Demo data for test_routine: land the sample CSV files, as an upstream system would."""
from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator import TaskMetrics

HERE = Path(__file__).parent


def prepare() -> TaskMetrics:
    """Copy ``samples/*.csv`` into ``work/landing/`` so the routine can run again and again."""
    landing = HERE / "work" / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    samples = sorted((HERE / "samples").glob("*.csv"))
    for sample in samples:
        shutil.copyfile(sample, landing / sample.name)
    return TaskMetrics(total_rows=len(samples), execution_metadata={"landing": str(landing)})
