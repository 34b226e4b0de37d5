"""Outputs between steps: ``${steps.NAME.TASK.outputs.KEY}`` / ``...metrics.NAME`` in task args,
checked at validation, resolved when the task runs (also after a resume), recorded and masked.
Everything goes through the real CLI with python tasks that write down what they were given."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

CODE = '''
import json, os

def produce(out):
    with open(os.path.join(out, "produced"), "a") as handle:
        handle.write("x")
    return {"path": "/data/orders.csv", "count": 7, "nested": {"parts": ["a", "b"]}, "note": None}

def count():
    return {"total_rows": 42}

def consume(out, **given):
    with open(os.path.join(out, "given.json"), "w") as handle:
        json.dump(given, handle)
    if os.path.exists(os.path.join(out, "fail")):
        raise RuntimeError("told to fail")
    return {"seen": len(given)}

def with_secret(token):
    return {"token": token, "plain": "ok"}
'''

Cli = Callable[..., Any]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "jobs.py").write_text(CODE)
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def step(name: str, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "executor": "python", "params": {"path": "code/jobs.py"},
            "tasks": list(tasks), **extra}


def call(function: str, **kwargs: Any) -> dict[str, Any]:
    return {"task": "call", "args": {"function": function, "kwargs": kwargs}}


def routine(write_routine: Callable[..., Path], steps: list[dict[str, Any]],
            **extra: Any) -> str:
    return str(write_routine({"routine_name": "outputs", **extra, "executors": steps}))


def given(out: Path) -> dict[str, Any]:
    return json.loads((out / "given.json").read_text())  # type: ignore[no-any-return]


def pipeline(out: Path, **consumer: Any) -> list[dict[str, Any]]:
    return [step("load", call("produce", out=str(out)), call("count")),
            step("use", call("consume", out=str(out), **consumer))]


def test_outputs_and_metrics_reach_a_later_step_with_their_types(
        cli: Cli, write_routine: Callable[..., Path], out: Path) -> None:
    path = routine(write_routine, pipeline(
        out, path="${steps.load.call[0].outputs.path}",
        count="${steps.load.call[0].outputs.count}",
        part="${steps.load.call[0].outputs.nested.parts.1}",
        rows="${steps.load.call[1].metrics.total_rows}",
        text="${params.day}: ${steps.load.call[1].metrics.total_rows} rows, $${steps.not.a.ref}"),
        params={"day": "2026-11-30"})
    proc = cli(path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert given(out) == {"path": "/data/orders.csv", "count": 7, "part": "b", "rows": 42,
                          "text": "2026-11-30: 42 rows, ${steps.not.a.ref}"}
    run = json.loads(proc.stdout)
    assert run["tasks"][2]["args"]["kwargs"]["rows"] == 42
    assert run["tasks"][0]["args"] is None  # a task without references records none
    shown = cli("show", run["run_id"])
    assert '"part": "b"' in shown.stdout and "args:" in shown.stdout, shown.stdout
    assert '"rows": "${steps' not in cli("plan", path).stdout.replace(" ", "")


def test_depends_on_ancestors_are_upstream_and_an_earlier_task_of_the_step_too(
        cli: Cli, write_routine: Callable[..., Path], out: Path) -> None:
    steps = [step("a", call("produce", out=str(out))),
             step("b", call("count"), depends_on=["a"]),
             step("c", call("count"), call("consume", out=str(out),
                                           far="${steps.a.call.outputs.count}",
                                           own="${steps.c.call[0].metrics.total_rows}"),
                  depends_on=["b"])]
    proc = cli(routine(write_routine, steps))
    assert proc.returncode == 0, proc.stderr
    assert given(out) == {"far": 7, "own": 42}


@pytest.mark.parametrize("where, value, message", [
    ("kwargs.a", "${steps.lod.call[0].outputs.path}", "unknown step 'lod'; did you mean 'load'?"),
    ("kwargs.a", "${steps.load.cal[0].outputs.path}", "unknown task of step 'load' 'cal'; "
                                                      "did you mean 'call'?"),
    ("kwargs.a", "${steps.load.call.outputs.path}", "step 'load' calls 'call' 2 times; say which:"
                                                    " call[0] or call[1]"),
    ("kwargs.a", "${steps.load.call[1].metrics.total_row}", "unknown metric 'total_row'; did you "
                                                           "mean 'total_rows'?"),
    ("kwargs.a", "${steps.load.call[0].result}", "not a step output; write "
                                                 "${steps.STEP.TASK.outputs.KEY} or"),
    ("kwargs.a", "${steps.late.call.outputs.x}", "step 'late' does not run before step 'use'; "
                                                 "move it before this step"),
    ("kwargs.a", "${steps.use.call.outputs.x}", "call of step 'use' runs after this task"),
    ("kwargs.a", "${steps.off.call.outputs.x}", "step 'off' is inactive (active: false)"),
])
def test_a_wrong_reference_is_one_line_with_file_path_and_fix(
        cli: Cli, write_routine: Callable[..., Path], out: Path, where: str, value: str,
        message: str) -> None:
    steps = [step("off", call("count"), active=False), *pipeline(out, a=value),
             step("late", call("count"))]
    path = routine(write_routine, steps)
    proc = cli(path)
    assert proc.returncode == 2, proc.stderr
    line = f"{path}: executors[2].tasks[0].args.{where}: ${{{value[2:-1]}}}: "
    lines = [e for e in proc.stderr.splitlines() if e.strip()]
    assert len(lines) == 1 and lines[0].startswith(line + message), proc.stderr
    assert not (out / "produced").exists() and "no runs" in cli("runs").stdout


def test_with_depends_on_a_sibling_is_not_upstream(
        cli: Cli, write_routine: Callable[..., Path], out: Path) -> None:
    steps = [step("a", call("produce", out=str(out))),
             step("b", call("consume", out=str(out), x="${steps.a.call.outputs.count}"),
                  depends_on=[]),
             step("c", call("count"), depends_on=["a"])]
    proc = cli("validate", routine(write_routine, steps))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("executors[1].tasks[0].args.kwargs.x: "
                                        "${steps.a.call.outputs.count}: step 'a' does not run "
                                        "before step 'b'; add it to this step's depends_on")


def test_step_outputs_cannot_feed_params(cli: Cli, write_routine: Callable[..., Path],
                                         out: Path) -> None:
    steps = pipeline(out)
    steps[1]["params"]["path"] = "${steps.load.call[0].outputs.path}"
    proc = cli("validate", routine(write_routine, steps))
    assert proc.returncode == 2
    assert ("executors[1].params.path: ${steps.load.call[0].outputs.path}: a task's outputs exist "
            "only once it has run; use them in a later task's args") in proc.stderr


def test_a_missing_output_fails_the_task_at_once_saying_what_there_is(
        cli: Cli, write_routine: Callable[..., Path], out: Path) -> None:
    steps = pipeline(out, a="${steps.load.call[0].outputs.nested.part}")
    steps[1]["tasks"][0]["retries"] = 3
    proc = cli(routine(write_routine, steps), "--json")
    assert proc.returncode == 1
    failed = json.loads(proc.stdout)["tasks"][2]
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed
    assert failed["error"] == ("${steps.load.call[0].outputs.nested.part} (executors[1].tasks[0]"
                               ".args.kwargs.a): outputs.nested has no 'part' (it has: parts)")
    assert not (out / "given.json").exists()


def test_a_step_left_out_by_from_has_no_outputs(cli: Cli, write_routine: Callable[..., Path],
                                                out: Path) -> None:
    path = routine(write_routine, pipeline(out, a="${steps.load.call[0].outputs.count}"))
    proc = cli(path, "--from", "use", "--json")
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["tasks"][2]["error"]
    assert "load.call[0] did not succeed in this run (not selected (--from use))" in error


def test_secret_values_are_masked_and_never_passed_on(
        cli: Cli, write_routine: Callable[..., Path], out: Path) -> None:
    secret = "s3cr3t-Value-991"
    steps = [step("load", call("produce", out=str(out)),
                  call("with_secret", token="${params.api_token}")),
             step("use", call("consume", out=str(out),
                              password="${steps.load.call[0].outputs.path}"))]
    path = routine(write_routine, steps, params={"api_token": secret})
    proc = cli(path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert given(out) == {"password": "/data/orders.csv"}  # the task gets the value ...
    run = json.loads(proc.stdout)
    assert run["tasks"][2]["args"]["kwargs"]["password"] == "****"  # ... the record does not
    shown = cli("show", run["run_id"]).stdout
    assert "/data/orders.csv" not in shown.split("use.call")[1] and secret not in shown
    steps[1]["tasks"][0]["args"]["kwargs"] = {"out": str(out),
                                              "t": "${steps.load.call[1].outputs.token}"}
    proc = cli(routine(write_routine, steps, params={"api_token": secret}), "--json")
    failed = json.loads(proc.stdout)["tasks"][2]
    assert proc.returncode == 1 and secret not in proc.stdout + proc.stderr
    assert "was masked as a secret when it was kept; secrets do not pass between steps" \
        in failed["error"]


def test_resume_reads_the_outputs_of_the_run_where_the_task_succeeded(
        cli: Cli, write_routine: Callable[..., Path], out: Path) -> None:
    path = routine(write_routine, pipeline(
        out, count="${steps.load.call[0].outputs.count}",
        rows="${steps.load.call[1].metrics.total_rows}"))
    (out / "fail").write_text("")
    first = json.loads(cli(path, "--json").stdout)
    assert first["status"] == "failed"
    (out / "fail").unlink()
    (out / "given.json").unlink()
    resumed = json.loads(cli("resume", first["run_id"], "--json").stdout)
    assert resumed["status"] == "succeeded", resumed
    assert [t["status"] for t in resumed["tasks"]] == ["skipped", "skipped", "succeeded"]
    assert (out / "produced").read_text() == "x", "the producer ran again"
    assert given(out) == {"count": 7, "rows": 42}
    assert resumed["tasks"][2]["args"]["kwargs"] == {"out": str(out), "count": 7, "rows": 42}


def test_a_routine_from_an_event_cannot_read_step_outputs(write_routine: Callable[..., Path],
                                                          out: Path) -> None:
    from orchestrator.errors import RoutineError
    from orchestrator.routine.load import load_routine

    path = routine(write_routine, pipeline(out, a="${steps.load.call[0].outputs.count}"))
    with pytest.raises(RoutineError) as caught:
        load_routine(path, policy=lambda place: None)
    assert "a routine from an event cannot read step outputs" in str(caught.value)


def test_a_non_ascii_digit_key_into_a_list_is_missing_not_a_crash() -> None:
    from orchestrator.routine.outputs import OutputUnavailable, _child

    assert _child([10, 20], "1", "here", "outputs.list") == 20
    with pytest.raises(OutputUnavailable, match="has no '\u00b2'"):
        _child([10, 20], "\u00b2", "here", "outputs.list")
