"""The ``docker`` executor: run a command in a container (or build an image) with the full
lifecycle.

``run`` is start + wait. Its container is named after a token derived from the run, step and
call, and remembered (token, id and log position) in the step's state folder before it exists, so
a retry or ``orchestrate resume`` re-attaches to a container that is still running, takes the
exit code and remaining logs of one that finished, and only otherwise creates a new one.
Its stdout/stderr go live into the run's log; ``cancel()`` and timeouts stop it (SIGTERM, grace
period, SIGKILL) and remove it. Containers run with an init process, so signals reach the program.

A first attempt costs five daemon calls, as many as ``docker run --rm``: create (no image lookup
unless the daemon says it is missing), start, one log stream for both outputs, wait, remove. An
inspect is made only for a failed exit (OOM?), a name lookup only when the record holds a token.
On the local socket they need no Docker SDK (see ``engine``); build, pull and cleanup use it.
Not ``auto_remove``: a container that ends while ``orchestrate`` is down must still be there for
``resume`` to take its exit code, and its logs must outlive its exit.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any, Iterable

from orchestrator import Cancelled, Context, Executor, Location, TaskMetrics, Uncompilable, task

from ..aws import record as _aws
from ..calls import CallKeys
from . import container as box
from .daemon import PullPolicy, connect, missing_image, probe, pull_image, shared_client
from .logs import LogPump
from .spec import (MOUNT_SCHEMA, RESOURCES_SCHEMA, build_problems, create_body, host_config,
                   run_problems)

DEFAULT_STOP_GRACE = 5.0
"""Below the engine's own cancel grace (ORCHESTRATOR_CANCEL_GRACE, 10 s): a task still stopping its
container when that runs out is abandoned, and the stopped container would be left behind."""
# Numbers and booleans are allowed because YAML writes them unquoted; run() and build() turn them
# into the strings Docker takes.
ENV_SCHEMA = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
Command = list[str] | str | None


class DockerExecutor(CallKeys, Executor):
    """Run containers on a Docker daemon: live logs, real cancel,
    never two containers for one task."""

    name = "docker"

    def __init__(
        self,
        image: Annotated[str, "Image to run (and the tag `build` gives by default)"],
        pull: Annotated[PullPolicy, "Fetch the image: never, when missing, or always"] = "missing",
        docker_host: Annotated[
            str | None, "Daemon address; default DOCKER_HOST, else the local socket"
        ] = None,
        stop_grace: Annotated[
            float, "Seconds between SIGTERM and SIGKILL when stopping"
        ] = DEFAULT_STOP_GRACE,
    ) -> None:
        self.image, self.pull, self.docker_host, self.stop_grace = (
            image,
            pull,
            docker_host,
            stop_grace,
        )
        self._lock = threading.Lock()
        # _running: the containers this executor's tasks wait for, with the grace to stop each.
        # _cancelled: those cancel() has stopped, whose exit is then the cancel, not a failure.
        self._running: dict[str, float] = {}
        self._cancelled: set[str] = set()
        self._ordinals: dict[str, int] = {}

    # ------------------------------------------------------------------ contract

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        image = params.get("image")
        if isinstance(image, str) and (not image.strip() or any(c.isspace() for c in image)):
            yield "image", f"{image!r} is not an image reference (like vendor/extractor:1.4)"
        grace = params.get("stop_grace")
        if isinstance(grace, (int, float)) and grace < 0:
            yield "stop_grace", "must be 0 or more seconds"

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        if task == "run":
            yield from run_problems(args)
        elif task == "build":
            yield from build_problems(args)

    def check(self) -> list[str]:
        return probe(self.docker_host, self.image, self.pull)

    def cancel(self) -> None:
        """Stop this step's container in the background, so ``cancel()`` returns at once.

        The engine has also flagged the task's context: the task thread sees it within
        ``WAIT_TICK``, stops the container itself (a second stop is harmless), removes it and
        raises.
        """
        with self._lock:
            running = dict(self._running)
            # Marked before any stop is sent: the task thread may see the exit a stop causes (143)
            # before the engine flags its context, and must know the stop was ours.
            self._cancelled.update(running)
        for container_id, grace in running.items():
            # A thread per container: a stop may take the grace period, and cancel() must not block.
            threading.Thread(target=self._stop_quietly, args=(container_id, grace), daemon=True,
                             name=f"stop-{container_id[:12]}").start()

    @property
    def client(self) -> Any:
        """The process's Docker SDK client for this daemon (build, pull, cleanup)."""
        return shared_client(self.docker_host)

    @property
    def engine(self) -> Any:
        """The process's engine for this daemon, shared by all steps (see ``engine_for``)."""
        from .engine import engine_for

        return engine_for(self.docker_host)

    # ------------------------------------------------------------------ tasks

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        raise Uncompilable("it needs a Docker daemon, which neither Step Functions nor Lambda "
                           "has; run the image with the ecs executor instead")

    @task
    def run(
        self,
        context: Context,
        command: Annotated[
            Command, "Command (a list of arguments, or one string); default the image's"
        ] = None,
        entrypoint: Annotated[Command, "Entrypoint; default the image's"] = None,
        environment: Annotated[dict | None, "Environment variables", ENV_SCHEMA] = None,
        working_dir: Annotated[str | None, "Working directory inside the container"] = None,
        mounts: Annotated[
            list[Annotated[dict, MOUNT_SCHEMA]] | None, "Bind mounts: [{source, target, read_only}]"
        ] = None,
        resources: Annotated[dict | None, "Limits: {cpus, memory, gpus}", RESOURCES_SCHEMA] = None,
        network: Annotated[
            str, "Network: none (default), bridge, host or a network's name"
        ] = "none",
        user: Annotated[str | None, "User (name or uid[:gid]) to run as"] = None,
        init: Annotated[
            bool, "Run an init process as PID 1 (signals reach the program, zombies reaped)"
        ] = True,
        keep_on_failure: Annotated[
            bool, "Keep a failed container for debugging (renamed orchestrator-kept-…)"
        ] = False,
    ) -> TaskMetrics:
        """Start a container (or re-attach to this task's), stream its output, wait;
        exit 0 succeeds."""
        context.check_cancelled()
        env = {k: str(v) for k, v in (environment or {}).items()} or None
        config = {"command": command, "entrypoint": entrypoint, "working_dir": working_dir,
                  "user": user, "environment": env}
        config = {k: v for k, v in config.items() if v is not None}
        host = {"network_mode": network, "init": init, **host_config(resources, mounts)}
        # The digest covers the image and all asked of the container: after a changed routine, a
        # resume starts a new container instead of re-attaching to one running the old command.
        record = self.record(context, self.call_key(context), "container", self.image,
                              {**config, **host}, keep_on_failure)
        found, positions, reattached = self._attach(record, context)
        if found is None:
            found = self._create(record, context, config, host)
        return self._follow(found, record, context, positions, reattached, keep_on_failure)

    @task
    def build(
        self,
        context: Context,
        context_dir: Annotated[Location, "Build context folder; relative to the routine's folder"],
        dockerfile: Annotated[str, "Dockerfile, relative to the context folder"] = "Dockerfile",
        tag: Annotated[str | None, "Tag of the image; default the executor's image"] = None,
        build_args: Annotated[dict | None, "Build arguments (ARG)", ENV_SCHEMA] = None,
        network: Annotated[str, "Network for RUN instructions; none by default"] = "none",
    ) -> TaskMetrics:
        """Build an image from a folder and tag it, streaming the build's output into the log."""
        from .build import build_image

        tag = tag or self.image
        # a client of its own: cancelling closes its connection, which stops the build on the daemon
        # With the shared client's negotiated version this client asks the daemon nothing before
        # the build starts.
        own = connect(self.docker_host, version=self.client.api.api_version)
        try:
            # The builder pulls a FROM image it lacks anyway; only "always" makes it refresh one
            # it has.
            image_id = build_image(own.api, str(context_dir), dockerfile, tag,
                                   {k: str(v) for k, v in (build_args or {}).items()}, network,
                                   pull=self.pull == "always", context=context)
        finally:
            own.close()
        return TaskMetrics(
            execution_metadata={"engine": "docker", "image": tag, "image_id": image_id}
        )

    @task
    def cleanup(
        self,
        context: Context,
        include_kept: Annotated[
            bool, "Remove failed containers kept for debugging (keep_on_failure)"
        ] = True,
        include_unrecorded: Annotated[
            bool,
            "Also remove stopped containers of crashed runs, "
            "whose outcome `orchestrate resume` would take from them",
        ] = False,
    ) -> TaskMetrics:
        """Remove stopped containers this routine's other runs left on the daemon;
        never a running one."""
        from .cleanup import remove_finished

        removed = remove_finished(
            self.client.api, context.routine_name, context.run_id, include_kept, include_unrecorded
        )
        context.logger.info(
            "removed %d container(s) of routine %s", len(removed), context.routine_name
        )
        return TaskMetrics(execution_metadata={"engine": "docker", "removed": removed})

    # ------------------------------------------------------------------ lifecycle

    def _attach(
        self, record: _aws.RemoteRecord, context: Context
    ) -> tuple[Any, dict[str, int], bool]:
        """This call's container from an earlier attempt or the resumed run.

        ``(container, log positions, True)``, or ``(None, {}, False)`` when there is none.

        A record holds a token from just before its create call until the container's outcome
        was taken; without one nothing can exist, and the daemon is not asked.
        """
        # This run's record first (a retry), then the resumed run's (a resume after a crash), which
        # exists only while this run has none of its own.
        for source in (record, record.previous):
            if source is None or not source.data.get("token"):
                continue
            # The id is saved only once create has answered; a crash or a lost answer before that
            # leaves only the token, and the name made from it still finds the container.
            ref = source.remote_id or box.container_name(source.data["token"])
            found = box.find(self.engine, ref)
            if found is None:
                continue
            where = "an earlier attempt" if source is record else f"resumed run {source.run_id}"
            context.logger.info(
                "container %s from %s is %s; re-attaching", found.name, where, found.status
            )
            # Copied into this run's own record: should this run crash too, its resume finds the
            # container here, and the logs go on from where the earlier run's log stopped.
            record.save(id=found.id, token=found.token, logs=source.data.get("logs") or {},
                        inherited_from=None if source is record else source.run_id)
            return found, dict(source.data.get("logs") or {}), True
        return None, {}, False

    def _create(self, record: _aws.RemoteRecord, context: Context, config: dict[str, Any],
                host: dict[str, Any]) -> box.Found:
        """Create the container; the image is looked at only when the daemon says it is missing."""
        from .engine import NoSuchImage

        if self.pull == "always":
            pull_image(self.client, self.image, context.logger)
        token = record.token()
        # Saved before the create call, the write-ahead that makes "never twice" hold: once the
        # daemon has the container, a retry or resume knows the name to ask for, whatever
        # happens to this process.
        record.save(token=token, id=None, logs={})
        name = box.container_name(token)
        labels = box.labels(context.routine_name, context.run_id, context.step, context.task, token)
        body = create_body(self.image, {**config, "labels": labels}, host)
        try:
            found, created = box.create(self.engine, name, body)
        except NoSuchImage:
            if self.pull == "never":
                raise missing_image(self.image) from None
            pull_image(self.client, self.image, context.logger)
            found, created = box.create(self.engine, name, body)
        record.save(id=found.id)
        verb = "created" if created else "found (created by an attempt whose answer was lost)"
        context.logger.info("container %s %s from %s", found.name, verb, self.image)
        return found

    def _follow(
        self,
        found: Any,
        record: _aws.RemoteRecord,
        context: Context,
        positions: dict[str, int],
        reattached: bool,
        keep_on_failure: bool,
    ) -> TaskMetrics:
        engine, cid, grace = self.engine, found.id, self.stop_grace
        with self._lock:
            # Registered before the start call: a cancel while the container starts still stops it.
            self._running[cid] = grace
        try:
            # A new container, or one a crash left between create and start, is started; one
            # re-attached while running or after its exit is only followed.
            if found.status == "created":
                self._start(found, record)
            pump = LogPump(engine, cid, context.logger, positions,
                           lambda p: record.save(logs=p)).start()
            started = time.monotonic()
            end = box.wait(engine, cid, lambda: context.cancelled)
            with self._lock:
                stopped_by_cancel = cid in self._cancelled
            if end is None or stopped_by_cancel or context.cancelled:
                # cancel() stops the container before the engine flags the context: an exit seen
                # in between (143 after SIGTERM) is still our cancel, not a failure of the program.
                self._stop_quietly(cid, grace)
                pump.drain()
                # Drained first: a removed container's remaining output can no longer be read.
                box.remove(engine, cid)
                record.save(state="cancelled")
                raise Cancelled(f"container {found.name} stopped and removed (cancelled)")
            # Before _finish: a failure's message quotes the stderr tail, which must be complete.
            pump.drain()
        finally:
            with self._lock:
                # No longer this task's: a later cancel() of the executor must not reach this
                # container.
                self._running.pop(cid, None)
                self._cancelled.discard(cid)
        return self._finish(
            found,
            record,
            context,
            end,
            pump,
            reattached,
            keep_on_failure,
            time.monotonic() - started,
        )

    def _finish(
        self,
        found: Any,
        record: _aws.RemoteRecord,
        context: Context,
        end: box.Exit,
        pump: LogPump,
        reattached: bool,
        keep_on_failure: bool,
        waited: float,
    ) -> TaskMetrics:
        engine = self.engine
        record.save(state=f"exited {end.code}", exit_code=end.code)
        if end.code != 0:
            failure = box.ContainerFailed(found.name, self.image, end, list(pump.stderr_tail))
            if keep_on_failure:
                # Renamed so that cleanup, by default, removes it as a kept failure, while it
                # leaves the unrenamed containers of crashed runs for resume.
                kept = box.keep(engine, found.id, found.name)
                context.logger.info("failed container kept as %s (keep_on_failure)", kept)
            else:
                box.remove(engine, found.id)
            record.next_generation()  # a retry starts a fresh container
            raise failure
        box.remove(engine, found.id)
        return TaskMetrics(
            execution_metadata={
                "engine": "docker",
                "container": found.name,
                "container_id": found.id,
                "image": self.image,
                "exit_code": end.code,
                "reattached": reattached,
                "log_lines": pump.lines,
                "waited_s": round(waited, 3),
            }
        )

    def _start(self, found: Any, record: _aws.RemoteRecord) -> None:
        """Start a created container; one that cannot start is removed so a
        retry creates it afresh."""
        try:
            self.engine.start(found.id)
        except Exception:
            box.remove(self.engine, found.id)
            record.next_generation()
            raise

    def _stop_quietly(self, container_id: str, grace: float) -> None:
        try:
            box.stop(self.engine, container_id, grace)
        except Exception:  # the task thread stops it again and reports what it finds
            pass
