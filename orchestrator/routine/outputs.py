"""Outputs between steps: ``${steps.NAME.TASK.outputs.KEY}`` and ``${steps.NAME.TASK.metrics.M}``.

A task's args may read what an upstream task produced: its kept result (a python task's returned
dict is its outputs) or its metrics. The reference is checked at validation (the step exists and
runs before the one that reads it, the task exists in it, the metric is one it can report) and
resolved just before the task runs, from the upstream task's result as the run keeps it: in this
run, or, for a task a resume skipped, in the run where it succeeded (read from the run store).
What ``show`` displays is what later tasks get, so a value masked as a secret is never passed on.
"""
from __future__ import annotations

import dataclasses
import json
import re
import threading
import typing
import weakref
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..records import FrozenRecord, frozen_record
from ..events import SUCCEEDED
from ..executor import TaskMetrics
from ..registry import unknown_message
from .substitution import _REF, Deferred

KINDS = ("outputs", "metrics")
_TASK = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?")
_FORM = "write ${steps.STEP.TASK.outputs.KEY} or ${steps.STEP.TASK.metrics.NAME}"
_MASK = "****"
Report = Callable[[str, str], None]


@frozen_record
class StepOutput(FrozenRecord):
    """One ``${steps...}`` reference in a task's args."""

    text: str  # as written between ``${`` and ``}``
    step: str
    task: str
    nth: int | None  # which call of ``task`` when the step calls it more than once
    kind: str  # "outputs" or "metrics"
    keys: tuple[str, ...]  # into the result (or metrics); empty: the whole result
    path: str  # JSON path of the argument, for messages

    @property
    def task_label(self) -> str:
        return self.task if self.nth is None else f"{self.task}[{self.nth}]"


class OutputUnavailable(Exception):
    """An upstream output a task needs is not there: running the task again would not help."""

    # The engine skips a task's retries when its exception says retryable False: the upstream result
    # will not appear by waiting.
    retryable = False


def parse(text: str, path: str) -> StepOutput | str:
    """The reference ``steps.STEP.TASK[N].KIND.KEY...``, or what is wrong with it. A step name
    may hold dots: the task is the segment right before the first ``outputs``/``metrics``."""
    parts = text.split(".")
    # parts[0] is "steps" and a step name takes at least one segment, so the kind is at index 3 or
    # later. The first outputs/metrics that follows a valid task name wins: keys after it may
    # themselves be called "outputs".
    for i in range(3, len(parts)):
        task = _TASK.fullmatch(parts[i - 1])
        if parts[i] in KINDS and task:
            nth = int(task.group(2)) if task.group(2) is not None else None
            keys = tuple(parts[i + 1:])
            if parts[i] == "metrics" and not keys:
                return f"${{{text}}}: name the metric ({', '.join(_metric_names(TaskMetrics))})"
            if any(not key for key in keys):
                return f"${{{text}}}: an empty key; {_FORM}"
            return StepOutput(text, ".".join(parts[1:i - 1]), task.group(1), nth, parts[i], keys,
                              path)
    return f"${{{text}}}: not a step output; {_FORM}"


def deferred_paths(value: Any, path: str) -> Iterable[str]:
    """The JSON paths of the values holding ``${steps...}`` in ``value``: their type and content
    are known only at run time, so validation does not judge them."""
    if isinstance(value, Deferred):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from deferred_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from deferred_paths(item, f"{path}[{i}]")


def check_references(steps: Sequence[Any], explicit: bool, report: Report,
                     broken: Iterable[str] = ()) -> None:
    """Each reference names a step that runs before the one that reads it (a ``depends_on``
    ancestor, or an earlier step in declared order without ``depends_on``; an earlier task of the
    same step also does), a task that step calls, and a metric that task can report. Steps in
    ``broken`` (entries reported already) are not judged again through their references."""
    broken = set(broken)
    by_name = {step.name: step for step in steps}
    order = {step.name: i for i, step in enumerate(steps)}
    for step in steps:
        for index, call in enumerate(step.tasks):
            for ref in call.references:
                upstream = _runs_before(ref.step, step, by_name, order, explicit)
                problem = _problem(ref, step, index, by_name, upstream, explicit)
                if problem and ref.step not in broken:
                    report(ref.path, f"${{{ref.text}}}: {problem}")


