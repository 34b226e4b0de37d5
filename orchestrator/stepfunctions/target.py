"""``orchestrate generate --target step-functions``: the state machine, its SAM template, and the
orchestrator's Lambda (``function.zip``) when some task runs there.

It follows the generate command's ``Target`` protocol (``orchestrator.generate.targets``); the
Lambda's package and policy are the Lambda target's own, imported when needed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from .compile import Compiled, compile_routine
from .role import executor_statements
from .template import UnknownIntegration, build_template

DEFINITION_FILE = "definition.asl.json"


def compiled(job: Any) -> Compiled:
    """Where the Lambda finds the routine: where the Lambda target packs it."""
    routine_ref = f"routines/{job.bundle.name}/{job.bundle.routine}"
    return compile_routine(job.routine, routine_ref, job.version)


class StepFunctionsTarget:
    name = "step-functions"
    summary = (
        "an AWS Step Functions state machine (ASL), with a SAM template: native Athena, Glue, "
        "ECS and Redshift tasks, the rest in the orchestrator's Lambda"
    )
    options = frozenset({"schedule", "s3_trigger", "store", "memory", "timeout", "architecture",
                         "policy_arn"})
    folder = True

    def default_output(self, job: Any) -> str:
        return f"{job.bundle.name}-step-functions"

    def plan(self, job: Any) -> list[str]:
        result = compiled(job)
        lines = [f"compile {job.label} into {DEFINITION_FILE} "
                 f"({len(json.dumps(result.definition)):,} bytes)"]
        lines += [f"native: {task} -> {resource}" for task, resource in result.native_tasks.items()]
        if result.uses_lambda:
            lines.append("in the orchestrator's Lambda: steps " + ", ".join(result.lambda_steps))
            lines.append("bundle function.zip (as --target lambda)")
        lines.append("write template.yaml (state machine, role, trigger"
                     + (", function)" if result.uses_lambda else ")"))
        lines += [f"note: {n}" for n in result.notes]
        return lines

    def build(self, job: Any, into: Path) -> None:
        import yaml

        result = compiled(job)
        for note in result.notes:
            job.say(f"note: {note}")
        (into / DEFINITION_FILE).write_text(result.text())
        function = None
        if result.uses_lambda:
            from ..generate import aws_lambda  # the Lambda target's package and policy

            aws_lambda.function_zip(job, into / "function.zip")
            function = aws_lambda.template(job)["Resources"]["RoutineFunction"]["Properties"]
            function.pop("Events", None)  # the state machine is what is triggered
            function.pop("DeadLetterQueue", None)  # invoked synchronously: errors go to the machine
            function.pop("EventInvokeConfig", None)
            # The Lambda refuses to run tasks for a definition compiled from another version of the
            # routine than the one packaged with it.
            function["Environment"]["Variables"]["ORCHESTRATOR_ROUTINE_VERSION"] = job.version
        # Only the natively run tasks go to the machine's role; the Lambda tasks' needs are already
        # in the function's policy (aws_lambda.template).
        statements, notes = executor_statements(job.routine, job.registry, result.native_tasks)
        for note in notes:
            job.say(f"note: {note}")
        try:
            template = build_template(
                result.definition, label=job.label, definition_file=DEFINITION_FILE,
                function=function, schedule=job.options.get("schedule"),
                s3_trigger=job.options.get("s3_trigger"),
                extra_policies=job.options.get("policy_arn") or (),
                executor_statements=statements, batches=result.uses_batches)
        except UnknownIntegration as exc:
            raise UserError(f"{job.label}: {exc}") from None
        (into / "template.yaml").write_text(yaml.safe_dump(template, sort_keys=False))


TARGET = StepFunctionsTarget()
