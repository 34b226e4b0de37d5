"""The state machine's own IAM role, least privilege: what its native states call, on what.

Two sources, as ``--target lambda`` does it for the function:
- the executors: each step with native tasks is handed to the ``aws_iam_statements`` hook with
  only those tasks (the buckets, workgroups, jobs, crawlers, clusters they name);
- the states themselves: ``lambda:InvokeFunction`` on the one function; what an integration needs
  beyond the API it calls (``ecs:runTask.sync`` watches the task through an EventBridge rule that
  Step Functions manages: ``events:PutTargets/PutRule/DescribeRule`` on that rule, ``iam:PassRole``
  to ECS); a Distributed Map lists its S3 prefix, starts child executions of this machine and
  writes its results to the batch bucket; log delivery.
No statement has a ``*`` action; a resource is ``*`` only where AWS takes no other (log delivery,
statements of one's own Redshift Data API calls).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable

from ..generate.aws_lambda import substituted

# Partition, region and account come from the stack (Fn::Sub), so one template deploys to any
# account and to the aws-cn and aws-us-gov partitions too.
ARN = "arn:${AWS::Partition}"
REGIONAL = "${AWS::Region}:${AWS::AccountId}"
# Built from the stack name, which the template gives the machine: a Ref to the machine from its
# own role would be a circular dependency.
MACHINE_ARN = f"{ARN}:states:{REGIONAL}:stateMachine:${{AWS::StackName}}"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
ECS_SYNC = "arn:aws:states:::ecs:runTask.sync"
MAP_READER = "arn:aws:states:::s3:listObjectsV2"
# The rule Step Functions manages to learn that an ECS task stopped (.sync).
ECS_RULE = f"{ARN}:events:{REGIONAL}:rule/StepFunctionsGetEventsForECSTaskRule"
LOG_DELIVERY = ["logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                "logs:PutResourcePolicy", "logs:UpdateLogDelivery"]


class UnknownIntegration(ValueError):
    """A Task state's Resource the role cannot grant: said, rather than deploy a broken role."""


# The integrations whose API calls the executors' statements grant (their own hook says what).
FROM_EXECUTORS = {
    "arn:aws:states:::athena:startQueryExecution.sync",
    "arn:aws:states:::glue:startJobRun.sync",
    "arn:aws:states:::aws-sdk:glue:startCrawler", "arn:aws:states:::aws-sdk:glue:getCrawler",
    "arn:aws:states:::aws-sdk:glue:stopCrawler",
    "arn:aws:states:::aws-sdk:redshiftdata:executeStatement",
    "arn:aws:states:::aws-sdk:redshiftdata:batchExecuteStatement",
    "arn:aws:states:::aws-sdk:redshiftdata:describeStatement",
    "arn:aws:states:::aws-sdk:redshiftdata:cancelStatement",
    ECS_SYNC, LAMBDA_INVOKE,
}


