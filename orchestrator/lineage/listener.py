"""The listener that emits a run's OpenLineage events through the ``openlineage-python`` client.

The run is a job named after the routine; each task is a job of its own (``routine.step.task``)
whose run carries the routine run as its ``parent`` facet. A task sends START when it starts and
COMPLETE, FAIL (with its masked error and traceback) or ABORT when it ends, with the datasets
its executor says it reads and writes (``Executor.task_lineage``). Events are sent from one
background thread in order, so a slow endpoint does not slow the tasks; the run's end waits for
them a bounded time. A failing endpoint never fails the run: the outcome is a line in its log.
"""
from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
import uuid
from typing import Any

from ..events import CANCELLED, FAILED, SKIPPED, SUCCEEDED, Listener, RunInfo, RunResult, TaskResult
from ..runs.store import LogRecord
from .config import LineageSettings

log = logging.getLogger("orchestrator.lineage")
# Fixed for good: the same run id must map to the same OpenLineage runId in every process (a
# resumed run, a Step Functions step), or a backend sees unrelated runs.
_RUN_IDS = uuid.UUID("5b7c4cf0-7a7e-4a35-9a8e-3f3c0f1b5e21")  # uuid5 namespace of our run ids
_STOP = object()


class LineageListener(Listener):
    def __init__(self, settings: LineageSettings, plan: Any, store: Any = None,
                 client: Any = None) -> None:
        """``client``: an ``OpenLineageClient`` (default: one for ``settings``' transport)."""
        from .. import __version__

        self.settings, self.plan, self.routine, self.store = settings, plan, plan.routine, store
        self.client, self.unusable = client, ""
        try:  # only a run that emits pays for the import
            from openlineage.client import OpenLineageClient

            self.client = client or OpenLineageClient(transport=_transport(settings))
        except ImportError:
            self.unusable = ("openlineage-python is not installed: "
                             "pip install 'lake-orchestrator[lineage]'")
        except Exception as exc:  # a transport the client refuses: the run goes on without it
            self.unusable = f"{type(exc).__name__}: {exc}"
        self.producer = f"urn:lake-orchestrator:{__version__}"
        self.run_id = str(_as_uuid(self.routine.run_id))
        self.started: set[tuple[int, int]] = set()
        self.sent, self.failed, self.first_error = 0, 0, ""
        self.queue: queue.Queue[Any] = queue.Queue()
        # One sender thread: events leave in the order they were made (a task's START before its
        # COMPLETE), and a slow endpoint holds up only this thread. A daemon, so a hung endpoint
        # cannot keep the process alive past the bounded join in run_finished.
        self.sender = threading.Thread(target=self._send_all, name="lineage", daemon=True)
        self.sender.start()

    def run_started(self, run: RunInfo) -> None:
        if self.unusable:
            log.warning("lineage events not sent to %s: %s", self.routine.masked(
                self.settings.target), self.routine.masked(self.unusable))
            return
        self._emit("START", self.routine.name, self.run_id, self._job_facets("DAG"), {})

    def task_started(self, result: TaskResult) -> None:
        key = (result.step_index, result.index)
        if key in self.started or self.unusable:  # a retry stays in the task's OpenLineage run
            return
        self.started.add(key)
        self._emit_task("START", result, None)

    def task_finished(self, result: TaskResult) -> None:
        key = (result.step_index, result.index)
        if key not in self.started:
            if result.status == SKIPPED or self.unusable:
                return  # never started: no OpenLineage run
            self.task_started(result)  # it failed before starting: its executor was not made
        # Anything else is a cancelled task (or a skipped one that did start): it did not finish its
        # work, which OpenLineage calls ABORT.
        ends: dict[str, str] = {SUCCEEDED: "COMPLETE", FAILED: "FAIL"}
        state = ends.get(result.status, "ABORT")
        # What the task returned lets its executor name the datasets it actually touched.
        returned = result.result if result.result is not None else (
            result.metrics.to_dict() if result.metrics else None)
        self._emit_task(state, result, returned)

    def run_finished(self, result: RunResult) -> None:
        if self.unusable:
            self.queue.put(_STOP)
            return
        ends: dict[str, str] = {FAILED: "FAIL", CANCELLED: "ABORT"}
        state = ends.get(result.status, "COMPLETE")
        self._emit(state, self.routine.name, self.run_id, self._job_facets("DAG"), {})
        self.queue.put(_STOP)
        # Room for the request in flight and its two retries (see _transport), each up to the
        # timeout.
        self.sender.join(max(5.0, self.settings.timeout * 3))
        self._record_outcome()

    def _emit_task(self, state: str, result: TaskResult, returned: Any) -> None:
        from openlineage.client.facet_v2 import error_message_run, parent_run

        step = self.plan.steps[result.step_index]
        call = step.spec.tasks[result.index]
        facets: dict[str, Any] = {"parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=self.run_id),
            job=parent_run.Job(namespace=self.settings.namespace, name=self.routine.name),
            # The routine's run is both the parent and the root: a task run has no deeper ancestry.
            root=parent_run.Root(run=parent_run.RootRun(runId=self.run_id),
                                 job=parent_run.RootJob(namespace=self.settings.namespace,
                                                        name=self.routine.name)),
            producer=self.producer)}
        if state == "FAIL" and result.error:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=f"{result.error_type}: {result.error}", programmingLanguage="python",
                stackTrace=result.traceback, producer=self.producer)
        # Derived, not random: the START and the end of a task (and a resumed run's retry of it)
        # must carry the same runId.
        run_id = str(uuid.uuid5(_RUN_IDS, f"{self.run_id}/{result.step_index}/{result.index}"))
        name = f"{self.routine.name}.{step.name}.{_task_label(step.spec.tasks, result.index)}"
        lineage = self._datasets(step, call, result, returned)
        self._emit(state, name, run_id, self._job_facets("TASK"), facets, lineage)

    def _datasets(self, step: Any, call: Any, result: TaskResult, returned: Any) -> Any:
        args = result.args if result.args is not None else call.args
        try:
            return step.spec.executor.cls.task_lineage(call.task, args, step.spec.params, returned)
        except Exception:  # an executor that cannot tell costs its datasets, not the event
            return None

    def _job_facets(self, job_type: str) -> dict[str, Any]:
        from openlineage.client.facet_v2 import job_type_job

        return {"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="LAKE_ORCHESTRATOR", jobType=job_type,
            producer=self.producer)}

    def _emit(self, state: str, job: str, run_id: str, job_facets: dict[str, Any],
              run_facets: dict[str, Any], lineage: Any = None) -> None:
        from openlineage.client.event_v2 import (InputDataset, Job, OutputDataset, Run,
                                                 RunEvent, RunState)

        masked = self.routine.masked
        # Dataset names come from params and args, which may hold a secret (a password in a
        # connection URL): masked like everything else that leaves the process.
        inputs = [InputDataset(namespace=masked(d.namespace), name=masked(d.name))
                  for d in (lineage.inputs if lineage else ())]
        outputs = [OutputDataset(namespace=masked(d.namespace), name=masked(d.name))
                   for d in (lineage.outputs if lineage else ())]
        event = RunEvent(eventType=RunState[state], eventTime=_now(), producer=self.producer,
                         run=Run(runId=run_id, facets=run_facets),
                         job=Job(namespace=self.settings.namespace, name=job, facets=job_facets),
                         inputs=inputs, outputs=outputs)
        self.queue.put(event)

    def _send_all(self) -> None:
        while (event := self.queue.get()) is not _STOP:
            try:
                self.client.emit(event)
                self.sent += 1
            except Exception as exc:  # an endpoint that fails must not fail the run
                self.failed += 1
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
        try:
            self.client.close()  # the HTTP session's connections
        except Exception:
            pass

    def _record_outcome(self) -> None:
        """One line in the run's log: how many events went where (``orchestrate logs``)."""
        # After the bounded join: whatever is still queued was never sent.
        unsent = self.queue.qsize()
        target = self.routine.masked(self.settings.target)
        if self.failed or unsent:
            lost = self.failed + unsent
            why = self.routine.masked(self.first_error) or "the endpoint did not answer in time"
            # Capped: an HTTP error can carry a whole response body.
            line = (f"lineage: {lost} of {self.sent + lost} event(s) could not be sent to "
                    f"{target}: {why}"[:2000])
            level = "ERROR"
        else:
            line, level = f"lineage: {self.sent} event(s) sent to {target}", "INFO"
        if self.store is not None:
            try:
                self.store.append_logs([LogRecord(self.routine.run_id, time.time(), level, None,
                                                  None, line)])
            except Exception:  # the record is best effort; the run's status is already kept
                pass


