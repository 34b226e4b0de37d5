"""The ``ecs`` executor: the docker executor's job at scale, as an ECS task on Fargate.

Why ECS RunTask on Fargate rather than AWS Batch: RunTask takes an idempotency ``clientToken``
(a retried start after a lost reply starts nothing new) and a ``startedBy`` tag that
``ListTasks`` filters on, so an earlier attempt's task is found by its token; StopTask is the
same SIGTERM, grace (the container's ``stopTimeout``), SIGKILL as ``docker stop``; the container's
exit code is in DescribeTasks; and Fargate needs no compute environment, job queue or job
definition beside the task definition. Batch's SubmitJob has no idempotency token and adds
queueing the engine already does (``depends_on``, ``--max-parallel``, retries).

The task is waited for with the AWS executors' shared polling, stopped for real on cancel or
timeout, re-attached to by a retry or ``orchestrate resume``, and its CloudWatch log stream
(``awslogs`` driver) is copied into the run's log, continuing where a crashed run stopped.
"""
from __future__ import annotations

import collections
from typing import Annotated, Any, Iterable, Literal

from orchestrator import Context, TaskMetrics, Uncompilable, hookimpl, task
from orchestrator.events import SUCCEEDED

from .aws.clients import check_service, error_code
from .aws.executor import AwsExecutor
from .aws.inflight import RemoteOps
from .aws.outcomes import outcome
from .aws.record import RemoteRecord
from .docker.spec import RESOURCES_SCHEMA, memory_bytes

# ECS takes environment values as strings only; numbers and booleans are sent as their text.
ENV_SCHEMA = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
# Kept for a failure's message: enough to show the error, short enough for a record.
LOG_TAIL_LINES = 20
EXITED_ZERO, EXITED_NONZERO, STOPPED_BY_USER = "EXITED_ZERO", "EXITED_NONZERO", "STOPPED_BY_USER"


class TaskNotFound(Exception):
    """DescribeTasks lists the task under ``failures`` (reason MISSING): it is gone or never was."""

    def __init__(self, arn: str, reason: str) -> None:
        super().__init__(f"ECS task {arn}: {reason}")
        # DescribeTasks reports an unknown task in "failures" with HTTP 200, not as an error. Shaped
        # like botocore's response, so error_code() reads TaskNotFound and RemoteWork takes it for
        # "gone" (outcomes.NOT_FOUND_CODES) and submits anew.
        self.response = {"Error": {"Code": "TaskNotFound", "Message": reason}}


