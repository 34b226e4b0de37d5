"""Compile a validated routine into an AWS Step Functions state machine (Amazon States Language).

Each executor says how its tasks run there (``Executor.state_machine_task``): as a native
integration (a ``.sync`` Task, or a submit-and-poll loop), or — the default — through the
orchestrator's Lambda, which runs consecutive such tasks of one step in one invocation and records
them in the shared run store under the execution. The core names no executor.

The shape: a few states that merge the execution's input (``params``, ``run_date``) over the
routine's defaults; then the steps, in declared order, or for ``depends_on`` in layers of a
topological order, each layer of several steps one ``Parallel`` state with a branch per step. Every
task state catches any error into a state noting step, task, error and cause, then one ``Fail``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Callable, Iterable

from ..errors import UserError
from ..engine import plan
from ..executor import Uncompilable
from ..routine.load import Routine, StepSpec, TaskCall, parse_file
from ..routine.substitution import SECRET_NAME, secret_references
from .references import (ReferenceProblem, has_runtime_reference, referenced_params,
                         resolve_fields)

MAX_DEFINITION_BYTES = 1_048_576  # Step Functions' limit on a state machine definition
# Step Functions refuses a state name longer than this.
MAX_STATE_NAME = 80
# Lambda's longest timeout: the tasks one invocation runs must fit in it (note_lambda_limits).
LAMBDA_SECONDS = 900
FUNCTION_REF = "${OrchestratorFunctionArn}"  # filled in by the template's DefinitionSubstitutions
BATCH_BUCKET_REF = "${OrchestratorBatchBucket}"  # where a Distributed Map writes its results
# Keys per child when the executor sets no ItemBatcher of its own: a batch must end well within a
# Lambda's 15 minutes.
ITEMS_PER_BATCH = 100
NO_TIMEOUT = 31_536_000  # a year: the longest a standard execution may run
FAILED_STATE, SUCCEEDED_STATE = "Failed", "Succeeded"
STEP_FAILED = "orchestrator.StepFailed"
# Only throttling is retried by the state machine: any other Lambda error may come after tasks did
# their work, and retries belong to the routine's tasks, inside the invocation.
LAMBDA_RETRY = {"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 2,
                "MaxAttempts": 6, "BackoffRate": 2}  # throttled: the function did not run


class CompileError(UserError):
    """The routine cannot become a state machine; the message names the step (exit code 2)."""


@dataclasses.dataclass
class Unit:
    """One state of a step: native tasks one each, consecutive Lambda tasks together."""

    step: StepSpec
    indexes: tuple[int, ...]
    native: dict[str, Any] | None  # the executor's Task state or fragment; None: our Lambda
    restore: tuple[int, ...] = ()  # earlier tasks of the step done by batches: restored first

    @property
    def batched(self) -> bool:
        """A batch map: a Distributed Map whose children run the task in our Lambda."""
        return self.native is not None and _is_batch_map(self.native)


@dataclasses.dataclass
class Compiled:
    definition: dict[str, Any]
    lambda_steps: list[str]  # steps (some of) whose tasks run in our Lambda
    native_tasks: dict[str, str]  # "step.task" -> the integration's Resource (or "loop")
    notes: list[str]
    uses_batches: bool = False  # a Distributed Map: the template adds the batch bucket

    @property
    def uses_lambda(self) -> bool:
        return bool(self.lambda_steps)

    def text(self) -> str:
        return json.dumps(self.definition, indent=2, sort_keys=False) + "\n"


def compile_routine(routine: Routine, routine_ref: str, version: str,
                    function: str = FUNCTION_REF, raw: dict[str, Any] | None = None) -> Compiled:
    """The state machine of ``routine`` (loaded and validated). ``routine_ref`` is where the
    Lambda finds the routine in its package; ``raw`` the routine's document (default: its file)."""
    doc = raw if raw is not None else parse_file(routine.file)
    return _Compiler(routine, doc, routine_ref, version, function).compile()


