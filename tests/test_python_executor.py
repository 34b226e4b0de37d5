"""The python executor: call a function from a file, with kwargs, passing TaskMetrics through."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from executors.python import PythonExecutor
from orchestrator.executor import TaskMetrics

ROUTINE = Path(__file__).resolve().parents[1] / "routines" / "test_routine"

MODULE = '''
import dataclasses
from orchestrator import TaskMetrics
calls = []

@dataclasses.dataclass
class Point:
    x: int

def record(path, value=1):
    with open(path, "a") as f:
        f.write(f"{value}\\n")

def metrics(n):
    return TaskMetrics(total_rows=n, execution_metadata={"point": Point(n).x})

def plain():
    return 42

def watermarked(step, context):
    context.next_watermark = (context.watermark or 0) + step
    return TaskMetrics(execution_metadata={"run": context.run_id})
'''


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.py"
    path.write_text(MODULE)
    return path


def test_calls_function_with_kwargs(module: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    ex = PythonExecutor(path=str(module))
    assert ex.call("record", {"path": str(out), "value": 7}) is None
    ex.call("record", {"path": str(out)})
    assert out.read_text() == "7\n1\n"


def test_task_metrics_pass_through_and_other_results_come_back(module: Path) -> None:
    ex = PythonExecutor(path=str(module))
    result = ex.call("metrics", {"n": 3})
    assert isinstance(result, TaskMetrics) and result.total_rows == 3 and result.execution_metadata == {"point": 3}
    assert ex.call("plain") == 42  # the engine keeps it as the task's result


def test_missing_function_and_missing_file_are_errors(module: Path, tmp_path: Path) -> None:
    with pytest.raises(AttributeError, match="nope"):
        PythonExecutor(path=str(module)).call("nope")
    with pytest.raises(FileNotFoundError):
        PythonExecutor(path=str(tmp_path / "absent.py")).call("plain")


def test_wrong_kwargs_raise_type_error(module: Path) -> None:
    with pytest.raises(TypeError):
        PythonExecutor(path=str(module)).call("metrics", {"m": 1})


def test_each_call_loads_a_fresh_module(module: Path) -> None:
    ex = PythonExecutor(path=str(module))
    ex.call("plain")
    module.write_text(MODULE.replace("return 42", "return TaskMetrics(total_rows=42)"))
    assert ex.call("plain").total_rows == 42


def test_demo_prepare_lands_the_samples(tmp_path: Path) -> None:
    routine = tmp_path / "routine"
    shutil.copytree(ROUTINE, routine, ignore=shutil.ignore_patterns("work", "__pycache__"))
    result = PythonExecutor(path=str(routine / "demo.py")).call("prepare")
    landing = routine / "work" / "landing"
    assert result.total_rows == 3
    assert sorted(p.name for p in landing.glob("*.csv")) == ["people_1.csv", "people_2.csv", "people_3.csv"]
    assert (landing / "people_1.csv").read_bytes() == (ROUTINE / "samples" / "people_1.csv").read_bytes()


def test_context_is_passed_when_the_function_takes_it(module: Path) -> None:
    from orchestrator.executor import Context

    context = Context(run_id="r-1", run_date="2026-11-22", routine_name="r", step="s", task="call", watermark=4)
    result = PythonExecutor(path=str(module)).call("watermarked", {"step": 3}, context=context)
    assert result.execution_metadata == {"run": "r-1"} and context.next_watermark == 7
