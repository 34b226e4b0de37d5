"""Step Functions fragments the AWS executors share: a ``.sync`` Task, a submit-and-poll loop.

The loop waits like our own polling (``remote.Backoff``): short at first, then growing — here
doubling, from ``FIRST_WAIT`` up to ``CAP_WAIT`` seconds — and, once the waits add up to the
task's ``timeout`` (the fragment's input carries it, see ``Executor.state_machine_task``), stops
the remote work and fails with ``ENGINE.Timeout`` (``States.`` error names are reserved for Step
Functions' own errors: moto refuses a Fail state using one).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

FIRST_WAIT, CAP_WAIT = 1, 30


def sync_task(resource: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A Task state for an optimised integration: Step Functions starts the
    work and waits for it."""
    return {"Type": "Task", "Resource": resource, "Parameters": parameters}


def sdk(service: str, action: str) -> str:
    # The generic SDK integration reaches any API action but has no .sync form: work started this
    # way is waited for by poll_loop below.
    return f"arn:aws:states:::aws-sdk:{service}:{action}"


def poll_loop(*, engine: str, submit: dict[str, Any], describe: dict[str, Any], id_field: str,
              submit_id: str | None = None, status: str | None = None,
              succeeded: Sequence[str] = (), failed: Sequence[str] = (), reason: str | None = None,
              seen: dict[str, str] | None = None,
              rules: list[dict[str, Any]] | None = None,
              stop: dict[str, Any] | None = None) -> dict[str, Any]:
    """Submit, then Wait / describe / Choice with doubling waits, as a fragment.

    ``submit`` is a Task state whose response's ``submit_id`` (a JSONPath) names the work (without
    it, ``describe`` already names it); ``describe`` a Task state whose Parameters get ``id_field``
    set to that id. The describe response is narrowed to ``seen`` (default ``{"state": status}``) at
    ``$.poll.seen``; ``rules`` are Choice rules on it leading to ``Succeeded`` or ``Failed``
    (default: the state among ``succeeded`` / ``failed``). ``reason`` is the JSONPath of an error
    message in the describe response, read once more when the work failed (it is absent before).

    ``stop`` is a Task state that stops the remote work (its Parameters get ``id_field`` like
    ``describe``): when the waits reach the task's timeout it runs before the loop fails, so a
    timed-out task leaves no statement or crawl running. A stop that fails (the work ended
    meanwhile) still fails the loop with the timeout.
    """
    check = dict(describe)
    if submit_id:
        check["Parameters"] = {**describe.get("Parameters", {}), f"{id_field}.$": "$.poll.id"}
    on_failure = "Why failed" if reason else "Failed"
    rules = rules or [
        *(
            {"Variable": "$.poll.seen.state", "StringEquals": s, "Next": "Succeeded"}
            for s in succeeded
        ),
        *({"Variable": "$.poll.seen.state", "StringEquals": s, "Next": "Failed"} for s in failed),
    ]
    rules = [{**r, "Next": on_failure} if r["Next"] == "Failed" else r for r in rules]
    # Without submit_id the id is a constant of the definition (a crawler's name), quoted here as
    # a string literal for States.Format.
    what = "$.poll.id" if submit_id else "'" + str(describe["Parameters"].get(id_field, "")) + "'"
    states: dict[str, Any] = {
        "Submit": (
            {
                **submit,
                "ResultSelector": {"id.$": submit_id},
                "ResultPath": "$.poll",
                "Next": "First wait",
            }
            if submit_id
            else {**submit, "ResultPath": None, "Next": "First wait"}
        ),
        "First wait": {
            "Type": "Pass",
            # elapsed adds up the waits, not wall time: describe calls and their retries are not
            # counted, so the timeout may fire a little late but never early.
            "Result": {"wait": FIRST_WAIT, "elapsed": 0},
            "ResultPath": "$.clock",
            "Next": "Wait",
        },
        "Wait": {"Type": "Wait", "SecondsPath": "$.clock.wait", "Next": "Describe"},
        "Describe": {
            **check,
            # Narrowed to what the Choice needs: state data is capped at 256 KiB, and a whole
            # describe answer (query text, crawler settings) would be carried through every round of
            # the loop.
            "ResultSelector": seen or {"state.$": status},
            "ResultPath": "$.seen",
            "Next": "Done?",
        },
        "Done?": {
            "Type": "Choice",
            "Default": "Longer wait",
            "Choices": [_on_seen(r) for r in rules],
        },
        "Longer wait": {
            "Type": "Pass",
            "Parameters": {
                # Doubling rather than our ratio × elapsed: intrinsic functions can add but not
                # multiply.
                "wait.$": "States.MathAdd($.clock.wait, $.clock.wait)",
                "elapsed.$": "States.MathAdd($.clock.elapsed, $.clock.wait)",
            },
            "ResultPath": "$.clock",
            "Next": "Capped?",
        },
        # The doubled wait is capped afterwards: a Choice can compare values but not take a minimum.
        "Capped?": {
            "Type": "Choice",
            "Default": "Timed out?",
            "Choices": [
                {"Variable": "$.clock.wait", "NumericGreaterThan": CAP_WAIT, "Next": "Cap wait"}
            ],
        },
        "Cap wait": {
            "Type": "Pass",
            "Parameters": {"wait": CAP_WAIT, "elapsed.$": "$.clock.elapsed"},
            "ResultPath": "$.clock",
            "Next": "Timed out?",
        },
        "Timed out?": {
            "Type": "Choice",
            "Default": "Wait",
            "Choices": [
                {
                    "Variable": "$.clock.elapsed",
                    "NumericGreaterThanEqualsPath": "$.timeout",
                    "Next": "Stop" if stop else "Timed out",
                }
            ],
        },
        "Timed out": {
            "Type": "Fail",
            "Error": f"{engine}.Timeout",
            "CausePath": f"States.Format('{engine} {{}} still running when the task "
            f"timed out', {what})",
        },
        "Failed": {
            "Type": "Fail",
            "Error": f"{engine}.Failed",
            "CausePath": f"States.Format('{engine} {{}} failed', {what})",
        },
        "Succeeded": {"Type": "Succeed"},
    }
    if stop:
        halt = dict(stop)
        if submit_id:
            halt["Parameters"] = {**stop.get("Parameters", {}), f"{id_field}.$": "$.poll.id"}
        # ResultPath None keeps $.poll, whose id the Timed out cause names. Retried for throttling,
        # then caught: whether or not the stop got through, the loop ends with the timeout error.
        states["Stop"] = {**halt, "ResultPath": None, "Next": "Timed out",
                          "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                                     "MaxAttempts": 2, "BackoffRate": 2}],
                          "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None,
                                     "Next": "Timed out"}]}
    if reason:
        # A separate describe after the failure: the reason field is absent while the work runs, and
        # a ResultSelector path that matches nothing is a runtime error, so Describe cannot select
        # it.
        states["Why failed"] = {**check, "ResultSelector": {"reason.$": reason},
                                "ResultPath": "$.why", "Next": "Failed with reason"}
        states["Failed with reason"] = {
            "Type": "Fail", "Error": f"{engine}.Failed",
            "CausePath": f"States.Format('{engine} {{}} failed: {{}}', {what}, $.why.reason)"}
        # a response without the message (it is optional) still fails, with what we know
        states["Why failed"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": None,
                                          "Next": "Failed"}]
    return {"StartAt": "Submit", "States": states}


def _on_seen(rule: dict[str, Any]) -> dict[str, Any]:
    """Rules are written against ``$.poll.seen``; the describe result lands at ``$.seen``."""
    text = json.dumps(rule).replace("$.poll.seen", "$.seen")
    return json.loads(text)