def _pascal(value: Any) -> Any:
    """RunTask's request keys as Step Functions spells them (``containerOverrides`` →
    ``ContainerOverrides``)."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: _pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    return value


def task_state(description: dict[str, Any], container: str | None) -> str:
    """ECS's lastStatus while the task lives; once STOPPED,
    how it ended (our raw terminal states)."""
    if description.get("lastStatus") != "STOPPED":
        # A task just started may not report a status yet: it is on its way, as PROVISIONING says.
        return str(description.get("lastStatus") or "PROVISIONING")
    # StopTask (ours or anyone's) sets UserInitiated. Any other stop is judged by the exit code,
    # and a container that never started (image pull failed, say) has none: that fails too.
    if description.get("stopCode") == "UserInitiated":
        return STOPPED_BY_USER
    return EXITED_ZERO if exit_code(description, container) == 0 else EXITED_NONZERO


def main_container(description: dict[str, Any], name: str | None) -> dict[str, Any]:
    found = description.get("containers") or [{}]
    return next((c for c in found if c.get("name") == name), found[0]) if name else found[0]


def exit_code(description: dict[str, Any], container: str | None) -> int | None:
    code = main_container(description, container).get("exitCode")
    return int(code) if code is not None else None


class EcsExecutor(AwsExecutor):
    """Run a container as an ECS task (Fargate by default):
    exit code, CloudWatch logs, real StopTask."""

    name = "ecs"
    service = "ecs"

    def __init__(
        self,
        cluster: Annotated[str, "ECS cluster name or ARN"],
        task_definition: Annotated[str, "Task definition: family, family:revision or ARN"],
        container: Annotated[
            str | None, "Container to override and follow; default the first"
        ] = None,
        subnets: Annotated[list[str] | None, "Subnets (awsvpc; required on Fargate)"] = None,
        security_groups: Annotated[list[str] | None, "Security groups (awsvpc)"] = None,
        assign_public_ip: Annotated[
            bool, "Give the task a public IP (to pull from public registries)"
        ] = False,
        launch_type: Annotated[Literal["FARGATE", "EC2"], "Launch type"] = "FARGATE",
        platform_version: Annotated[str | None, "Fargate platform version; default LATEST"] = None,
        region: Annotated[str | None, "AWS region; default from the environment"] = None,
    ) -> None:
        self.cluster, self.task_definition, self.container = cluster, task_definition, container
        self.subnets, self.security_groups, self.assign_public_ip = (
            subnets,
            security_groups,
            assign_public_ip,
        )
        self.launch_type, self.platform_version = launch_type, platform_version
        self._aws_setup(region)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        if params.get("launch_type", "FARGATE") == "FARGATE" and not params.get("subnets"):
            yield "subnets", "Fargate tasks use awsvpc networking: give at least one subnet"

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        resources = args.get("resources") or {}
        if isinstance(resources, dict):
            if "memory" in resources:
                try:
                    memory_bytes(resources["memory"])
                except ValueError as exc:
                    yield "resources.memory", str(exc)
            if resources.get("gpus") == "all":
                yield "resources.gpus", "ECS needs a number of GPUs, not \"all\""
        if isinstance(args.get("command"), list) and not args["command"]:
            yield "command", "an empty list: leave it out to use the task definition's"

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        """``run`` → ``ecs:runTask.sync`` (Step Functions waits for the task to stop and stops it
        when the execution is stopped), then a Choice on the container's exit code: only 0
        succeeds."""
        if task != "run":
            return None
        overrides = _pascal(cls._overrides(args.get("command"), args.get("environment"),
                                           args.get("resources")))
        container = params.get("container")
        if overrides.get("ContainerOverrides"):
            if not container:
                raise Uncompilable("a state machine must name the container it overrides: "
                                   "set the step's params.container")
            # RunTask needs each override to name its container. The Lambda path looks the first one
            # up when it runs; a state machine has no such step.
            overrides["ContainerOverrides"][0]["Name"] = container
        request: dict[str, Any] = {"Cluster": params["cluster"],
                                   "TaskDefinition": params["task_definition"],
                                   "LaunchType": params.get("launch_type", "FARGATE")}
        if overrides:
            request["Overrides"] = overrides
        if params.get("subnets"):
            request["NetworkConfiguration"] = {"AwsvpcConfiguration": {
                "Subnets": list(params["subnets"]),
                "SecurityGroups": list(params.get("security_groups") or []),
                "AssignPublicIp": "ENABLED" if params.get("assign_public_ip") else "DISABLED"}}
        if params.get("platform_version"):
            request["PlatformVersion"] = params["platform_version"]
        # A filter expression yields a list, hence the [0] in the Choice below.
        exit_code = (f"$.Containers[?(@.Name == '{container}')].ExitCode" if container
                     else "$.Containers[0].ExitCode")
        return {"StartAt": "Run", "States": {
            "Run": {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync",
                    "Parameters": request, "ResultSelector": {"exit_code.$": exit_code},
                    "ResultPath": "$.ecs", "Next": "Exit code 0?"},
            "Exit code 0?": {"Type": "Choice", "Default": "Exited non-zero", "Choices": [
                {"Variable": "$.ecs.exit_code" + ("[0]" if container else ""),
                 "NumericEquals": 0, "Next": "Exited zero"}]},
            "Exited zero": {"Type": "Succeed"},
            "Exited non-zero": {"Type": "Fail", "Error": "ecs.ExitedNonZero",
                                "CausePath": "States.JsonToString($.ecs)"}}}

    def check(self) -> list[str]:
        return check_service(
            self.aws, "ecs", lambda c: c.describe_clusters(clusters=[self.cluster])
        )

    @task
    def run(
        self,
        context: Context,
        command: Annotated[list[str] | None, "Command override (a list of arguments)"] = None,
        environment: Annotated[dict | None, "Environment variables", ENV_SCHEMA] = None,
        resources: Annotated[
            dict | None, "Task size: {cpus, memory, gpus}", RESOURCES_SCHEMA
        ] = None,
        follow_logs: Annotated[
            bool, "Copy the container's CloudWatch log stream into the run's log"
        ] = True,
    ) -> TaskMetrics:
        """Start an ECS task (or re-attach to this call's), follow its logs, wait;
        exit code 0 succeeds."""
        overrides = self._overrides(command, environment, resources)
        record = self.record(
            context,
            self.call_key(context),
            "task",
            self.cluster,
            self.task_definition,
            self.container,
            overrides,
        )
        follower = CloudWatchFollower(self, context, record) if follow_logs else None
        ops = RemoteOps(
            engine="ecs",
            what=f"task of {self.task_definition}",
            describe=self._describe,
            state_of=lambda d: task_state(d, self.container),
            reason_of=lambda d: self._reason(d, follower),
            stop=self._stop,
        )
        try:
            result = self.remote_work(ops, record, context).run(
                lambda token: self._start(token, overrides), find_live=self._find_live,
                on_poll=follower.poll if follower else None)
        finally:
            # Drained whatever the outcome: the last lines are often why the task failed.
            if follower is not None:
                follower.drain()
        description = result.description
        return TaskMetrics(
            execution_metadata={
                "engine": "ecs",
                "task_arn": result.remote_id,
                "exit_code": exit_code(description, self.container),
                "reattached": result.reattached,
                "stopped_reason": description.get("stoppedReason"),
                "log_lines": follower.lines if follower else None,
            }
        )

    # ------------------------------------------------------------------ API calls

    @staticmethod
    def _overrides(command: list[str] | None, environment: dict[str, Any] | None,
                   resources: dict[str, Any] | None) -> dict[str, Any]:
        container: dict[str, Any] = {}
        if command:
            container["command"] = list(command)
        if environment:
            # Sorted: the overrides go into the record's digest, so the same environment written in
            # another order must be the same call.
            container["environment"] = [
                {"name": k, "value": str(v)} for k, v in sorted(environment.items())
            ]
        overrides: dict[str, Any] = {}
        resources = resources or {}
        if "cpus" in resources:
            # ECS counts CPU in 1/1024 vCPU units and memory in MiB, both as strings.
            overrides["cpu"] = str(int(float(resources["cpus"]) * 1024))
        if "memory" in resources:
            overrides["memory"] = str(memory_bytes(resources["memory"]) // 1024 ** 2)
        if "gpus" in resources:
            # GPUs are a container's requirement; cpu and memory above are the task's size.
            container["resourceRequirements"] = [{"type": "GPU", "value": str(resources["gpus"])}]
        if container:
            overrides["containerOverrides"] = [container]
        return overrides

    def _start(self, token: str, overrides: dict[str, Any]) -> str:
        """RunTask with ``clientToken`` (a retried call starts nothing new) and
        ``startedBy`` = token."""
        request: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "count": 1,
            "launchType": self.launch_type,
            "startedBy": token,
            "clientToken": token,
        }
        if overrides:
            if "containerOverrides" in overrides:
                # RunTask needs the override to name its container.
                name = self.container or self._first_container()
                overrides = {
                    **overrides,
                    "containerOverrides": [{"name": name, **overrides["containerOverrides"][0]}],
                }
            request["overrides"] = overrides
        if self.subnets:
            request["networkConfiguration"] = {"awsvpcConfiguration": {
                "subnets": self.subnets, "securityGroups": self.security_groups or [],
                "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED"}}
        if self.platform_version:
            request["platformVersion"] = self.platform_version
        answer = self.aws.client("ecs").run_task(**request)
        # RunTask answers HTTP 200 with "failures" (no capacity, a bad subnet) instead of raising.
        if not answer.get("tasks"):
            reasons = "; ".join(
                f"{f.get('arn', '')} {f.get('reason', '')}".strip()
                for f in answer.get("failures", [])
            )
            raise RuntimeError(
                f"ECS RunTask of {self.task_definition} started nothing: "
                f"{reasons or 'no reason given'}"
            )
        return answer["tasks"][0]["taskArn"]

    def _first_container(self) -> str:
        definition = self.aws.client("ecs").describe_task_definition(
            taskDefinition=self.task_definition
        )
        return definition["taskDefinition"]["containerDefinitions"][0]["name"]

    def _describe(self, arn: str) -> dict[str, Any]:
        answer = self.aws.client("ecs").describe_tasks(cluster=self.cluster, tasks=[arn])
        if not answer.get("tasks"):
            reason = (
                next((f.get("reason", "") for f in answer.get("failures", [])), "") or "MISSING"
            )
            raise TaskNotFound(arn, reason)
        return answer["tasks"][0]

    def _stop(self, arn: str) -> None:
        self.aws.client("ecs").stop_task(
            cluster=self.cluster, task=arn, reason="stopped by orchestrator (cancel)"
        )

    def _find_live(self, token: str) -> str | None:
        """A task an earlier attempt started but could not record: ``startedBy`` is our token."""
        ecs = self.aws.client("ecs")
        # ListTasks lists RUNNING tasks unless asked otherwise: one that already stopped (and may
        # have succeeded) is found only under STOPPED, and ECS keeps stopped tasks visible for a
        # limited time only (at least an hour).
        for desired in ("RUNNING", "STOPPED"):
            arns = ecs.list_tasks(cluster=self.cluster, startedBy=token, desiredStatus=desired).get(
                "taskArns", []
            )
            for arn in arns:
                if outcome("ecs", task_state(self._describe(arn), self.container)) in (
                    None,
                    SUCCEEDED,
                ):
                    return arn
        return None

    def _reason(self, description: dict[str, Any], follower: CloudWatchFollower | None) -> str:
        main = main_container(description, self.container)
        parts = [f"exit code {main.get('exitCode', 'unknown')}"]
        parts += [text for text in (description.get("stoppedReason"), main.get("reason")) if text]
        if follower is not None:
            # Drained first, so the tail holds the container's last lines before it is quoted.
            follower.drain()
            if follower.tail:
                parts.append("last log lines:\n" + "\n".join(f"  {line}" for line in follower.tail))
        return "; ".join(parts)


class CloudWatchFollower:
    """Copies the container's ``awslogs`` stream into the task's log;
    the read position is kept in the record."""

    def __init__(self, executor: EcsExecutor, context: Context, record: RemoteRecord) -> None:
        self.executor, self.context, self.record = executor, context, record
        # The resumed run's read positions, overlaid by ours: a resume goes on where the crashed run
        # stopped copying instead of repeating the log.
        inherited = record.previous.data.get("log_tokens") if record.previous is not None else None
        self.tokens: dict[str, str] = {**(inherited or {}), **(record.data.get("log_tokens") or {})}
        self.token: str | None = None
        self.where: tuple[str, str] | None = None
        self.arn: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.lines = 0

    def poll(self, description: dict[str, Any]) -> None:
        # A different task (a retry after a failure) has its own stream and its own position.
        if self.where is None or self.arn != description.get("taskArn"):
            self.arn = description.get("taskArn")
            self.token = self.tokens.get(self.arn or "")
            self.where = self._stream(description)
        self.drain()

    def drain(self) -> None:
        if self.where is None:
            return
        try:
            self._read(*self.where)
        except Exception as exc:
            if error_code(exc) not in ("ResourceNotFoundException", "AccessDeniedException"):
                self.context.logger.debug("ecs logs %s: %s", self.where, exc)

    def _stream(self, description: dict[str, Any]) -> tuple[str, str] | None:
        """``(group, stream)`` from the task definition's awslogs options:
        PREFIX/CONTAINER/TASK_ID."""
        ecs = self.executor.aws.client("ecs")
        definition = ecs.describe_task_definition(taskDefinition=description["taskDefinitionArn"])[
            "taskDefinition"
        ]
        name = main_container(description, self.executor.container).get("name")
        spec = next((c for c in definition["containerDefinitions"] if c.get("name") == name), None)
        options = ((spec or {}).get("logConfiguration") or {}).get("options") or {}
        if (spec or {}).get("logConfiguration", {}).get(
            "logDriver"
        ) != "awslogs" or "awslogs-group" not in options:
            self.context.logger.info(
                "ecs container %s has no awslogs configuration; its output is not copied", name
            )
            return None
        task_id = description["taskArn"].rsplit("/", 1)[-1]
        return (
            options["awslogs-group"],
            f"{options.get('awslogs-stream-prefix', 'ecs')}/{name}/{task_id}",
        )

    def _read(self, group: str, stream: str) -> None:
        logs = self.executor.aws.client("logs")
        while True:
            request: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if self.token:
                request["nextToken"] = self.token
            page = logs.get_log_events(**request)
            for event in page.get("events", []):
                message = event.get("message", "").rstrip()
                self.lines += 1
                self.tail.append(message)
                self.context.logger.info("%s", message)
            token = page.get("nextForwardToken")
            changed = token != self.token
            self.token = token
            # Saved as it moves, so a crash repeats at most one page of log on resume.
            if changed and token and self.arn:
                self.tokens[self.arn] = token
                self.record.save(log_tokens=self.tokens)
            # At the end of a stream GetLogEvents returns the token it was given.
            if not page.get("events") or not changed:
                return


@hookimpl
def register_executors() -> list[type]:
    return [EcsExecutor]
