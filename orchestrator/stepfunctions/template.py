"""A SAM template deploying a compiled routine: the state machine, its role, the trigger, and the
orchestrator's Lambda when some task runs there.

The state machine's role may start and wait for exactly the integrations its definition uses (each
Task state's ``Resource``) and invoke the routine's function; the function's own policy (what its
tasks touch) comes with its properties, as ``--target lambda`` derives them.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

# What each integration needs of the state machine's role; ``.sync`` ones also describe and stop.
INTEGRATION_ACTIONS: dict[str, list[str]] = {
    "arn:aws:states:::athena:startQueryExecution.sync": [
        "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:StopQueryExecution",
        "athena:GetWorkGroup", "glue:GetDatabase", "glue:GetTable", "glue:GetPartition",
        "glue:GetPartitions", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket",
        "s3:PutObject", "s3:AbortMultipartUpload"],
    "arn:aws:states:::glue:startJobRun.sync": [
        "glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
    "arn:aws:states:::ecs:runTask.sync": [
        "ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "iam:PassRole", "events:PutTargets",
        "events:PutRule", "events:DescribeRule"],
    "arn:aws:states:::aws-sdk:glue:startCrawler": ["glue:StartCrawler"],
    "arn:aws:states:::aws-sdk:glue:getCrawler": ["glue:GetCrawler"],
    "arn:aws:states:::aws-sdk:glue:stopCrawler": ["glue:StopCrawler"],
    "arn:aws:states:::aws-sdk:redshiftdata:cancelStatement": ["redshift-data:CancelStatement"],
    "arn:aws:states:::aws-sdk:redshiftdata:executeStatement": [
        "redshift-data:ExecuteStatement", "redshift:GetClusterCredentials",
        "redshift-serverless:GetCredentials", "secretsmanager:GetSecretValue"],
    "arn:aws:states:::aws-sdk:redshiftdata:batchExecuteStatement": [
        "redshift-data:BatchExecuteStatement", "redshift:GetClusterCredentials",
        "redshift-serverless:GetCredentials", "secretsmanager:GetSecretValue"],
    "arn:aws:states:::aws-sdk:redshiftdata:describeStatement": ["redshift-data:DescribeStatement"],
}
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


class UnknownIntegration(ValueError):
    """A Task state's Resource the template cannot grant: say which, rather than deploy a broken role."""


def task_resources(definition: dict[str, Any]) -> list[str]:
    """Every Task state's Resource, in branches too."""
    found: list[str] = []

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            if state.get("Type") == "Task":
                found.append(state["Resource"])
            for branch in state.get("Branches", []):
                walk(branch["States"])
            if "Iterator" in state:
                walk(state["Iterator"]["States"])
            if "ItemProcessor" in state:
                walk(state["ItemProcessor"]["States"])

    walk(definition["States"])
    return sorted(set(found))


def role_statements(definition: dict[str, Any]) -> list[dict[str, Any]]:
    actions: set[str] = set()
    for resource in task_resources(definition):
        if resource == LAMBDA_INVOKE:
            continue
        if resource not in INTEGRATION_ACTIONS:
            raise UnknownIntegration(f"no IAM actions known for integration {resource}")
        actions.update(INTEGRATION_ACTIONS[resource])
    statements: list[dict[str, Any]] = []
    if actions:
        statements.append({"Effect": "Allow", "Action": sorted(actions), "Resource": "*"})
    if any(r.startswith("arn:aws:states:::ecs:") for r in task_resources(definition)):
        statements.append({"Effect": "Allow", "Action": ["events:PutTargets", "events:PutRule",
                                                         "events:DescribeRule"],
                           "Resource": {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:"
                                                   "${AWS::AccountId}:rule/"
                                                   "StepFunctionsGetEventsForECSTaskRule"}})
    return statements


def build_template(definition: dict[str, Any], *, label: str, definition_file: str,
                   function: dict[str, Any] | None = None, schedule: str | None = None,
                   s3_trigger: str | None = None,
                   extra_policies: Iterable[Any] = ()) -> dict[str, Any]:
    """The SAM template; ``function`` the Lambda's properties (None: no task runs in a Lambda)."""
    policies: list[Any] = []
    statements = role_statements(definition)
    if statements:
        policies.append({"Version": "2012-10-17", "Statement": statements})
    if function is not None:
        policies.append({"LambdaInvokePolicy": {"FunctionName": {"Ref": "RoutineFunction"}}})
    policies += list(extra_policies)
    machine: dict[str, Any] = {
        "Type": "STANDARD",
        "DefinitionUri": definition_file,
        "Policies": policies,
        "Logging": {"Level": "ERROR", "IncludeExecutionData": False, "Destinations": [
            {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["MachineLogGroup", "Arn"]}}}]},
    }
    if policies:
        policies.append("CloudWatchLogsFullAccess")
    if function is not None:
        machine["DefinitionSubstitutions"] = {
            "OrchestratorFunctionArn": {"Fn::GetAtt": ["RoutineFunction", "Arn"]}}
    events = _events(schedule, s3_trigger)
    if events:
        machine["Events"] = events
    resources: dict[str, Any] = {
        "RoutineStateMachine": {"Type": "AWS::Serverless::StateMachine", "Properties": machine},
        "MachineLogGroup": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Retain",
                            "UpdateReplacePolicy": "Retain",
                            "Properties": {"RetentionInDays": 30}},
    }
    outputs: dict[str, Any] = {"StateMachineArn": {"Value": {"Ref": "RoutineStateMachine"}}}
    if function is not None:
        resources["RoutineFunction"] = {"Type": "AWS::Serverless::Function", "Properties": function}
        outputs["FunctionName"] = {"Value": {"Ref": "RoutineFunction"}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"orchestrator routine {label} as a Step Functions state machine "
                       "(orchestrate generate --target step-functions)",
        "Resources": resources,
        "Outputs": outputs,
    }


def _events(schedule: str | None, s3_trigger: str | None) -> dict[str, Any]:
    """A scheduled execution's input is ``{}`` (the routine's defaults, the start date as
    ``${run.date}``); an S3-triggered one gets params ``bucket`` and ``key``, as the Lambda does."""
    if schedule:
        return {"Schedule": {"Type": "Schedule", "Properties": {
            "Schedule": schedule, "Enabled": True, "Input": json.dumps({})}}}
    if s3_trigger:
        bucket, _, prefix = s3_trigger[len("s3://"):].partition("/")
        detail: dict[str, Any] = {"bucket": {"name": [bucket]}}
        if prefix:
            detail["object"] = {"key": [{"prefix": prefix}]}
        return {"ObjectCreated": {"Type": "EventBridgeRule", "Properties": {
            "Pattern": {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail},
            "InputTransformer": {
                "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
                "InputTemplate": '{"params": {"bucket": <bucket>, "key": <key>}}'}}}}
    return {}
