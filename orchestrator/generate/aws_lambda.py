"""``--target lambda``: ``function.zip`` for the Lambda Python runtime and ``template.yaml`` (SAM).

The zip holds the orchestrator and its dependencies (wheels for the runtime's platform, see
``lambda_wheels``) and the routine with its files under ``routines/NAME/`` (a trusted, packaged
routine). The template deploys the function with ``orchestrator.aws_lambda.handler``, the trust
allowlists, an EventBridge schedule or S3 trigger, a dead-letter queue, and an IAM policy derived
from the routine through the ``aws_iam_statements`` hook: only the buckets and prefixes, Athena
workgroups, Glue jobs and tables and Redshift targets it names.

Lambda's own retries of a failed run are off (``MaximumRetryAttempts: 0``): retries belong to the
routine's tasks, and a whole-run retry would repeat steps that succeeded (queries cost money);
a failed event goes to the dead-letter queue instead, to inspect and replay.

Deploy: ``sam deploy --guided`` or ``aws cloudformation package`` + ``deploy`` in the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .archive import Archive
from .lambda_wheels import Runtime, for_runtime
from .packaging import packages
from .targets import Job

HANDLER = "orchestrator.aws_lambda.handler"
# Where Lambda unpacks function.zip (LAMBDA_TASK_ROOT): read-only, and on sys.path.
TASK_ROOT = "/var/task"
# MB and seconds; 900 s is the most Lambda allows. The handler cancels the run a margin before the
# deadline, so remote work is stopped rather than left running.
DEFAULT_MEMORY, DEFAULT_TIMEOUT = 1024, 900
# Exactly what the DynamoDB run store calls (see README, "Run store in DynamoDB"), on its table
# only.
STORE_ACTIONS = [
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:TransactWriteItems",
    "dynamodb:UpdateItem",
]


def runtime(job: Job) -> Runtime:
    # The runtime is this interpreter's version: the .pyc files in the zip are compiled here, and
    # the dependency set is the one installed here.
    return Runtime("%d.%d" % sys.version_info[:2], job.options.get("architecture") or "x86_64")


def routine_key(job: Job) -> str:
    return f"routines/{job.bundle.name}/{job.bundle.routine}"


def iam_statements(job: Job) -> tuple[list[dict[str, Any]], list[str]]:
    """Statements from each step's plugin, de-duplicated; and notes on what could not be derived."""
    statements: list[dict[str, Any]] = []
    notes: list[str] = []
    for step in job.routine.steps:
        # An inactive step never runs, so it gets no grants.
        if not step.active:
            continue
        answers = [a for a in job.registry.hook("aws_iam_statements")(step=step) if a is not None]
        if not answers:
            notes.append(
                f"step {step.name} ({step.executor.name}): no plugin declares its AWS needs, "
                "so none are "
                "granted; add them with --policy-arn"
            )
        for answer in answers:
            # A 'Note' item is how a plugin says what it cannot derive (what a python step's code
            # calls): it is shown to the user, never put in the policy.
            notes.extend(f"step {step.name}: {item['Note']}" for item in answer if "Note" in item)
            statements.extend(item for item in answer if "Note" not in item)
    store = job.options.get("store")
    if store and str(store).startswith("dynamodb://"):
        table = str(store)[len("dynamodb://") :].strip("/")
        table_arn = (
            f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/{table}"
        )
        statements.append(
            {
                "Effect": "Allow",
                "Action": STORE_ACTIONS,
                # index/*: a GSI on routine/started (README) is queried through its own ARN.
                "Resource": [table_arn, f"{table_arn}/index/*"],
            }
        )
    elif not store:
        notes.append(
            "no --store: run records stay in the sandbox's /tmp and vanish with it; "
            "use --store dynamodb://TABLE to keep them"
        )
    trigger = job.options.get("s3_trigger")
    if trigger:
        bucket, _, prefix = trigger[len("s3://") :].partition("/")
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix}*",
            }
        )
    unique: dict[str, dict[str, Any]] = {}
    for statement in statements:
        # Steps on the same bucket or database give equal statements; dicts are not hashable, so
        # their canonical JSON is the key. First seen wins, so the policy keeps the steps' order.
        unique.setdefault(json.dumps(statement, sort_keys=True), statement)
    return [substituted(s) for s in unique.values()], notes


def substituted(statement: dict[str, Any]) -> dict[str, Any]:
    """ARNs with ``${AWS::...}`` become ``Fn::Sub``, which fills partition, region, account in."""

    def sub(value: Any) -> Any:
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict) and not any(k.startswith("Fn::") for k in value):
            return {k: sub(v) for k, v in value.items()}  # a Condition's operators and keys
        # A value that already is an intrinsic function (an 'Fn::' key) is left as the plugin wrote
        # it.
        return {"Fn::Sub": value} if isinstance(value, str) and "${AWS::" in value else value

    return {
        key: sub(value) if key in ("Resource", "Condition") else value
        for key, value in statement.items()
    }