def walk_states(states: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for state in states.values():
        yield state
        for branch in state.get("Branches", []):
            yield from walk_states(branch["States"])
        # A Map's inner states: 'Iterator' is the older name of 'ItemProcessor'; both may be met.
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from walk_states(state[key]["States"])


def task_resources(definition: dict[str, Any]) -> list[str]:
    """Every Task state's Resource, in branches and map processors too."""
    return sorted({s["Resource"] for s in walk_states(definition["States"]) if s["Type"] == "Task"})


def executor_statements(routine: Any, registry: Any, native_tasks: dict[str, str]) -> tuple[
        list[dict[str, Any]], list[str]]:
    """Each step's native tasks through the ``aws_iam_statements`` hook; notes on what no plugin
    declares. A Distributed Map's batches run in the function: the function's policy has their
    needs, the machine only lists and fans out (``machine_statements``)."""
    wanted: dict[str, set[str]] = {}
    for key, kind in native_tasks.items():
        if kind == "distributed map":
            continue
        # rpartition: a task is a method name, without dots; a step's name may have some.
        step, _, task = key.rpartition(".")
        wanted.setdefault(step, set()).add(task)
    statements: list[dict[str, Any]] = []
    notes: list[str] = []
    for step in routine.steps:
        if step.name not in wanted or not step.active:
            continue
        # The hook sees the step with its native tasks only: what its Lambda tasks call is the
        # function's policy, not the machine's.
        native = dataclasses.replace(step, tasks=tuple(c for c in step.tasks
                                                       if c.task in wanted[step.name]))
        answers = [a for a in registry.hook("aws_iam_statements")(step=native) if a is not None]
        if not answers:
            notes.append(f"step {step.name} ({step.executor.name}): no plugin declares what its "
                         "native states call; none is granted to the state machine")
        for answer in answers:
            notes += [f"step {step.name}: {item['Note']}" for item in answer if "Note" in item]
            statements += [item for item in answer if "Note" not in item]
    return statements, notes


def machine_statements(definition: dict[str, Any], executors: list[dict[str, Any]], *,
                       function: bool, batch_bucket: bool) -> list[dict[str, Any]]:
    """The role's statements: the executors' plus each state's own needs, de-duplicated."""
    resources = task_resources(definition)
    # An integration nobody grants would deploy and then fail at its first execution with
    # AccessDenied; refusing it at generate time says which one.
    unknown = [r for r in resources if r not in FROM_EXECUTORS]
    if unknown:
        raise UnknownIntegration(f"no IAM actions known for integration {unknown[0]}")
    found = list(executors)
    if LAMBDA_INVOKE in resources and function:
        # The function and its qualified ARNs (':*', versions and aliases).
        found.append(_allow(["lambda:InvokeFunction"], [
            {"Fn::GetAtt": ["RoutineFunction", "Arn"]},
            {"Fn::Sub": "${RoutineFunction.Arn}:*"}]))
    if ECS_SYNC in resources:
        found.append(_allow(["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                            ECS_RULE))
        # The task's own roles are named in the ECS task definition, not here: PassRole is limited
        # by the service it is passed to instead of by role.
        found.append({**_allow(["iam:PassRole"], "*"), "Condition": {
            "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}})
    for state in walk_states(definition["States"]):
        if state.get("Type") == "Map" and "ItemReader" in state:
            found += _map_needs(state, batch_bucket)
    found.append(_allow(LOG_DELIVERY, "*"))  # log delivery takes no narrower resource
    unique: dict[str, dict[str, Any]] = {}
    for statement in found:
        unique.setdefault(json.dumps(statement, sort_keys=True), statement)
    return [substituted(s) for s in unique.values()]


def _map_needs(state: dict[str, Any], batch_bucket: bool) -> list[dict[str, Any]]:
    # A Distributed Map runs its children as executions of this same machine, and must describe
    # and stop them; a child's name has the form '<machine>/<map run>:<id>', hence the '/*'
    # form.
    needs: list[dict[str, Any]] = [
        _allow(["states:StartExecution"], MACHINE_ARN),
        _allow(["states:DescribeExecution", "states:StopExecution"],
               [f"{ARN}:states:{REGIONAL}:execution:${{AWS::StackName}}:*",
                f"{ARN}:states:{REGIONAL}:execution:${{AWS::StackName}}/*"])]
    reader = state["ItemReader"]
    if reader.get("Resource") == MAP_READER:
        parameters = reader.get("Parameters", {})
        bucket, prefix = parameters.get("Bucket"), parameters.get("Prefix")
        if isinstance(bucket, str):
            # ListBucket applies to the bucket, not to keys: only an s3:prefix condition narrows
            # it.
            listing = _allow(["s3:ListBucket"], f"{ARN}:s3:::{bucket}")
            if isinstance(prefix, str) and prefix:
                listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
            needs.append(listing)
    if batch_bucket and "ResultWriter" in state:
        # The ResultWriter writes its result files with multipart uploads, hence the part actions.
        needs.append(_allow(["s3:AbortMultipartUpload", "s3:GetObject",
                             "s3:ListMultipartUploadParts", "s3:PutObject"],
                            {"Fn::Sub": "${BatchStateBucket.Arn}/*"}))
    return needs


def _allow(actions: list[str], resource: Any) -> dict[str, Any]:
    # Sorted actions: equal statements are equal JSON, which is how machine_statements
    # de-duplicates.
    return {"Effect": "Allow", "Action": sorted(actions), "Resource": resource}
