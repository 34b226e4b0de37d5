"""The engine: order, dependencies, parallelism, retries, timeouts, cancellation, events."""
from __future__ import annotations

import threading
import time

import pytest

from inline_executors import CALLS, Worker, inline_registry
from orchestrator.routine.load import load_routine
from orchestrator.engine import Run, RunOptions, plan
from orchestrator.events import Listener


class Recorder(Listener):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def run_started(self, run):
        self.events.append(("run_started", run.total_tasks))

    def task_started(self, result):
        self.events.append(("started", result.step, result.task, result.attempts))

    def task_retrying(self, result, delay):
        self.events.append(("retrying", result.step, result.task, delay))

    def task_finished(self, result):
        self.events.append((result.status, result.step, result.task))

    def run_finished(self, result):
        self.events.append(("run_finished", result.status))


@pytest.fixture(autouse=True)
def reset_worker():
    Worker.reset()
    CALLS.clear()
    yield
    Worker.reset()


def step(name, *tasks, after=None, active=True, executor="worker"):
    params = {"worker": {"label": name}, "greeter": {"greeting": "hi"}}.get(executor, {})
    entry = {"name": name, "executor": executor, "params": params,
             "tasks": list(tasks), "active": active}
    if after is not None:
        entry["depends_on"] = after
    return entry


def execute(write_routine, *steps, max_parallel=4, routine_active=True, cancel_after=None):
    doc = {"routine_name": "eng", "active": routine_active, "executors": list(steps)}
    routine = load_routine(write_routine(doc), {}, inline_registry(), env={})
    recorder = Recorder()
    run = Run(plan(routine), [recorder], RunOptions(max_parallel=max_parallel))
    if cancel_after is not None:
        threading.Timer(cancel_after, run.cancel).start()
    result = run.execute()
    return result, recorder.events


def statuses(result):
    return {(t.step, t.task): t.status for t in result.tasks}


def test_declared_order_is_a_chain(write_routine):
    result, events = execute(write_routine, step("a", "busy"), step("b", "busy"), step("c", "busy"))
    started = [e[1] for e in events if e[0] == "started"]
    assert started == ["a", "b", "c"]
    assert Worker.peak == 1, "without depends_on, steps run one after another"
    assert result.status == "succeeded" and result.exit_code == 0


def test_independent_steps_run_concurrently(write_routine):
    Worker.barrier = threading.Barrier(2, timeout=5)
    result, _ = execute(write_routine, step("a", "meet", after=[]), step("b", "meet", after=[]))
    assert result.status == "succeeded", [t.error for t in result.tasks]


def test_max_parallel_bounds_concurrency(write_routine):
    steps = [step(f"s{i}", {"task": "busy", "args": {"seconds": 0.05}}, after=[]) for i in range(6)]
    execute(write_routine, *steps, max_parallel=2)
    assert Worker.peak == 2


def test_dependencies_order_the_dag(write_routine):
    result, events = execute(write_routine, step("late", "busy", after=["early"]), step("early", "busy", after=[]))
    finished = [e[1] for e in events if e[0] == "succeeded"]
    assert finished == ["early", "late"]
    assert [t.step for t in result.tasks] == ["early", "late"], "results follow plan order"


def test_failure_lets_running_steps_finish_current_task_and_skips_the_rest(write_routine):
    result, _ = execute(
        write_routine,
        step("slow", {"task": "busy", "args": {"seconds": 0.3}}, "busy", after=[]),
        step("bad", "fail", after=[]),
        step("after_bad", "busy", after=["bad"]),
    )
    got = statuses(result)
    assert got[("bad", "fail")] == "failed"
    assert got[("slow", "busy")] in ("succeeded", "skipped")
    assert [t.status for t in result.tasks if t.step == "slow"] == ["succeeded", "skipped"]
    assert got[("after_bad", "busy")] == "skipped"
    assert result.status == "failed" and result.exit_code == 1
    bad = next(t for t in result.tasks if t.step == "bad")
    assert bad.error == "bad broke" and bad.error_type == "ValueError"


def test_retries_back_off_exponentially_and_keep_subclass_metrics(write_routine):
    result, events = execute(write_routine, step("f", {"task": "flaky", "args": {"fail_times": 2}, "retries": 2, "retry_delay": 0.01}))
    assert [e[3] for e in events if e[0] == "retrying"] == [0.01, 0.02]
    (task,) = result.tasks
    assert task.status == "succeeded" and task.attempts == 3
    assert task.to_dict()["metrics"]["files"] == 3


def test_retries_exhausted_fail(write_routine):
    result, _ = execute(write_routine, step("f", {"task": "flaky", "args": {"fail_times": 5}, "retries": 1, "retry_delay": 0}))
    (task,) = result.tasks
    assert (task.status, task.attempts, task.error) == ("failed", 2, "transient failure 2")


