"""Run routines in AWS Lambda: ``orchestrator.aws_lambda.handler``.

Events:
``{"routine": <object> | "s3://bucket/key.json" | "path/in/package.json", "params": {...}}``;
a step of a Step Functions execution (``{"execution", "step", ...}``, see :mod:`.one_step`);
an S3 event notification (one run of ``$ORCHESTRATOR_ROUTINE`` per created object, with params
``bucket``, ``key``, ``s3_uri``) or an EventBridge S3 "Object Created" event (one run, same
params); an EventBridge scheduled event (``$ORCHESTRATOR_ROUTINE`` with ``scheduled_time``).
The run is stopped through its ``cancel()`` a safety margin before Lambda's deadline, so executors
stop their remote work and the record says "cancelled". A run that does not succeed raises
:class:`RunFailed`, so Lambda's retries and dead-letter queues see it.

Routines that come from outside the package (inline, S3, or inline JSON in
``$ORCHESTRATOR_ROUTINE``) are untrusted; all the checks below run before anything runs, and a
refusal is an :class:`InvalidEvent` naming the JSON path of each offending value:

- code they name (staging ``py_exec_path``/``transform``, the python executor's ``path``) must lie
  under a prefix of ``$ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST`` (comma-separated absolute prefixes;
  unset or empty allows none), and each function called from it must be one the file defines
  itself with ``def`` (not a name it imports, such as ``from shutil import copyfile``): checked
  with ``ast`` now and on the function object (``__module__``) when it is imported;
- ``${env.X}`` resolves only for names listed in ``$ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST``
  (comma-separated names; unset or empty allows none), so a routine cannot copy
  ``AWS_SECRET_ACCESS_KEY`` or the like into an S3 key, a folder name or a query;
- every local data location they name (staging ``parent_directory``, ``dump_directory`` and
  ``archive_directory``, the default ``<parent_directory>_archive`` included; any other executor
  parameter or task argument typed as a location, such as ``sql_file``; strings among a function's
  ``kwargs``, ``transform_args`` or ``py_exec_args`` that could be local paths) must lie under a
  prefix of ``$ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST`` (comma-separated absolute prefixes; unset means
  ``/tmp/``, empty allows none), must neither contain nor lie inside a code allowlist prefix (data
  staged there could be imported as code) and must not contain or lie inside the orchestrator home
  (``$ORCHESTRATOR_HOME``, ``/tmp/orchestrator`` by default: run records and executor state).
  ``s3://`` locations are not restricted; other schemes are refused. Relative locations resolve
  against the run's temporary routine folder under ``/tmp`` (relative kwargs against the working
  folder, where the function will open them).

Which params and args are locations or code is declared by each executor (annotations and
``Executor.places``/``task_places``); nothing here names an executor.

Routines packaged with the function (a path inside ``LAMBDA_TASK_ROOT``) are trusted: they see the
whole environment and may name any path or code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import RoutineError, UserError
from ..events import SKIPPED, SUCCEEDED
from ..limits import MAX_DEPTH, DocumentProblem, decode_utf8, read_bounded
from ..routine.load import Routine, load_routine
from .output import JsonLinesRenderer, Output, masked
from .trust import (InvalidEvent, allowlist, env_allowlist, path_allowlist, problem_text,
                    untrusted_policy, visible_env)

ROUTINE_ENV = "ORCHESTRATOR_ROUTINE"
MARGIN_ENV = "ORCHESTRATOR_LAMBDA_MARGIN_SECONDS"
LAMBDA_HOME = "/tmp/orchestrator"
DEFAULT_MARGIN_SECONDS = 10.0
MAX_PARALLEL = 4


class RunFailed(RuntimeError):
    """A run failed or was cancelled (Lambda's deadline included);
    ``summary`` holds what happened."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(f"{message}: {json.dumps(summary, default=str)}")


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a routine comes from; ``text`` is set for routines that arrive with
    the event (untrusted)."""

    label: str
    trusted: bool
    path: Path | None = None
    text: str | None = None
    suffix: str = ".json"


@dataclasses.dataclass(frozen=True)
class Request:
    source: Source
    params: dict[str, Any]


# ---------------------------------------------------------------------- events

def parse_event(event: Any, env: Mapping[str, str] = os.environ) -> list[Request]:
    """The runs an event asks for; raises :class:`InvalidEvent` before anything runs."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"the event must be a JSON object, got {type(event).__name__}")
    # S3 notifications sent straight to Lambda carry their objects in "Records"; SQS and SNS
    # deliveries have "Records" too and are refused below as not S3 records.
    if "Records" in event:
        return _s3_requests(event["Records"], env)
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        return [Request(_configured_routine(env), _eventbridge_object(event))]
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return [Request(_configured_routine(env), {"scheduled_time": event.get("time")})]
    # S3 sends this test event when a notification configuration is saved: it names no object, so it
    # runs nothing, and it must not fail either (Lambda would retry it and count an error).
    if event.get("Event") == "s3:TestEvent":
        return []
    if "routine" in event:
        params = event.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidEvent("event.params must be an object of parameter values")
        return [Request(resolve_source(event["routine"]), dict(params))]
    raise InvalidEvent(
        'unrecognised event: expected {"routine": ..., "params": {...}}, an S3 notification '
        f"or an EventBridge scheduled event; got keys {sorted(event)}"
    )


def _s3_requests(records: Any, env: Mapping[str, str]) -> list[Request]:
    if not isinstance(records, list):
        raise InvalidEvent("event.Records must be a list")
    created = []
    for i, record in enumerate(records):
        if (
            not isinstance(record, dict)
            or record.get("eventSource") not in (None, "aws:s3")
            or "s3" not in record
        ):
            raise InvalidEvent(f"event.Records[{i}] is not an S3 event notification record")
        # A bucket may be set to notify removals too; they are skipped, not refused, so one removal
        # does not fail the creations delivered with it.
        if str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
            bucket = _record_field(record, i, "bucket", "name")
            # S3 notifications URL-encode the key ("orders 2026=11.csv" arrives as
            # "orders+2026%3D11.csv"); the EventBridge form does not, so only this path decodes.
            key = urllib.parse.unquote_plus(_record_field(record, i, "object", "key"))
            created.append({"bucket": bucket, "key": key, "s3_uri": f"s3://{bucket}/{key}"})
    # Only now is the configured routine resolved: a notification of removals alone must not need
    # $ORCHESTRATOR_ROUTINE set, nor fetch the routine from S3 for nothing.
    if not created:
        return []
    source = _configured_routine(env)
    return [Request(source, params) for params in created]


def _object(value: Any) -> dict[str, Any]:
    """A JSON object from an event, or an empty one where the event has something else."""
    return value if isinstance(value, dict) else {}


def _eventbridge_object(event: dict[str, Any]) -> dict[str, str]:
    """An EventBridge S3 "Object Created" event (what ``generate --target lambda --s3-trigger``
    wires up, since it works with existing buckets): the same params as a notification; its key is
    not URL-encoded.
    """
    detail = _object(event.get("detail"))
    bucket, key = _object(detail.get("bucket")).get("name"), _object(detail.get("object")).get(
        "key"
    )
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise InvalidEvent(
            "event.detail.bucket.name and event.detail.object.key must be non-empty strings "
            "in an S3 Object Created event"
        )
    return {"bucket": bucket, "key": key, "s3_uri": f"s3://{bucket}/{key}"}


def _record_field(record: dict[str, Any], i: int, part: str, name: str) -> str:
    """``record.s3.<part>.<name>``, a non-empty string,
    or :class:`InvalidEvent` naming what is missing."""
    value: Any = record["s3"]
    where = "s3"
    for key in (part, name):
        where += f".{key}"
        if not isinstance(value, dict) or key not in value:
            raise InvalidEvent(
                f"event.Records[{i}].{where} is missing: not an S3 event notification record"
            )
        value = value[key]
    if not isinstance(value, str) or not value:
        raise InvalidEvent(
            f"event.Records[{i}].s3.{part}.{name} must be a non-empty string, got {value!r}"
        )
    return value


def _configured_routine(env: Mapping[str, str]) -> Source:
    ref = env.get(ROUTINE_ENV, "").strip()
    if not ref:
        raise InvalidEvent(
            f"{ROUTINE_ENV} is not set: S3 and scheduled events run the routine it names"
        )
    return resolve_source(ref)


def resolve_source(ref: Any) -> Source:
    """An inline object (or JSON text), an ``s3://`` URI (fetched now) or a path
    inside the package."""
    # $ORCHESTRATOR_ROUTINE may hold the routine itself as JSON text rather than naming it.
    if isinstance(ref, str) and ref.strip().startswith("{"):
        try:
            ref = json.loads(ref)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(
                f"routine: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        except (RecursionError, ValueError):  # too deep, an integer too long: the file check says
            return Source("inline routine", trusted=False, text=ref)
    if isinstance(ref, dict):
        try:
            return Source("inline routine", trusted=False, text=json.dumps(ref))
        except (RecursionError, ValueError):
            raise InvalidEvent(f"routine: nested deeper than {MAX_DEPTH} levels or holding an "
                               "integer too long; fix the event") from None
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidEvent(
            "routine must be an object, an s3:// URI or a path inside the Lambda package"
        )
    ref = ref.strip()
    if ref.startswith("s3://"):
        # The suffix picks the parser when the text is written to a file for load_routine; any key
        # that does not end in .yaml/.yml is read as JSON.
        suffix = Path(ref).suffix.lower() if ref.lower().endswith((".yaml", ".yml")) else ".json"
        return Source(ref, trusted=False, text=_fetch_s3(ref), suffix=suffix)
    return Source(ref, trusted=True, path=package_path(ref))


def package_path(ref: str) -> Path:
    """A routine file inside the deployed package; anything outside it (``..``,
    /tmp) is not trusted code."""
    # Lambda sets LAMBDA_TASK_ROOT to where the deployment package is unpacked (/var/task); outside
    # Lambda the working folder stands in. Both sides are resolved, so neither ".." nor a symlink in
    # the package can make a file from elsewhere pass as packaged, trusted code.
    root = Path(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()).resolve()
    path = (root / ref).resolve()
    if not path.is_relative_to(root):
        raise InvalidEvent(f"routine {ref!r} is outside the Lambda package root {root}")
    return path


def _fetch_s3(uri: str) -> str:
    # Imported here: the core imports nothing from AWS at module level, and only S3 routines pay.
    import boto3
    from botocore.exceptions import ClientError

    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise InvalidEvent(f"routine {uri!r} must be s3://bucket/key")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        try:  # bounded: a routine of gigabytes must not be read into memory to be refused
            return decode_utf8(read_bounded(body))
        finally:
            body.close()
    except ClientError as exc:
        raise InvalidEvent(
            f"cannot read routine {uri}: {exc.response.get('Error', {}).get('Code', exc)}"
        ) from None
    except DocumentProblem as exc:
        raise InvalidEvent(f"routine {uri}: {exc}") from None


# ---------------------------------------------------------------------- deadline

def margin_seconds(env: Mapping[str, str] = os.environ) -> float:
    try:
        margin = float(env.get(MARGIN_ENV) or DEFAULT_MARGIN_SECONDS)
    except ValueError:
        # A value that is not a number falls through to the same refusal as a negative one.
        margin = -1.0
    # "not >= 0" rather than "< 0": float("nan") parses, and NaN compares false both ways, so "< 0"
    # would let it through to the deadline timer's arithmetic.
    if not margin >= 0:
        raise InvalidEvent(
            f"{MARGIN_ENV}={env.get(MARGIN_ENV)!r}: expected a number of seconds >= 0"
        )
    return margin


def cancel_at(context: Any, cancel: Callable[[], None], margin: float) -> threading.Timer | None:
    """A started timer that calls ``cancel`` ``margin`` (at most half the time left)
    before Lambda's deadline."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    # Called outside Lambda (tests, a local invoke) the context has no deadline to guard.
    if remaining_ms is None:
        return None
    remaining = remaining_ms() / 1000.0
    # Capping the margin at half the time left keeps a short-timeout function (say 15 s against the
    # default 10 s margin) from being cancelled almost as soon as it starts.
    timer = threading.Timer(max(remaining - min(margin, remaining / 2), 0.0), cancel)
    # Daemon, so a timer that is never cancelled cannot keep an interpreter alive at exit.
    timer.daemon = True
    timer.start()
    return timer


# ---------------------------------------------------------------------- running

# Run ids this process is executing right now: a holder listed here is live, never a leftover. The
# set outlives one invocation, as warm invocations reuse the module.
_ACTIVE: set[str] = set()


def claim(tracked: Any) -> None:
    """Claim the routine; a holder recorded by this very process (same host and pid) that is not
    running here is a leftover of an earlier invocation in this sandbox, or of a killed sandbox that
    had the same host name and pid: ``is_dead`` cannot tell it from a live run, so it is marked dead
    and the claim retried.
    """
    from ..runs.store import DEAD, RoutineBusy, hostname

    try:
        tracked.claim()
    except RoutineBusy as busy:
        holder = tracked.store.get_run(busy.run_id)
        if (
            holder is None
            or busy.run_id in _ACTIVE
            or holder.host != hostname()
            or holder.pid != os.getpid()
        ):
            raise
        # Marked dead in the store, not merely skipped here: the store's claim is what refused, and
        # it would find the leftover running on every later claim.
        tracked.store.update_run(holder.run_id, status=DEAD, ended=time.time())
        tracked.claim()
    _ACTIVE.add(tracked.record.run_id)


class LambdaRunner:
    """Holds the plugin registry across warm invocations; ``handle`` is the whole handler."""

    def __init__(self, registry: Any = None) -> None:
        self._registry = registry

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from ..registry import Registry

            self._registry = Registry()
        return self._registry

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        # Lambda's file system is read-only except /tmp, so the default ~/.orchestrator home (run
        # store, executor state) cannot be created; setdefault keeps a home the function's
        # configuration names.
        os.environ.setdefault("ORCHESTRATOR_HOME", LAMBDA_HOME)
        from . import one_step

        if one_step.is_step_event(event):  # a Step Functions execution's step (or its end)
            return one_step.handle(self, event, context)
        requests = parse_event(event)
        # An S3 notification always gets the {"runs": [...]} shape, even for one object: the
        # result's shape follows the event's kind, not how many objects one delivery carried.
        if len(requests) == 1 and "Records" not in event:
            summary = self.run(requests[0], context)
            if summary["status"] not in (SUCCEEDED, SKIPPED):
                raise RunFailed(f"run {summary['run_id']} {summary['status']}", summary)
            return summary
        return self.run_all(requests, context)

    def run_all(self, requests: list[Request], context: Any) -> dict[str, Any]:
        """One run per S3 object, in order; after a deadline cancellation the
        rest are not started."""
        runs: list[dict[str, Any]] = []
        for request in requests:
            # No time is left after a deadline cancellation; the objects not started stay in the
            # summary, so RunFailed (and Lambda's retry of the event) shows what is still to do.
            if runs and runs[-1].get("deadline"):
                runs.append({"status": "not started", "params": request.params})
                continue
            runs.append(self.run(request, context))
        bad = [r for r in runs if r["status"] not in (SUCCEEDED, SKIPPED)]
        summary = {"status": (bad[0]["status"] if bad else SUCCEEDED), "runs": runs}
        if bad:
            raise RunFailed(f"{len(bad)} of {len(runs)} runs did not succeed", summary)
        return summary

    def run(self, request: Request, context: Any) -> dict[str, Any]:
        from ..engine import RunOptions, plan
        from ..runs.control import TrackedRun
        from ..runs.store import open_store

        margin = margin_seconds()
        # load_routine reads a file: an event's routine is written to a fresh folder under /tmp,
        # which its relative locations resolve against and which is gone when the run ends.
        with tempfile.TemporaryDirectory(prefix="orchestrator-routine-") as folder:
            routine = self.load(request, Path(folder))
            renderer = JsonLinesRenderer(routine.run_id, routine.name, routine.secrets,
                                         request_id=getattr(context, "aws_request_id", None))
            options = RunOptions(params=request.params, max_parallel=MAX_PARALLEL)
            tracked = TrackedRun(open_store(self.registry), plan(routine), [renderer], options)
            # An untrusted routine's temporary file is gone after the run: record where it came
            # from.
            tracked.record.routine_file = (
                str(request.source.path) if request.source.trusted else request.source.label
            )
            claim(tracked)
            deadline = threading.Event()

            def on_deadline() -> None:
                deadline.set()
                renderer.emit("deadline", "WARNING", status="cancelling")
                tracked.cancel()

            timer = None
            try:
                timer = cancel_at(context, on_deadline, margin)
                with Output(renderer, routine.secrets):
                    result = tracked.execute()
            finally:
                # In finally: a run that raised must not look live to a later invocation's claim.
                _ACTIVE.discard(routine.run_id)
                if timer is not None:
                    timer.cancel()
        # The summary is Lambda's return value (or RunFailed's message, which Lambda reports as the
        # error); task errors in it may quote a secret.
        summary = masked(result.to_dict(), routine.secrets)
        summary["deadline"] = deadline.is_set()
        return summary

    def load(self, request: Request, folder: Path) -> Routine:
        """Validate the routine (and, for untrusted ones,
        the code it names) before any side effect."""
        source = request.source
        path = source.path
        if path is None:
            path = folder / f"routine{source.suffix}"
            path.write_text(source.text or "", encoding="utf-8")
        # Only for error messages: which ${env.X} an untrusted routine could have read.
        readable = [] if source.trusted else env_allowlist()
        # The home the run store opens under; the untrusted policy keeps data locations out of it.
        home = os.path.realpath(
            os.path.expanduser(
                os.environ.get("ORCHESTRATOR_HOME") or str(Path.home() / ".orchestrator")
            )
        )
        try:
            routine = load_routine(
                path,
                request.params,
                self.registry,
                env=None if source.trusted else visible_env(),
                policy=(
                    None
                    if source.trusted
                    else untrusted_policy(allowlist(), path_allowlist(), home)
                ),
                # Events add params a routine need not declare (bucket, key, s3_uri,
                # scheduled_time): here an undeclared param is not the misspelling it is on the
                # command line.
                strict_params=False,
                # an event's own routine may not read the function's secrets
                resolve_secrets=source.trusted,
            )
        except RoutineError as exc:
            problems = "; ".join(problem_text(p, source.trusted, readable) for p in exc.problems)
            raise InvalidEvent(f"{source.label}: {problems}") from None
        except UserError as exc:
            # InvalidEvent's message is one line, as CloudWatch and the invoke response show it.
            raise InvalidEvent(f"{source.label}: {' '.join(str(exc).split())}") from None
        return routine


_default: LambdaRunner | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point (``orchestrator.aws_lambda.handler``)."""
    # Built at the first invocation, not at import, and kept for the warm ones that follow: the
    # plugin registry (entry points, executor imports) is loaded once per sandbox.
    global _default
    if _default is None:
        _default = LambdaRunner()
    return _default.handle(event, context)
