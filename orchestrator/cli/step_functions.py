"""``orchestrate run ROUTINE --on step-functions --state-machine ARN``, and ``wait``/``cancel`` of
an execution ARN: start an execution of a deployed routine and follow it like a local run.

The execution is named after the run id (``${run.id}``); its input carries the ``--param`` values
and the run date. Progress comes from the execution's history; Ctrl-C (or ``cancel ARN``) stops it
with StopExecution, which also stops ``.sync`` work (queries, job runs, ECS tasks). boto3 loads here
only, when one of these is asked for.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any, Callable

from ..errors import UserError
from ..outcome import ExitCode
from ..routine.substitution import SECRET_NAME

# Shared by state machine and execution ARNs, so it tells both from a run id.
EXECUTION_ARN_PREFIX = "arn:aws:states:"
ENDED = {"SUCCEEDED": ExitCode.OK, "FAILED": ExitCode.FAILED, "TIMED_OUT": ExitCode.FAILED,
         # ABORTED is a StopExecution (Ctrl-C here, cancel, or the console): an interruption, not a
         # failure of the routine.
         "ABORTED": ExitCode.INTERRUPTED}
RUN_STATUS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "failed",
              "ABORTED": "cancelled"}
FIRST_POLL, MAX_POLL = 0.5, 10.0


def client() -> Any:
    import boto3

    return boto3.client("stepfunctions")


def execution_input(routine: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """What the execution starts with: the given params (never secret ones: an execution's input is
    kept in its history) and the run date."""
    secret = sorted(k for k in overrides if SECRET_NAME.search(k))
    if secret:
        raise UserError(f"--param {secret[0]}: a secret would be kept in the execution's history; "
                        "give it to the deployed function (Secrets Manager, SSM) instead")
    # Values from routine.params, not the --param text: they are typed like the routine's defaults
    # there ("3" for a numeric param is already 3). The run date travels too, so every step agrees
    # on ${run.date} however long the execution takes.
    return {"params": {k: routine.params[k] for k in overrides}, "run_date": routine.run_date}


def start(routine: Any, overrides: dict[str, Any], state_machine: str,
          sfn: Any = None) -> str:
    sfn = sfn or client()
    if not state_machine.startswith(EXECUTION_ARN_PREFIX):
        raise UserError(f"--state-machine {state_machine!r}: expected a state machine ARN "
                        "(arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)")
    # Named after the run id: execution names are unique per state machine (for 90 days), so one run
    # id cannot start two executions, and the Lambda's steps, which record under the execution's
    # name, record into this run.
    response = sfn.start_execution(stateMachineArn=state_machine, name=routine.run_id,
                                   input=json.dumps(execution_input(routine, overrides)))
    return str(response["executionArn"])


def follow(execution: str, say: Callable[[str], None], sfn: Any = None,
           timeout: float | None = None) -> dict[str, Any]:
    """Poll until the execution ends (or ``timeout``), saying each state as it is entered or fails;
    polls grow from half a second to ten, so a long execution costs few calls."""
    sfn = sfn or client()
    seen = 0
    started = time.monotonic()
    delay = FIRST_POLL
    while True:
        # Status first, history second: when the status says the execution ended, the history read
        # after it holds every event up to the end, so no last state goes unsaid.
        described = sfn.describe_execution(executionArn=execution)
        for event in _history(sfn, execution, seen):
            seen = max(seen, event["id"])
            line = _progress(event)
            if line:
                say(line)
        if described["status"] in ENDED:
            return described
        if timeout is not None and time.monotonic() - started > timeout:
            from ..runs.control import WaitTimedOut

            raise WaitTimedOut(
                f"execution {execution} still {described['status']} after {timeout:g}s"
            )
        time.sleep(delay)
        delay = min(MAX_POLL, delay * 2)


def _history(sfn: Any, execution: str, after: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    # GetExecutionHistory cannot start after a given event: each poll pages from the start and skips
    # the events already said, by their increasing ids.
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution):
        events += [e for e in page["events"] if e["id"] > after]
    return events


def _progress(event: dict[str, Any]) -> str | None:
    kind = event["type"]
    if kind in ("TaskStateEntered", "ParallelStateEntered"):
        return f"started   {event['stateEnteredEventDetails']['name']}"
    if kind in ("TaskStateExited", "ParallelStateExited"):
        return f"finished  {event['stateExitedEventDetails']['name']}"
    # The compiler turns an inactive step into a Pass state named "STEP (inactive)".
    if kind == "PassStateEntered" and "inactive" in event["stateEnteredEventDetails"]["name"]:
        return f"skipped   {event['stateEnteredEventDetails']['name']}"
    return None


def outcome(described: dict[str, Any]) -> tuple[int, str]:
    status = described["status"]
    line = f"execution {described.get('name', described['executionArn'])} {status.lower()}"
    if described.get("error") or described.get("cause"):
        line += f": {described.get('error', '')} {described.get('cause', '')}".rstrip()
    return int(ENDED.get(status, ExitCode.FAILED)), line


STOP_SETTLE_SECONDS = 10.0


def stop(execution: str, sfn: Any = None) -> dict[str, Any]:
    sfn = sfn or client()
    described = sfn.describe_execution(executionArn=execution)
    if described["status"] == "RUNNING":
        # The error name shows in the execution's history and console, telling a cancel from a
        # failure.
        sfn.stop_execution(executionArn=execution, error="orchestrator.Cancelled",
                           cause="cancelled with orchestrate")
        # the stop is asynchronous where the execution is run elsewhere (seen on moto under
        # load): wait a little for the status to say so rather than report "running"
        deadline = time.monotonic() + STOP_SETTLE_SECONDS
        described = sfn.describe_execution(executionArn=execution)
        while described["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
            described = sfn.describe_execution(executionArn=execution)
    return described


def record_start(routine: Any, execution: str) -> Any:
    """The run in the store under its execution's ARN, so ``cancel``/``wait RUN_ID`` find the
    execution; the Lambda's steps (sharing a DynamoDB store) record into the same run."""
    import dataclasses

    from ..runs.recorder import new_record
    from ..runs.store import external_host, open_store

    store = open_store()
    record = dataclasses.replace(new_record(routine), host=external_host(execution), pid=None,
                                 pid_started=None)
    # The execution has started already: its record is an account of it, not a claim that could
    # still refuse it because another run of the routine is live.
    store.start_run(record, allow_concurrent=True)
    return store


