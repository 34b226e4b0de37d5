"""A SAM template deploying a compiled routine: the state machine, its role, the trigger, and the
orchestrator's Lambda when some task runs there.

The state machine's role is least privilege (``role``): what the executors declare for the steps
it runs natively, plus what its states need themselves. The function's own policy (what its tasks
touch) comes with its properties, as ``--target lambda`` derives them. A Distributed Map gets a
private bucket for its results and its batches' manifests (``ORCHESTRATOR_BATCH_STATE``).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from ..executor import BATCH_STATE_ENV
from .role import UnknownIntegration, machine_statements, task_resources

__all__ = ["UnknownIntegration", "build_template", "task_resources"]


def build_template(definition: dict[str, Any], *, label: str, definition_file: str,
                   function: dict[str, Any] | None = None, schedule: str | None = None,
                   s3_trigger: str | None = None, extra_policies: Iterable[Any] = (),
                   executor_statements: list[dict[str, Any]] | None = None,
                   batches: bool = False) -> dict[str, Any]:
    """The SAM template; ``function`` the Lambda's properties (None: no task runs in a Lambda);
    ``executor_statements`` what the native states call, from the executors (``role``);
    ``batches``: a Distributed Map keeps its results and manifests in a bucket made here."""
    statements = machine_statements(definition, executor_statements or [],
                                    function=function is not None, batch_bucket=batches)
    policies: list[Any] = [{"Version": "2012-10-17", "Statement": statements}]
    policies += list(extra_policies)
    machine: dict[str, Any] = {
        "Name": {"Ref": "AWS::StackName"},  # its ARN is known before it exists: maps start it
        # STANDARD, not EXPRESS: an Express workflow runs at most 5 minutes and cannot use the
        # .sync integrations that wait for Athena, Glue and ECS.
        "Type": "STANDARD",
        "DefinitionUri": definition_file,
        "Policies": policies,
        "Logging": {
            "Level": "ERROR",
            # Errors only, without the states' input and output (the run's params and step
            # results): no run data is copied into the log group.
            "IncludeExecutionData": False,
            "Destinations": [
                {
                    "CloudWatchLogsLogGroup": {
                        "LogGroupArn": {"Fn::GetAtt": ["MachineLogGroup", "Arn"]}
                    }
                }
            ],
        },
    }
    # The definition names the function and bucket as ${...} placeholders filled in at deploy time,
    # so definition.asl.json itself does not depend on the stack.
    substitutions: dict[str, Any] = {}
    if function is not None:
        substitutions["OrchestratorFunctionArn"] = {"Fn::GetAtt": ["RoutineFunction", "Arn"]}
    if batches:
        substitutions["OrchestratorBatchBucket"] = {"Ref": "BatchStateBucket"}
    if substitutions:
        machine["DefinitionSubstitutions"] = substitutions
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
    if batches:
        resources["BatchStateBucket"] = _batch_bucket()
    if function is not None:
        if batches:
            function = _with_batch_state(function)
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


def _batch_bucket() -> dict[str, Any]:
    """Private, encrypted, and emptied after 30 days: manifests matter only until post_staging."""
    # An unfinished multipart upload is no object, so expiration never removes it, yet its parts
    # are billed: such uploads are aborted after a day.
    return {"Type": "AWS::S3::Bucket", "Properties": {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True},
        "LifecycleConfiguration": {"Rules": [
            {"Id": "expire", "Status": "Enabled", "ExpirationInDays": 30,
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}}}


def _with_batch_state(function: dict[str, Any]) -> dict[str, Any]:
    """The function writes and reads the batches' manifests under the bucket's ``manifests/``."""
    function = json.loads(json.dumps(function))
    variables = function.setdefault("Environment", {}).setdefault("Variables", {})
    variables[BATCH_STATE_ENV] = {"Fn::Sub": "s3://${BatchStateBucket}/manifests/"}
    # ListBucket applies to the whole bucket; the s3:prefix condition keeps it to the manifests.
    statements = [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": {"Fn::Sub": "${BatchStateBucket.Arn}/manifests/*"}},
        {"Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": {"Fn::GetAtt": ["BatchStateBucket", "Arn"]},
         "Condition": {"StringLike": {"s3:prefix": ["manifests/*"]}}}]
    function.setdefault("Policies", []).append({"Version": "2012-10-17", "Statement": statements})
    return function


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
            # Params bucket and key, as the Lambda handler gives a routine run for an S3 event, so
            # one routine serves both.
            "InputTransformer": {
                "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
                "InputTemplate": '{"params": {"bucket": <bucket>, "key": <key>}}'}}}}
    return {}