def _runs_before(name: str, step: Any, by_name: Mapping[str, Any], order: Mapping[str, int],
                 explicit: bool) -> bool:
    """Whether step ``name`` ends before ``step`` starts: a ``depends_on`` ancestor (searched
    from ``step`` until found), or an earlier step in declared order."""
    if not explicit:
        # An unknown step sorts after every step, so it never counts as upstream (_problem names
        # it).
        return order.get(name, len(order)) < order[step.name]
    # A search from this step that stops at the target, not a table of every step's ancestors: that
    # keeps checking linear in the routine's size. seen cuts diamonds short (A and B both depend on
    # C).
    seen: set[str] = set()
    todo = list(step.depends_on)
    while todo:
        current = todo.pop()
        if current == name:
            return True
        if current not in seen and current in by_name:
            seen.add(current)
            todo.extend(by_name[current].depends_on)
    return False


def _problem(ref: StepOutput, step: Any, index: int, by_name: Mapping[str, Any],
             upstream: bool, explicit: bool) -> str | None:
    target = by_name.get(ref.step)
    if target is None:
        return unknown_message("step", ref.step, list(by_name))
    calls = [i for i, call in enumerate(target.tasks) if call.task == ref.task]
    if not calls:
        known = list(dict.fromkeys(call.task for call in target.tasks))
        return unknown_message(f"task of step {ref.step!r}", ref.task, known)
    if ref.nth is None and len(calls) > 1:
        which = " or ".join(f"{ref.task}[{n}]" for n in range(len(calls)))
        return f"step {ref.step!r} calls {ref.task!r} {len(calls)} times; say which: {which}"
    if ref.nth is not None and ref.nth >= len(calls):
        return (f"step {ref.step!r} calls {ref.task!r} {len(calls)} time(s); "
                f"{ref.task_label} is not one")
    position = calls[ref.nth or 0]
    # Within a step tasks run in order, so an earlier task of the same step is upstream too.
    if target is step:
        if position >= index:
            return (f"{ref.task_label} of step {ref.step!r} runs after this task (or is this task);"
                    " read only from tasks that run before it")
    elif not upstream:
        how = "add it to this step's depends_on" if explicit else "move it before this step"
        return f"step {ref.step!r} does not run before step {step.name!r}; {how}"
    if not target.active:
        return f"step {ref.step!r} is inactive (active: false), so it has no outputs"
    return _kind_problem(ref, target, position)


def _kind_problem(ref: StepOutput, target: Any, position: int) -> str | None:
    returned = _returned_class(target, target.tasks[position].task)
    if ref.kind == "metrics":
        names = _metric_names(returned or TaskMetrics)
        if ref.keys[0] not in names:
            return unknown_message("metric", ref.keys[0], names)
    elif returned is not None:
        return (f"{target.executor.name}.{ref.task} returns metrics only, no outputs; "
                f"use ${{steps.{ref.step}.{ref.task_label}.metrics.NAME}}")
    return None


def _returned_class(step: Any, task: str) -> type[TaskMetrics] | None:
    """The TaskMetrics class a task's signature says it returns, or None (anything else)."""
    try:
        method = step.executor.cls.tasks()[task]
        returned = typing.get_type_hints(method).get("return")
    except Exception:  # unresolvable hints say nothing
        return None
    return returned if isinstance(returned, type) and issubclass(returned, TaskMetrics) else None


def _metric_names(cls: type[TaskMetrics]) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


# Per-run caches keyed by the Run object: weak keys let them go with the run, so a long-lived
# process (the Python API, a warm Lambda) does not keep every run's plan and task records.
_steps_by_name: weakref.WeakKeyDictionary[Any, dict[str, tuple[int, Any]]] = \
    weakref.WeakKeyDictionary()