class _Names:
    """State names: unique across the machine and at most 80 characters."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        # Names must be unique across the whole machine, branches included: a clash gets a ' #N'
        # suffix (from 2), and is shortened further when the suffix would push it over the limit.
        name = wanted if len(wanted) <= MAX_STATE_NAME else self._shortened(wanted)
        n = 2
        while name in self.used:
            suffix = f" #{n}"
            name = (wanted if len(wanted) + len(suffix) <= MAX_STATE_NAME
                    else self._shortened(wanted, len(suffix))) + suffix
            n += 1
        self.used.add(name)
        return name

    @staticmethod
    def _shortened(name: str, room: int = 0) -> str:
        # A digest of the full name, not a counter: two long names with the same first 70
        # characters stay apart, and the same routine compiles to the same names every time. 10 =
        # '..' + 8 hex digits.
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        return f"{name[:MAX_STATE_NAME - room - 10]}..{digest}"


# A piece of a chain: given the name of the state after it (None: the end), add its states and
# return the name of its first state.
Piece = Callable[[dict[str, Any], "str | None"], str]


class _Compiler:
    def __init__(self, routine: Routine, doc: dict[str, Any], routine_ref: str, version: str,
                 function: str) -> None:
        self.routine, self.doc = routine, doc
        self.routine_ref, self.version, self.function = routine_ref, version, function
        self.names = _Names()
        self.lambda_steps: list[str] = []
        self.native: dict[str, str] = {}
        self.notes: list[str] = []
        self.uses_batches = False
        # never in the definition: secret values, and ${secret.X}/${ssm.X} references, which the
        # Lambda reads where they are kept when it loads the routine (from its own defaults)
        self.secret_params = {
            k for k, v in routine.params.items()
            if SECRET_NAME.search(k) or (isinstance(v, str) and v in routine.secrets)
            or secret_references(json.dumps(v))}

    # ------------------------------------------------------------------ whole machine

    def compile(self) -> Compiled:
        units = {s.name: self.units(s) for s in self.routine.steps if s.active}
        # Reserved before any step takes a name: a step called 'Failed' must not become the Fail
        # state.
        self.names.used |= {FAILED_STATE, SUCCEEDED_STATE}
        states: dict[str, Any] = {}
        pieces: list[Piece] = [self.input_piece()]
        if not self.routine.active:
            pieces.append(
                self.note_piece("Routine inactive", "routine is inactive (active: false)")
            )
        else:
            for layer in self.layers():
                pieces.append(self.layer_piece(layer, units))
        # The run record lives in the store only the Lambda writes to; a machine of native states
        # only has no record to finish.
        finish = self.finish_piece("succeeded") if self.lambda_steps else None
        if finish:
            pieces.append(finish)
        states[SUCCEEDED_STATE] = {"Type": "Succeed"}
        start = _chain(pieces, states, SUCCEEDED_STATE)
        self.add_fail(states)
        definition = {
            "Comment": (
                f"routine {self.routine.name} version {self.version}, compiled by orchestrator"
            ),
            "StartAt": start,
            "States": states,
        }
        self.check_size(definition)
        self.check_secrets(definition)
        return Compiled(definition, self.lambda_steps, self.native, self.notes, self.uses_batches)

    def add_fail(self, states: dict[str, Any]) -> None:
        fail = {"Type": "Fail", "Error": STEP_FAILED, "CausePath": "States.JsonToString($.failure)"}
        if not self.lambda_steps:
            states[FAILED_STATE] = fail
            return
        # Recording the failure may fail too (its Catch): the execution still ends in the Fail
        # state with the step's error, not the recorder's.
        record = self.names.take("Record failure")
        states[record] = {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": self.function, "Payload": {
                **self.lambda_identity(), "finish": "failed", "failure.$": "$.failure"}},
            "ResultPath": None, "Retry": [LAMBDA_RETRY],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": FAILED_STATE}],
            "Next": FAILED_STATE}
        states[FAILED_STATE] = fail
        # every catcher that leads to the Fail state passes by the record first
        for name, state in states.items():
            if name != record and state.get("Next") == FAILED_STATE and state["Type"] == "Pass":
                state["Next"] = record

    def check_size(self, definition: dict[str, Any]) -> None:
        # Measured compact, the smallest form the definition can be sent in, so a routine is
        # refused only when no formatting would make it fit.
        size = len(json.dumps(definition, separators=(",", ":")).encode())
        if size > MAX_DEFINITION_BYTES:
            raise CompileError(
                f"{self.routine.file}: the state machine would be {size:,} bytes, over "
                f"Step Functions' limit of {MAX_DEFINITION_BYTES:,}; split the routine"
            )

    def check_secrets(self, definition: dict[str, Any]) -> None:
        """No secret value may be written into a definition (anyone who can
        describe it reads it)."""
        text = json.dumps(definition)
        # State by state first, to name the step; then the whole text, for what lies outside the
        # states. Values under 3 characters are skipped as mask() skips them: they would match
        # almost anywhere.
        for step_name, state_text in _state_texts(definition):
            for secret in self.routine.secrets:
                if len(secret) >= 3 and secret in state_text:
                    raise CompileError(
                        f"{self.routine.file}: step {step_name}: a secret value would be "
                        "written into the state machine definition; let the task run in the "
                        "orchestrator's Lambda (which resolves it at run time) or reference it "
                        "from Secrets Manager/SSM"
                    )
        if any(len(s) >= 3 and s in text for s in self.routine.secrets):
            raise CompileError(
                f"{self.routine.file}: a secret value would be written into the state "
                "machine definition"
            )

    # ------------------------------------------------------------------ input

    def defaults(self) -> dict[str, Any]:
        return {k: v for k, v in self.routine.params.items() if k not in self.secret_params}

    def input_piece(self) -> Piece:
        def piece(states: dict[str, Any], after: str | None) -> str:
            has_params, no_params = self.names.take("Input has params?"), self.names.take(
                "No params given"
            )
            defaults, has_date = self.names.take("Routine defaults"), self.names.take(
                "Run date given?"
            )
            start, start_dated = self.names.take("Start run"), self.names.take(
                "Start run on given date"
            )
            # Step Functions only merges shallowly (the flag must be false): a param given in the
            # input replaces the default of that name whole. JsonMerge needs both objects, hence
            # the Choice that gives an execution started with {} (a schedule) empty params first.
            merged = "States.JsonMerge($.defaults, $.params, false)"
            states[has_params] = {"Type": "Choice", "Default": no_params, "Choices": [
                {"Variable": "$.params", "IsPresent": True, "Next": defaults}]}
            states[no_params] = {
                "Type": "Pass",
                "Result": {},
                "ResultPath": "$.params",
                "Next": defaults,
            }
            states[defaults] = {
                "Type": "Pass",
                "Result": self.defaults(),
                "ResultPath": "$.defaults",
                "Next": has_date,
            }
            states[has_date] = {"Type": "Choice", "Default": start, "Choices": [
                {"Variable": "$.run_date", "IsPresent": True, "Next": start_dated}]}
            # The date part of the execution's ISO 8601 start time, so ${run.date} defaults to the
            # day the execution started, as a local run's does.
            today = "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, 'T'), 0)"
            for name, date in ((start, today), (start_dated, "$.run_date")):
                states[name] = _link(
                    {
                        "Type": "Pass",
                        "Parameters": {
                            "params.$": merged,
                            "run": {"id.$": "$$.Execution.Name", "date.$": date},
                        },
                    },
                    after,
                )
            return has_params
        return piece

    def note_piece(self, name: str, why: str) -> Piece:
        def piece(states: dict[str, Any], after: str | None) -> str:
            taken = self.names.take(name)
            # ResultPath None: a Pass state would otherwise replace the input that the states after
            # it read ($.params, $.run).
            states[taken] = _link({"Type": "Pass", "Comment": why, "Result": {"skipped": why},
                                   "ResultPath": None}, after)
            return taken
        return piece

    def finish_piece(self, status: str) -> Piece:
        def piece(states: dict[str, Any], after: str | None) -> str:
            name = self.names.take("Record success")
            states[name] = _link({
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": self.function,
                               "Payload": {**self.lambda_identity(), "finish": status}},
                "ResultPath": None, "Retry": [LAMBDA_RETRY]}, after)
            return name
        return piece

    # ------------------------------------------------------------------ layout

    def layers(self) -> list[list[StepSpec]]:
        """Declared order, one step a layer; with ``depends_on``, steps by depth in the graph."""
        steps = list(self.routine.steps)
        if not self.routine.explicit_dependencies:
            return [[s] for s in steps]
        depth: dict[str, int] = {}
        for planned in plan(self.routine).steps:  # topological order: dependencies come first
            # A step's depth is the longest chain of dependencies before it, so steps of one depth
            # never depend on each other. A layer starts when the whole layer before it has ended:
            # a step may start a little later than under the local engine, which waits only for its
            # own dependencies.
            depth[planned.name] = 1 + max((depth[d] for d in planned.spec.depends_on), default=-1)
        layers: list[list[StepSpec]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for s in steps:
            layers[depth[s.name]].append(s)
        return layers

    def layer_piece(self, layer: list[StepSpec], units: dict[str, list[Unit]]) -> Piece:
        if len(layer) == 1:
            return self.step_piece(layer[0], units.get(layer[0].name, []), FAILED_STATE)

        def piece(states: dict[str, Any], after: str | None) -> str:
            name = self.names.take("Parallel: " + ", ".join(s.name for s in layer))
            catcher = self.names.take(f"{name} failed")
            branches = []
            for step in layer:
                branch_states: dict[str, Any] = {}
                # A branch's states cannot go to a state outside the branch: each branch ends in
                # its own Fail, which fails the Parallel, whose Catch then records the failure at
                # the top level.
                fail = self.names.take(f"{step.name} failed")
                start = self.step_piece(step, units.get(step.name, []), fail)(branch_states, None)
                branch_states[fail] = {"Type": "Fail", "Error": STEP_FAILED,
                                       "CausePath": "States.JsonToString($.failure)"}
                branches.append({"StartAt": start, "States": branch_states})
            # ResultPath None: the branches' outputs (one per branch) must not replace $.params and
            # $.run, which the next layer reads.
            states[name] = _link({"Type": "Parallel", "Branches": branches, "ResultPath": None,
                                  "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                             "Next": catcher}]}, after)
            states[catcher] = self.catcher(", ".join(s.name for s in layer), None)
            return name
        return piece

    def step_piece(self, step: StepSpec, step_units: list[Unit], fail: str) -> Piece:
        if not step.active:
            return self.note_piece(
                f"{step.name} (inactive)", f"step {step.name} is inactive (active: false)"
            )

        def piece(states: dict[str, Any], after: str | None) -> str:
            pieces = [self.unit_piece(u, fail) for u in step_units]
            if not pieces:
                pieces = [
                    self.note_piece(f"{step.name} (no tasks)", f"step {step.name} has no tasks")
                ]
            return _chain(pieces, states, after)
        return piece

    def catcher(self, step: str, task: str | None, fail: str = FAILED_STATE) -> dict[str, Any]:
        # The Catch put the error under $.error; the failure is built beside it, so the
        # recorder and the Fail state (CausePath) still find the run's params and ids in the
        # same input.
        return {
            "Type": "Pass",
            "Parameters": {
                "step": step,
                "task": task,
                "error.$": "$.error.Error",
                "cause.$": "$.error.Cause",
            },
            "ResultPath": "$.failure",
            "Next": fail,
        }

    # ------------------------------------------------------------------ units

    def units(self, step: StepSpec) -> list[Unit]:
        # The loaded routine has ${params.X} and ${run.X} already resolved with the defaults; a
        # state machine resolves them per execution, so the raw text is put back where it held one.
        entry = _raw_entry(self.doc, step.path)
        raw_params = entry.get("params") if isinstance(entry.get("params"), dict) else {}
        given = entry.get("tasks")
        raw_tasks = given if isinstance(given, list) else []
        params = _with_references(step.params, raw_params)
        result: list[Unit] = []
        batched: tuple[int, ...] = ()
        for index, call in enumerate(step.tasks):
            raw_task = raw_tasks[index] if index < len(raw_tasks) else {}
            raw_args = raw_task.get("args") if isinstance(raw_task, dict) else None
            args = _with_references(call.args, raw_args if isinstance(raw_args, dict) else {})
            try:  # a task reading ${steps...} or a secret runs in our Lambda, which resolves them
                native = (
                    None
                    if call.references or _reads_secrets(args, params, self.secret_params)
                    else step.executor.cls.state_machine_task(call.task, args, params)
                )
            except Uncompilable as exc:
                raise CompileError(
                    f"{self.routine.file}: {step.path}.tasks[{index}]: step {step.name} "
                    f"task {call.task} cannot run in a state machine: {exc}"
                ) from None
            if native is not None:
                self.check_native(step, index, call, native)
                batch = _is_batch_map(native)
                kind = "distributed map" if batch else native.get("Resource", "loop")
                self.native[f"{step.name}.{call.task}"] = kind
                result.append(Unit(step, (index,), native))
                batched += (index,) if batch else ()
            # Consecutive Lambda tasks of a step run in one invocation, on one executor instance,
            # as they do locally: a later task may act on what an earlier one did (post_staging on
            # what transfer copied). A native task in between starts a new unit.
            elif result and result[-1].native is None:
                result[-1].indexes += (index,)
            else:
                result.append(Unit(step, (index,), None, batched))
        # A batch map's children invoke our Lambda too, so such a step needs the function.
        if any(u.native is None or u.batched for u in result):
            self.lambda_steps.append(step.name)
            self.note_lambda_limits(step, [u for u in result if u.native is None])
        if any(u.batched for u in result):
            self.uses_batches = True
        return result

    def check_native(
        self, step: StepSpec, index: int, call: TaskCall, native: dict[str, Any]
    ) -> None:
        where = (
            f"{self.routine.file}: {step.path}.tasks[{index}]: step {step.name} task {call.task}"
        )
        text = json.dumps(native)
        secret = sorted(p for p in self.secret_params if f"params.{p}" in text)
        if secret:
            raise CompileError(
                f"{where}: uses secret param {secret[0]}, which is never written into "
                "a state machine; run the task in the orchestrator's Lambda instead"
            )
        # The Lambda resolves ${env.X} from its own environment; a native state has none.
        if "${env." in text:
            raise CompileError(f"{where}: ${{env.X}} has no value in a state machine; use a param")
        unknown = set().union(*(referenced_params(s) for s in _strings(native))) - set(
            self.routine.params
        )
        if unknown:
            raise CompileError(
                f"{where}: ${{params.{sorted(unknown)[0]}}} is not a param of the routine"
            )
        # Only a Distributed Map, which reads its items from S3, can be compiled here: an inline
        # Map's items would have to be in the state's input.
        if native.get("Type") == "Map" and "ItemReader" not in native:
            raise CompileError(f"{where}: a Map state needs an ItemReader (a Distributed Map)")
        if not ("Type" in native or ("StartAt" in native and "States" in native)):
            raise CompileError(
                f"{where}: the executor returned neither a Task state nor a fragment"
            )

    def note_lambda_limits(self, step: StepSpec, lambda_units: list[Unit]) -> None:
        """A Lambda invocation stops after 15 minutes; say so where the routine allows longer."""
        for unit in lambda_units:
            calls = [step.tasks[i] for i in unit.indexes]
            # A task without a timeout adds nothing: the note is about what the routine
            # explicitly allows.
            worst = sum(
                (c.timeout or 0) * (c.retries + 1) + c.retry_delay * c.retries for c in calls
            )
            if worst > LAMBDA_SECONDS:
                tasks = ", ".join(c.task for c in calls)
                self.notes.append(
                    f"step {step.name} ({tasks}) runs in the Lambda, which stops after "
                    f"15 minutes, but its timeouts and retries allow {worst:g} s"
                )

    def lambda_identity(self) -> dict[str, Any]:
        # The execution's name is the run id; its ARN is recorded as the run's host, so
        # that cancel RUN_ID can stop the execution.
        return {"routine": self.routine_ref, "version": self.version,
                "execution.$": "$$.Execution.Name", "execution_arn.$": "$$.Execution.Id"}

    def unit_piece(self, unit: Unit, fail: str) -> Piece:
        step = unit.step
        calls = [step.tasks[i] for i in unit.indexes]
        label = f"{step.name}.{'+'.join(c.task for c in calls)}"

        def piece(states: dict[str, Any], after: str | None) -> str:
            name = self.names.take(label)
            catcher = self.names.take(f"{label} failed")
            task_label = ", ".join(c.task for c in calls)
            states[catcher] = self.catcher(step.name, task_label, fail)
            catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": catcher}]
            if unit.native is None:
                # Tasks by index, not by name: a step may call the same task twice.
                payload = {**self.lambda_identity(), "step": step.name, "tasks": list(unit.indexes),
                           "params.$": "$.params", "run_date.$": "$.run.date"}
                if unit.restore:  # done by a batch map just before: rebuilt, not run again
                    payload["restore"] = list(unit.restore)
                state = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": self.function, "Payload": payload},
                         "ResultPath": None, "Retry": [LAMBDA_RETRY], "Catch": catch}
            elif unit.batched:
                state = self.batch_map_state(unit, calls[0], name, catch)
            else:
                state = self.native_state(unit.native, calls[0], name, catch)
            states[name] = _link(state, after)
            return name
        return piece

    def batch_map_state(self, unit: Unit, call: TaskCall, name: str,
                        catch: list[dict[str, Any]]) -> dict[str, Any]:
        """A Distributed Map over the executor's ItemReader: each child invokes our Lambda with a
        batch of items (``Executor.run_batch``); the task's retries retry a batch, not the map.
        Results go to the batch bucket, so a map of any size stays within the state size limit."""
        # A deep copy: the executor's fragment is filled in below and must stay as the executor
        # gave it.
        native = json.loads(json.dumps(unit.native))
        try:
            reader = native["ItemReader"]
            if "Parameters" in reader:
                reader["Parameters"] = resolve_fields(reader["Parameters"])
        except ReferenceProblem as exc:
            raise CompileError(f"{self.routine.file}: step {name}: {exc}") from None
        batcher = native.setdefault("ItemBatcher", {"MaxItemsPerBatch": ITEMS_PER_BATCH})
        # A child sees only its items and BatchInput, not the parent's input: params, date and
        # execution are handed down explicitly.
        batcher["BatchInput"] = {"params.$": "$.params", "run_date.$": "$.run.date",
                                 "execution.$": "$$.Execution.Name",
                                 "execution_arn.$": "$$.Execution.Id"}
        retry: list[dict[str, Any]] = [LAMBDA_RETRY]
        if call.retries:
            retry.append({"ErrorEquals": ["States.ALL"],
                          "IntervalSeconds": max(1, int(math.ceil(call.retry_delay))),
                          "MaxAttempts": call.retries, "BackoffRate": 2})
        child = self.names.take(f"{name}: batch")
        # STANDARD children: an EXPRESS child workflow stops after 5 minutes, a batch may take
        # up to Lambda's 15.
        native["ItemProcessor"] = {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": child, "States": {child: {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": self.function, "Payload": {
                    "routine": self.routine_ref, "version": self.version,
                    "execution.$": "$.BatchInput.execution",
                    "execution_arn.$": "$.BatchInput.execution_arn",
                    "step": unit.step.name, "task": unit.indexes[0], "batch.$": "$.Items",
                    "params.$": "$.BatchInput.params", "run_date.$": "$.BatchInput.run_date"}},
                "ResultSelector": {"summary.$": "$.Payload"}, "Retry": retry, "End": True}}}
        native["ResultWriter"] = {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {
            "Bucket": BATCH_BUCKET_REF, "Prefix": f"map-results/{self.routine.name}"}}
        native["ResultPath"] = None
        if call.timeout:
            native["TimeoutSeconds"] = int(math.ceil(call.timeout))
        native["Catch"] = catch
        return native

    def native_state(self, native: dict[str, Any], call: TaskCall, name: str,
                     catch: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            # Inside the Parallel the loop reads params, run and its timeout from the state's
            # input: loops check their timeout themselves, with a year standing for none.
            if "StartAt" in native:  # a loop: run it as a branch, so it retries and fails as one
                inner = {k: self.names.take(f"{name}: {k}") for k in native["States"]}
                branch = {"StartAt": inner[native["StartAt"]],
                          "States": {inner[k]: _resolved(_renamed(v, inner))
                                     for k, v in native["States"].items()}}
                state: dict[str, Any] = {
                    "Type": "Parallel",
                    "Branches": [branch],
                    "Parameters": {
                        "params.$": "$.params",
                        "run.$": "$.run",
                        "timeout": int(math.ceil(call.timeout)) if call.timeout else NO_TIMEOUT,
                    },
                    "ResultPath": None,
                }
            else:
                state = _resolved(dict(native))
                # The integration's response would otherwise replace the input the later states
                # read.
                state.setdefault("ResultPath", None)
                if call.timeout:
                    # ASL wants whole seconds: rounded up, so a task is never cut shorter than the
                    # routine allows.
                    state["TimeoutSeconds"] = int(math.ceil(call.timeout))
        except ReferenceProblem as exc:
            raise CompileError(f"{self.routine.file}: step {name}: {exc}") from None
        if call.retries:
            state["Retry"] = [{"ErrorEquals": ["States.ALL"],
                               "IntervalSeconds": max(1, int(math.ceil(call.retry_delay))),
                               "MaxAttempts": call.retries, "BackoffRate": 2}]
        state["Catch"] = catch
        return state


# ---------------------------------------------------------------------- helpers

def _reads_secrets(args: Any, params: Any, secret_params: set[str]) -> bool:
    """A task whose args or params reference a secret runs in the Lambda, which reads it when it
    loads the routine: a native state would need its value in the definition or its history."""
    text = json.dumps([args, params])
    # The closing brace is part of the test: ${params.db_host} is no use of a secret param db.
    return bool(secret_references(text)) or any(f"params.{p}}}" in text for p in secret_params)


def _is_batch_map(native: dict[str, Any]) -> bool:
    # The executor gives the Map and its reader and leaves the processor to the compiler, which
    # makes it a child that runs the task in our Lambda (batch_map_state).
    return native.get("Type") == "Map" and "ItemProcessor" not in native


def _chain(pieces: list[Piece], states: dict[str, Any], after: str | None) -> str:
    """Wire pieces in order, last to first, so each knows the state after it."""
    for piece in reversed(pieces):
        after = piece(states, after)
    assert after is not None
    return after


def _link(state: dict[str, Any], after: str | None) -> dict[str, Any]:
    if after is None:
        state["End"] = True
    else:
        state["Next"] = after
    return state


def _renamed(state: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A fragment's state with its transitions renamed into the machine's namespace."""
    copy = json.loads(json.dumps(state))
    for holder in (copy, *copy.get("Choices", []), *copy.get("Catch", [])):
        for key in ("Next", "Default"):
            if key in holder:
                holder[key] = names[holder[key]]
    return copy