def record_end(store: Any, run_id: str, described: dict[str, Any]) -> None:
    status = RUN_STATUS.get(described["status"])
    if status:
        store.update_run(run_id, status=status, ended=time.time(), heartbeat=time.time())


def cancel_recorded(store: Any, run: Any, execution: str) -> str:
    """``cancel RUN_ID`` of a run recorded under an execution: StopExecution, then the record."""
    described = stop(execution)
    # A record the Lambda's finishing step already ended keeps the status it gave.
    if not run.finished:
        record_end(store, run.run_id, described)
    return outcome(described)[1]


def wait_recorded(store: Any, run: Any, execution: str, timeout: float | None) -> tuple[int, str]:
    described = follow(execution, lambda _: None, timeout=timeout)
    if not run.finished:
        record_end(store, run.run_id, described)
    return outcome(described)


def run(routine: Any, overrides: dict[str, Any], state_machine: str, detach: bool,
        as_json: bool) -> int:
    sfn = client()
    execution = start(routine, overrides, state_machine, sfn)
    store = record_start(routine, execution)
    # The execution goes on in AWS without this process; its ARN is what wait and cancel take.
    if detach:
        print(execution)
        return ExitCode.OK
    # With --json, stdout holds the one JSON document; progress goes to stderr.
    say = (lambda line: print(line, file=sys.stderr)) if as_json else print
    say(f"started execution {execution}")
    previous = signal.getsignal(signal.SIGTERM)
    # SIGTERM (kill, a CI job's timeout) stops the execution like Ctrl-C does, instead of leaving it
    # running in AWS after this process is gone.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        described = follow(execution, say, sfn)
    except KeyboardInterrupt:
        say("stopping the execution (StopExecution)")
        described = stop(execution, sfn)
    finally:
        signal.signal(signal.SIGTERM, previous)
    record_end(store, routine.run_id, described)
    code, line = outcome(described)
    if as_json:
        print(json.dumps({"execution": execution, "status": described["status"].lower(),
                          "error": described.get("error"), "cause": described.get("cause")}))
    else:
        print(line)
    return code


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