def test_timeout_fails_the_task_and_cancels_the_executor(write_routine):
    result, _ = execute(write_routine, step("t", {"task": "wait_for_cancel", "args": {"seconds": 30}, "timeout": 0.2}))
    (task,) = result.tasks
    assert task.status == "failed" and "timed out after 0.2s" in task.error
    assert Worker.cancelled == ["t"]
    assert task.duration < 5


def test_cancel_stops_running_tasks_and_skips_pending(write_routine):
    started = time.monotonic()
    result, _ = execute(write_routine, step("long", "wait_for_cancel", after=[]), step("next", "busy", after=["long"]),
                        cancel_after=0.2)
    assert time.monotonic() - started < 5
    got = statuses(result)
    assert got == {("long", "wait_for_cancel"): "cancelled", ("next", "busy"): "skipped"}
    assert result.status == "cancelled" and result.exit_code == 130
    assert Worker.cancelled == ["long"]


def test_inactive_routine_and_step_are_skipped_and_say_so(write_routine):
    result, _ = execute(write_routine, step("a", "busy"), routine_active=False)
    assert result.status == "skipped" and result.tasks[0].reason == "routine is inactive (active: false)"
    result, _ = execute(write_routine, step("a", "busy", active=False), step("b", "busy"))
    assert statuses(result) == {("a", "busy"): "skipped", ("b", "busy"): "succeeded"}
    assert "inactive" in result.tasks[0].reason


def test_context_only_when_declared_and_events_in_order(write_routine):
    result, events = execute(write_routine, step("g", "say", {"task": "count", "args": {"n": 4}}, executor="greeter"))
    assert CALLS[0] == ("say", "world", {"run_id": result.run_id})
    assert CALLS[1][0] == "count"
    assert events[0] == ("run_started", 2) and events[-1] == ("run_finished", "succeeded")
    assert result.tasks[1].metrics.inserts == 4


@pytest.mark.parametrize("task_name", ["exit", "interrupt"])
def test_a_task_that_exits_or_interrupts_is_a_failure_not_a_skip(write_routine, task_name):
    result, _ = execute(write_routine, step("q", task_name, executor="quitter"), step("after", "busy"))
    assert statuses(result) == {("q", task_name): "failed", ("after", "busy"): "skipped"}
    assert result.status == "failed" and result.exit_code == 1
    assert result.tasks[0].error_type in ("SystemExit", "KeyboardInterrupt")


def test_a_successful_retry_clears_the_earlier_error(write_routine):
    result, _ = execute(write_routine, step("f", {"task": "flaky", "args": {"fail_times": 1}, "retries": 1, "retry_delay": 0}))
    (task,) = result.tasks
    assert (task.status, task.error, task.error_type) == ("succeeded", None, None)


def test_a_not_retryable_failure_is_not_retried(write_routine):
    result, events = execute(write_routine, step("r", {"task": "refuse", "retries": 3, "retry_delay": 0}))
    assert Worker.attempts == {"r": 1} and not [e for e in events if e[0] == "retrying"]
    assert result.tasks[0].status == "failed" and result.tasks[0].error_type == "NotRetryable"


def test_run_options_select_steps_name_the_run_and_skip_what_a_resume_inherits(write_routine):
    """One RunOptions value reaches the engine through the Python API: the run id, --only's
    selection and a resume's inherited tasks, with no keyword forwarded on the way."""
    from orchestrator import Orchestrator
    from orchestrator.engine import Resume

    doc = {"routine_name": "opts", "params": {"who": "nobody"}, "executors": [
        step("a", {"task": "say", "args": {"who": "${params.who}"}}, "say", executor="greeter"),
        step("b", "say", executor="greeter"), step("c", "say", executor="greeter")]}
    options = RunOptions(params={"who": "ann"}, run_id="r-opts", only=("a", "c"), track=False,
                         resume=Resume("r-old", {(0, 1): "r-older"}))
    result = Orchestrator(registry=inline_registry()).run(write_routine(doc), options=options)
    by_task = {(t.step, t.index): t for t in result.tasks}
    assert result.run_id == "r-opts" and CALLS[0] == ("say", "ann", {"run_id": "r-opts"})
    assert by_task[("a", 1)].status == "skipped"
    assert by_task[("a", 1)].reason == "already succeeded in run r-older"
    assert by_task[("b", 0)].reason == "not selected (--only a,c)"
    assert [c[0] for c in CALLS] == ["say", "say"]  # a.0 and c.0; a.1 inherited, b left out


def test_options_naming_an_unknown_step_refuse_before_anything_runs(write_routine):
    from orchestrator.errors import UserError

    routine = load_routine(write_routine({"routine_name": "x", "executors": [step("a", "busy")]}),
                           {}, inline_registry(), env={})
    with pytest.raises(UserError, match="unknown step 'b'"):
        Run(plan(routine), [], RunOptions(only=("b",)))