def events(job: Job) -> dict[str, Any]:
    schedule, trigger = job.options.get("schedule"), job.options.get("s3_trigger")
    if schedule:
        return {
            "Schedule": {"Type": "Schedule", "Properties": {"Schedule": schedule, "Enabled": True}}
        }
    if trigger:
        bucket, _, prefix = trigger[len("s3://") :].partition("/")
        # An EventBridge rule rather than SAM's S3 event: that one only works for a bucket created
        # in the same template, and the bucket usually exists already.
        detail: dict[str, Any] = {"bucket": {"name": [bucket]}}
        if prefix:
            detail["object"] = {"key": [{"prefix": prefix}]}
        return {
            "ObjectCreated": {
                "Type": "EventBridgeRule",
                "Properties": {
                    "Pattern": {
                        "source": ["aws.s3"],
                        "detail-type": ["Object Created"],
                        "detail": detail,
                    }
                },
            }
        }
    return {}


def template(job: Job) -> dict[str, Any]:
    statements, _ = iam_statements(job)
    run = runtime(job)
    variables = {
        "ORCHESTRATOR_ROUTINE": routine_key(job),
        # The packaged routine is trusted; a routine sent in an event is not. It may name code only
        # among the packaged routines' files, local data only under /tmp/ (the one writable place),
        # and no ${env.X} at all: the function's credentials are in its environment.
        "ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST": f"{TASK_ROOT}/routines",
        "ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST": "/tmp/",
        "ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST": "",
    }
    if job.options.get("store"):
        variables["ORCHESTRATOR_STORE"] = job.options["store"]
    policies: list[Any] = [{"Version": "2012-10-17", "Statement": statements}] if statements else []
    policies += list(job.options.get("policy_arn") or [])
    function: dict[str, Any] = {
        "Description": f"orchestrator routine {job.label}",
        "CodeUri": "function.zip",
        "Handler": HANDLER,
        "Runtime": f"python{run.python}",
        "Architectures": [run.architecture],
        "MemorySize": job.options.get("memory") or DEFAULT_MEMORY,
        "Timeout": job.options.get("timeout") or DEFAULT_TIMEOUT,
        "Environment": {"Variables": variables},
        "DeadLetterQueue": {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
        "EventInvokeConfig": {"MaximumRetryAttempts": 0},
        "Policies": policies,
    }
    if events(job):
        function["Events"] = events(job)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"orchestrator routine {job.label} (orchestrate generate --target lambda)",
        "Resources": {
            "RoutineFunction": {"Type": "AWS::Serverless::Function", "Properties": function},
            "DeadLetterQueue": {
                "Type": "AWS::SQS::Queue",
                # 14 days, the most SQS keeps a message: time to inspect and replay a failed event.
                "Properties": {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
            },
            "RoutineLogGroup": {
                "Type": "AWS::Logs::LogGroup",
                # Made here rather than left to Lambda, whose own log group keeps logs forever;
                # retained when the stack is deleted, so the logs of past runs outlive the
                # function.
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "LogGroupName": {"Fn::Sub": "/aws/lambda/${RoutineFunction}"},
                    "RetentionInDays": 30,
                },
            },
        },
        "Outputs": {
            "FunctionName": {"Value": {"Ref": "RoutineFunction"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
        },
    }


def function_zip(job: Job, into: Path) -> None:
    from ..home import home_dir

    ours, texts, deps = packages()
    run = runtime(job)
    # Downloaded runtime wheels are kept in the home, one folder per Python and CPU, so only the
    # first generate for a runtime needs a package index.
    cache = home_dir() / "wheels" / f"{run.abi}-{run.architecture}"
    fitted = [for_runtime(d, run, cache, job.say) for d in deps]
    job.say(
        f"bundling {ours.pin} and {len(deps)} dependencies for "
        f"python{run.python} {run.architecture}"
    )
    archive = Archive()
    # No prefix: /var/task, the zip's root, is on the runtime's sys.path.
    archive.add_packages([ours, *fitted])
    for relative, text in texts.items():
        archive.add_bytes(relative, text.encode())
    for relative, path in job.bundle.files.items():
        archive.add_file(f"routines/{job.bundle.name}/{relative}", path)
    into.write_bytes(archive.to_bytes())


class LambdaTarget:
    name = "lambda"
    summary = (
        "function.zip for the Lambda Python runtime and a SAM template with trigger, DLQ and IAM"
    )
    options = frozenset(
        {"schedule", "s3_trigger", "store", "memory", "timeout", "architecture", "policy_arn"}
    )
    folder = True

    def default_output(self, job: Job) -> str:
        return f"{job.bundle.name}-lambda"

    def plan(self, job: Job) -> list[str]:
        run = runtime(job)
        statements, notes = iam_statements(job)
        trigger = (
            job.options.get("schedule")
            or job.options.get("s3_trigger")
            or "none (invoke it yourself)"
        )
        steps = [
            f"write function.zip: the orchestrator, its dependencies for "
            f"python{run.python} {run.architecture}, "
            f"{routine_key(job)} and {len(job.bundle.files) - 1} files it names",
            f"write template.yaml: {HANDLER}, trigger {trigger}, dead-letter queue, "
            f"{len(statements)} IAM statements derived from the routine",
        ]
        return steps + [f"note: {n}" for n in notes]

    def build(self, job: Job, into: Path) -> None:
        import yaml

        # plan()'s first two lines are the steps; the rest are the notes on what IAM could not
        # derive.
        for line in self.plan(job)[2:]:
            job.say(line)
        job.say("writing function.zip")
        function_zip(job, into / "function.zip")
        job.say("writing template.yaml")
        text = yaml.safe_dump(template(job), sort_keys=False, width=120)
        (into / "template.yaml").write_text(
            f"# {job.label}: deploy with `sam deploy --guided` in this folder\n{text}"
        )


TARGET = LambdaTarget()