def _transport(settings: LineageSettings) -> Any:
    from openlineage.client.transport import get_default_factory

    if settings.file:
        # append: every event goes into this one file, a JSON line each; without it the client
        # writes each event to a file of its own.
        config: dict[str, Any] = {"type": "file", "log_file_path": settings.file, "append": True}
    else:
        config = {"type": "http", "url": settings.url, "endpoint": settings.endpoint,
                  "timeout": settings.timeout,
                  # A few quick retries on server errors, bounded so the run's end never waits long
                  # (run_finished). POST must be listed: urllib3 retries no POST unless told to.
                  "retry": {"total": 2, "read": 2, "connect": 2, "backoff_factor": 0.3,
                            "status_forcelist": [500, 502, 503, 504],
                            "allowed_methods": ["HEAD", "POST"]}}
        if settings.api_key:
            config["auth"] = {"type": "api_key", "apiKey": settings.api_key}
    return get_default_factory().create(config)


def _task_label(calls: Any, index: int) -> str:
    """``task``, or ``task[N]`` when the step calls it more than once (as in ``${steps...}``)."""
    task = calls[index].task
    same = [i for i, call in enumerate(calls) if call.task == task]
    return task if len(same) == 1 else f"{task}[{same.index(index)}]"


def _as_uuid(run_id: str) -> uuid.UUID:
    try:
        # OpenLineage wants a UUID as runId; a run id that is not one (a Step Functions execution
        # name) is mapped to one, always the same.
        return uuid.UUID(run_id)
    except ValueError:
        return uuid.uuid5(_RUN_IDS, run_id)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