def _resolved(state: dict[str, Any]) -> dict[str, Any]:
    for key in ("Parameters", "Arguments"):
        if key in state:
            state[key] = resolve_fields(state[key])
    return state


def _raw_entry(doc: Any, path: str) -> dict[str, Any]:
    """The routine document's entry at ``executors[3]`` or ``executors.NAME``."""
    executors = doc.get("executors") if isinstance(doc, dict) else None
    if path.startswith("executors[") and isinstance(executors, list):
        entry = executors[int(path[len("executors["):-1])]
    elif path.startswith("executors.") and isinstance(executors, dict):
        entry = executors.get(path[len("executors."):])
    else:
        entry = None
    return entry if isinstance(entry, dict) else {}


def _with_references(resolved: Any, raw: Any) -> Any:
    """``resolved`` with the routine's raw text wherever that held a
    ``${params.X}``/``${run.X}``."""
    if isinstance(raw, str) and has_runtime_reference(raw):
        return raw
    if isinstance(resolved, dict) and isinstance(raw, dict):
        return {k: _with_references(v, raw.get(k)) for k, v in resolved.items()}
    if isinstance(resolved, list) and isinstance(raw, list) and len(raw) == len(resolved):
        return [_with_references(v, r) for v, r in zip(resolved, raw)]
    return resolved


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _state_texts(definition: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for name, state in definition.get("States", {}).items():
        yield name, json.dumps(state)