_stored: weakref.WeakKeyDictionary[Any, dict[str, list[Any]]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()  # steps run in threads of their own


def prepared_args(run: Any, call: Any, context: Any) -> dict[str, Any]:
    """``call.args`` with its ``${steps...}`` references resolved; the task's result records
    them (masked). ``run`` is the engine's ``Run``; raises :class:`OutputUnavailable`."""
    if not call.references:
        return call.args  # type: ignore[no-any-return]
    values = {ref.text: _value(run, ref) for ref in call.references}
    args = {key: _resolved(value, values) for key, value in call.args.items()}
    _, step = _step(run, context.step)
    # By identity: task calls compare by value, and a step may call the same task twice with the
    # same args; == would find the first of them.
    index = next(i for i, c in enumerate(step.spec.tasks) if c is call)
    here = _result_at(run, context.step, index)
    if here is not None:
        # The result records the args as they were resolved for this call, masked, so show says what
        # the task really got.
        here.args = run.routine.masked(args)
    return args


def _step(run: Any, name: str) -> tuple[int, Any]:
    """The step's position in the plan and the step."""
    with _cache_lock:
        steps = _steps_by_name.get(run)
        if steps is None:
            steps = _steps_by_name[run] = {s.name: (i, s) for i, s in enumerate(run.plan.steps)}
    return steps[name]


def _result_at(run: Any, step: str, index: int) -> Any:
    """This run's result of a task by its position; None when this process does not run it (a
    state machine's Lambda runs only some tasks of the routine)."""
    return next((r for r in run.results.get(step, ()) if r.index == index), None)


def _resolved(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, Deferred):
        return fill(value, values)
    if isinstance(value, dict):
        return {key: _resolved(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, values) for item in value]
    return value


def fill(template: str, values: Mapping[str, Any]) -> Any:
    """The template with its references replaced: a value that is only a reference keeps its
    type (a number stays a number); ``$${`` becomes ``${``."""
    whole = _REF.fullmatch(template)
    if whole and whole.group(1) is not None:
        return values[whole.group(1).strip()]

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "${"
        value = values[match.group(1).strip()]
        if value is None:
            raise OutputUnavailable(f"${{{match.group(1).strip()}}} is null and cannot be part "
                                    f"of the string {template!r}")
        # Non-strings are spliced in as JSON (true, [1, 2], {"a": 1}), not as Python's repr.
        return value if isinstance(value, str) else json.dumps(value)

    return _REF.sub(replace, template)


def _value(run: Any, ref: StepOutput) -> Any:
    result, metrics = _upstream(run, ref)
    value: Any = result if ref.kind == "outputs" else metrics
    where = f"${{{ref.text}}} ({ref.path})"
    if value is None:
        what = "no result (only metrics?)" if ref.kind == "outputs" else "no metrics"
        raise OutputUnavailable(f"{where}: {ref.step}.{ref.task_label} returned {what}")
    for depth, key in enumerate(ref.keys):
        value = _child(value, key, where, ".".join((ref.kind, *ref.keys[:depth])))
    if value is None and ref.kind == "metrics":
        raise OutputUnavailable(f"{where}: {ref.step}.{ref.task_label} did not report it")
    # Results are kept masked: "****" is not what the upstream task returned, and passing it on
    # would write the mask where the secret belonged.
    if _MASK in json.dumps(value, default=str):
        raise OutputUnavailable(f"{where}: the value was masked as a secret when it was kept; "
                                "secrets do not pass between steps: give them as ${env.X} or a "
                                "param")
    return value


def _child(value: Any, key: str, where: str, parent: str) -> Any:
    if isinstance(value, dict):
        if key not in value:
            known = ", ".join(map(str, value)) or "none"
            raise OutputUnavailable(f"{where}: {parent} has no {key!r} (it has: {known})")
        return value[key]
    # isascii too: "²" is a digit to isdigit() but not to int(), which would raise ValueError
    # at run time instead of saying which key is missing.
    if isinstance(value, list) and key.isascii() and key.isdigit() and int(key) < len(value):
        return value[int(key)]
    raise OutputUnavailable(f"{where}: {parent} is {type(value).__name__} "
                            f"{json.dumps(value, default=str)[:60]}, which has no {key!r}")


def _upstream(run: Any, ref: StepOutput) -> tuple[Any, dict[str, Any] | None]:
    """The upstream task's kept result and metrics: from this run when it succeeded here, else
    from the store (a resume skipped it: the run it succeeded in; a step run elsewhere under this
    run id, by a state machine's Lambda: this run)."""
    position, step = _step(run, ref.step)
    index = [i for i, call in enumerate(step.spec.tasks) if call.task == ref.task][ref.nth or 0]
    here = _result_at(run, ref.step, index)
    if here is not None and here.status == SUCCEEDED:
        return here.result, here.metrics.to_dict() if here.metrics else None
    # A task a resume skipped succeeded in an earlier run (run.done names it); otherwise the record
    # may still be this run's, written by another process (a state machine's Lambda).
    origin = run.done.get((position, index), run.routine.run_id)
    # Newest record first: if the task's latest attempt did not succeed, an older success does not
    # count.
    for record in reversed(_stored_tasks(run, origin)):
        if record.step == ref.step and record.task_index == index:
            if record.status == SUCCEEDED:
                return record.result, record.metrics
            break
    why = (here.reason or here.error or here.status) if here is not None else "not recorded"
    raise OutputUnavailable(f"${{{ref.text}}} ({ref.path}): {ref.step}.{ref.task_label} did not "
                            f"succeed in this run ({why}), so it has no outputs")


def _stored_tasks(run: Any, run_id: str) -> list[Any]:
    """The task records of ``run_id``, read once per run. The engine reaches the store through its
    watermarks (the store itself, or a view of it that keeps it as ``store``)."""
    with _cache_lock:
        cache = _stored.setdefault(run, {})
        if run_id not in cache:
            store = getattr(run.watermarks, "store", run.watermarks)
            cache[run_id] = list(store.tasks(run_id)) if hasattr(store, "tasks") else []
        return cache[run_id]
