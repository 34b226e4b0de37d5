"""What the Athena, Redshift and Glue executors share: clients, waiting, cancelling, remembering.

* Clients: one boto3 ``Session`` per executor instance (that is, per step of one run), created on
  first use; clients are created lazily from it with standard retry mode. A session is not safe to
  build clients from concurrently, and steps run in parallel threads, so a per-instance session
  under a lock avoids sharing one across threads while still reusing connections within a step.
  Region, profile and endpoints come from the usual environment (boto3 resolves them itself).
* Waiting: :class:`Backoff` polls at 0.2 s, then at a fifth of the elapsed time (so a finished
  job is seen within ~20 % of its run time), with jitter, capped; :func:`wait_for` bounds it by a
  deadline and wakes up at once on cancellation.
* Cancelling: :class:`InFlight` remembers remote work in progress so ``Executor.cancel()`` (from
  another thread) can stop it; the task itself then confirms the stop and raises ``Cancelled``.
* Never twice: :class:`RemoteRecord` writes each remote id to a JSON file under the step's state
  folder the moment it exists; a retry finds it and re-attaches instead of submitting again.

boto3 is imported inside functions only: importing this module must stay cheap.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, TypeVar

from orchestrator.events import CANCELLED, FAILED, SUCCEEDED
from orchestrator.executor import Cancelled, Context, Executor, NotRetryable

from ..calls import CallKeys

T = TypeVar("T")

DEFAULT_TOTAL_ATTEMPTS = 5
STOP_CONFIRM_SECONDS = 6.0
TRANSIENT_PATIENCE_SECONDS = 900.0
"""Without a deadline, status calls failing transiently this long in a row end the wait (the work is stopped)."""
TOKEN_NAMESPACE = uuid.UUID("9f2d0c5e-52b4-4c36-9d5a-8a7a1f1e3c01")
ORPHAN_CLOCK_SKEW = 60.0
"""An orphan's submission time may read this much before our token save (clocks differ)."""
ORPHAN_SUBMIT_WINDOW = 600.0
"""...and this much after it: a submit call with all its retries ends well within it."""

TERMINAL_STATES: dict[str, dict[str, str]] = {
    "athena": {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "CANCELLED": CANCELLED},
    "redshift": {"FINISHED": SUCCEEDED, "FAILED": FAILED, "ABORTED": CANCELLED},
    "glue": {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "ERROR": FAILED, "TIMEOUT": FAILED, "EXPIRED": FAILED,
             "STOPPED": CANCELLED},
    "glue-crawler": {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "CANCELLED": CANCELLED},
    "ecs": {"EXITED_ZERO": SUCCEEDED, "EXITED_NONZERO": FAILED, "STOPPED_BY_USER": CANCELLED},
}
"""Each engine's terminal states mapped to ours; any state not listed is still running.

Athena: QUEUED/RUNNING live. Redshift Data API: SUBMITTED/PICKED/STARTED live. Glue job runs:
STARTING/RUNNING/STOPPING/WAITING live. Glue crawls (``LastCrawl.Status`` once the crawler is READY).
The raw state is always kept beside ours in the task's metrics.
"""


NOT_FOUND_CODES: dict[str, frozenset[str]] = {
    "athena": frozenset({"InvalidRequestException"}),
    "redshift": frozenset({"ResourceNotFoundException"}),
    "glue": frozenset({"EntityNotFoundException"}),
    "ecs": frozenset({"TaskNotFound", "ClusterNotFoundException"}),
}
"""The error codes with which each engine's status call says a remote id does not exist (any more)."""

_log = logging.getLogger(__name__)


def outcome(engine: str, raw_state: str | None) -> str | None:
    """Our status for an engine's raw state, or None while the remote work is still going."""
    return TERMINAL_STATES[engine].get(raw_state or "")


class RemoteJobError(RuntimeError):
    """Remote work ended badly; the message names the work, its remote id and the engine's reason."""

    def __init__(self, engine: str, what: str, remote_id: str, state: str, reason: str | None = None) -> None:
        self.engine, self.what, self.remote_id, self.state, self.reason = engine, what, remote_id, state, reason
        text = f"{engine} {what} {remote_id} ended {state}"
        super().__init__(f"{text}: {reason}" if reason else text)


class StopRemote(Exception):
    """Raised from an ``on_poll`` hook: stop the remote work, then raise ``error`` (e.g. a cost guard)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class RefusedEarlier(NotRetryable):
    """An earlier attempt stopped this work for a reason a retry would only repeat (e.g. a cost guard)."""


class RemoteCancelled(Cancelled):
    """The remote work was stopped (by us on cancel/timeout, or by someone else)."""

    def __init__(self, engine: str, what: str, remote_id: str, state: str | None) -> None:
        self.engine, self.what, self.remote_id, self.state = engine, what, remote_id, state
        super().__init__(f"{engine} {what} {remote_id} cancelled (remote state {state or 'unknown'})")


# --------------------------------------------------------------------------- clients

def retry_config(total_attempts: int | None = None, connect_timeout: float = 10, read_timeout: float = 60) -> Any:
    """Standard retry mode; attempts from ``AWS_MAX_ATTEMPTS`` when set, else 5 requests in total."""
    from botocore.config import Config

    retries: dict[str, Any] = {"mode": "standard"}
    if total_attempts is not None:
        retries["total_max_attempts"] = total_attempts
    elif not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["total_max_attempts"] = DEFAULT_TOTAL_ATTEMPTS
    return Config(retries=retries, connect_timeout=connect_timeout, read_timeout=read_timeout,
                  user_agent_extra="orchestrator")


class AwsClients:
    """A lazily created boto3 session and its clients, safe to use from the task and cancel threads."""

    def __init__(self, region: str | None = None) -> None:
        self.region = region
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        with self._lock:
            return self._session_locked()

    def _session_locked(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def client(self, service: str, total_attempts: int | None = None) -> Any:
        """A cached client; ``total_attempts`` gives a separate client with its own retry budget."""
        key = service if total_attempts is None else f"{service}#{total_attempts}"
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._session_locked().client(service, config=retry_config(total_attempts))
            return self._clients[key]

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
                              "RequestLimitExceeded", "ProvisionedThroughputExceededException", "SlowDown"})


def transient(exc: BaseException) -> bool:
    """Worth another try: throttling, a 5xx answer, or no answer at all."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or error_code(exc) in THROTTLING_CODES
    return False


def environment_problems(clients: AwsClients) -> list[str]:
    """What every AWS executor needs before any call: boto3, credentials and a region."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        return ["boto3 is not installed"]
    problems: list[str] = []
    try:
        if clients.session.get_credentials() is None:
            problems.append("no AWS credentials found (env, profile, SSO or instance role)")
        if not clients.session.region_name:
            problems.append("no AWS region set (AWS_REGION / AWS_DEFAULT_REGION / profile)")
    except Exception as exc:  # a broken profile file, say: doctor reports, it does not crash
        problems.append(f"AWS configuration: {type(exc).__name__}: {exc}")
    return problems


def check_service(clients: AwsClients, service: str, probe: Callable[[Any], Any],
                  ok_codes: Iterable[str] = ()) -> list[str]:
    """Doctor checks: credentials resolve, the endpoint answers, one cheap call is allowed."""
    problems = environment_problems(clients)
    if problems:
        return problems
    try:
        client = clients.client(service)
        probe(client)
    except Exception as exc:  # doctor reports, it does not crash
        if error_code(exc) not in set(ok_codes):
            endpoint = getattr(getattr(clients._clients.get(service), "meta", None), "endpoint_url", "?")
            problems.append(f"{service} at {endpoint}: {type(exc).__name__}: {exc}")
    return problems


# --------------------------------------------------------------------------- waiting

@dataclasses.dataclass(frozen=True)
class Backoff:
    """Poll delays: ``first`` at the start, then ``ratio`` × elapsed time, jittered, at most ``cap``.

    Detection lag stays proportional to the run time (a 2 s query is seen within ~0.4 s of
    finishing) while the number of calls grows only logarithmically until the cap.
    """

    first: float = 0.2
    ratio: float = 0.2
    cap: float = 30.0
    jitter: float = 0.1

    def delay(self, elapsed: float, rng: random.Random | None = None) -> float:
        base = min(self.cap, max(self.first, self.ratio * elapsed))
        return base * (1 + self.jitter * (2 * (rng or random).random() - 1))


DEFAULT_BACKOFF = Backoff()


def wait_for(poll: Callable[[], T], done: Callable[[T], bool], context: Context | None, *,
             backoff: Backoff = DEFAULT_BACKOFF, deadline: float | None = None,
             long_poll: float = 0.0) -> T:
    """Call ``poll`` until ``done``; raise ``Cancelled`` when the run is cancelled, ``TimeoutError`` at ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value. With ``long_poll`` > 0 the remote side may hold
    the call open that long: when a call took most of it, the next one follows at once.
    """
    start = time.monotonic()
    while True:
        called = time.monotonic()
        value = poll()
        if done(value):
            return value
        if context is not None and context.cancelled:
            raise Cancelled("cancelled while waiting")
        now = time.monotonic()
        if long_poll and now - called >= 0.8 * long_poll:
            continue
        delay = backoff.delay(now - start)
        if deadline is not None:
            if now >= deadline:
                raise TimeoutError(f"still not done after {now - start:.1f}s")
            delay = min(delay, deadline - now)
        if _sleep(context, delay):
            raise Cancelled("cancelled while waiting")


def _sleep(context: Context | None, seconds: float) -> bool:
    if context is None:
        time.sleep(seconds)
        return False
    return context.wait(seconds)


# --------------------------------------------------------------------------- remote work

@dataclasses.dataclass
class RemoteOps:
    """How to describe and stop one kind of remote work; used by :func:`run_remote`."""

    engine: str
    what: str
    describe: Callable[[str], dict[str, Any]]
    state_of: Callable[[dict[str, Any]], str | None]
    reason_of: Callable[[dict[str, Any]], str | None]
    stop: Callable[[str], None]
    long_poll: float = 0.0


class InFlight:
    """Remote work in progress for one executor instance, so ``cancel()`` can stop it from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], RemoteOps] = {}
        self._stopped: set[tuple[str, str]] = set()

    def add(self, ops: RemoteOps, remote_id: str) -> None:
        with self._lock:
            self._items[(ops.engine, remote_id)] = ops

    def discard(self, ops: RemoteOps, remote_id: str) -> None:
        with self._lock:
            self._items.pop((ops.engine, remote_id), None)

    def stop(self, ops: RemoteOps, remote_id: str) -> None:
        """Ask the engine to stop ``remote_id`` once; later calls are no-ops."""
        key = (ops.engine, remote_id)
        with self._lock:
            if key in self._stopped:
                return
            self._stopped.add(key)
        try:
            ops.stop(remote_id)
        except Exception:
            with self._lock:
                self._stopped.discard(key)
            raise

    def stop_all(self) -> list[str]:
        """Stop everything in flight; return errors instead of raising (called from ``cancel()``)."""
        with self._lock:
            items = list(self._items.items())
        errors = []
        for (engine, remote_id), ops in items:
            try:
                self.stop(ops, remote_id)
            except Exception as exc:
                errors.append(f"{engine} {remote_id}: {exc}")
        return errors


def args_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RemoteRecord:
    """A JSON file remembering one unit of remote work of one task call across attempts.

    Keyed by run id, step (the state folder), task name, the call's ordinal within the step and
    the unit's index within the task: the same for attempt 1 and attempt 2, different for the
    second call of the same task. ``generation`` grows each time the remembered work ended badly,
    so the next submission gets a fresh idempotency token.

    A file that cannot be read, or holds something other than a record, counts as no record (with
    a warning): the deterministic token still lets Glue find a run an earlier attempt started.
    ``previous`` is the same unit's record in the run this run resumes, when this run has none yet.
    """

    def __init__(self, folder: Path, key: str, digest: str, run_id: str, scope: str = "",
                 logger: logging.Logger | None = None) -> None:
        self.path = folder / f"{key}.json"
        self.key, self.digest, self.run_id, self.scope = key, digest, run_id, scope
        self.logger = logger or _log
        self.previous: RemoteRecord | None = None
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.logger.warning("remote record %s cannot be read (%s); treating it as empty", self.path, exc)
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.logger.warning("remote record %s is not valid JSON (%s); treating it as empty", self.path, exc)
            return {}
        problem = _record_problem(data)
        if problem:
            self.logger.warning("remote record %s is malformed (%s); treating it as empty", self.path, problem)
            return {}
        return data if data.get("digest") == self.digest else {}

    @property
    def remote_id(self) -> str | None:
        return self.data.get("id")

    @property
    def generation(self) -> int:
        return int(self.data.get("generation", 0))

    def token(self) -> str:
        """A deterministic UUID (36 chars): valid for Athena (32–128), Redshift (≤64) and as a Glue argument."""
        return str(uuid.uuid5(TOKEN_NAMESPACE, f"{self.run_id}/{self.scope}/{self.key}/{self.generation}"))

    def save(self, **fields: Any) -> None:
        self.data.update(fields, digest=self.digest, key=self.key, run_id=self.run_id, updated=time.time())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        os.replace(tmp, self.path)

    def next_generation(self) -> None:
        self.save(id=None, state=None, token=None, generation=self.generation + 1)


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, type(None)), "token": (str, type(None)), "state": (str, type(None)), "refused": (str, type(None)),
    "digest": (str,), "key": (str,), "run_id": (str,), "token_saved": (int, float, type(None)),
}


def _record_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for field, types in _RECORD_TYPES.items():
        if field in data and not isinstance(data[field], types):
            return f"{field} is {data[field]!r}"
    generation = data.get("generation", 0)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        return f"generation is {generation!r}"
    return None


@dataclasses.dataclass
class RemoteResult:
    """The final description of remote work, and whether we re-attached instead of submitting."""

    remote_id: str
    description: dict[str, Any]
    raw_state: str
    reattached: bool


FindOrphan = Callable[[str, float, frozenset], "str | None"]
"""``(token, submitted_at, known_ids) -> id``: work submitted with ``token`` at about
``submitted_at`` (epoch seconds) whose id was never recorded, not one of ``known_ids``; or None."""


def run_remote(ops: RemoteOps, record: RemoteRecord, submit: Callable[[str], str], context: Context,
               inflight: InFlight, *, find_live: Callable[[str], str | None] | None = None,
               find_orphan: FindOrphan | None = None,
               on_poll: Callable[[dict[str, Any]], None] | None = None,
               deadline: float | None = None) -> RemoteResult:
    """Submit (or re-attach to) remote work, wait for it, and map its end to ours.

    ``submit(token)`` starts the work and returns its id; ``find_live(token)`` may find work a
    previous attempt started but could not record (Glue has no idempotency token).

    A token saved without an id means a submission whose answer was lost (a crash or a lost reply
    between the two saves, here or in the run this one resumes). That token is submitted again,
    so an engine that honours it (Athena's ClientRequestToken, the Redshift Data API's ClientToken)
    returns the same work instead of starting it twice. Before that, ``find_orphan`` (best effort)
    looks the work up and adopts it: for engines or emulators that ignore the token, and for
    tokens the engine has forgotten.
    Raises :class:`RemoteJobError` on failure and :class:`RemoteCancelled` when it was stopped.
    Once submitted, the work is never left running unwatched: if waiting fails for any reason
    other than transient status errors (which are waited out), it is stopped before the error
    is raised.
    """
    context.check_cancelled()
    if record.data.get("refused"):
        raise RefusedEarlier(f"{ops.engine} {ops.what} {record.remote_id or '?'} was stopped by an earlier attempt: "
                             f"{record.data['refused']}")
    remote_id, reattached, description = _reattach(ops, record, context, find_live, find_orphan)
    if description is not None and outcome(ops.engine, ops.state_of(description)) == SUCCEEDED:
        return RemoteResult(remote_id or "", description, ops.state_of(description) or "", True)
    if remote_id is None:
        token = record.data.get("token") or record.token()
        record.save(token=token, id=None, token_saved=time.time())
        remote_id = submit(token)
        record.save(id=remote_id, state="SUBMITTED", submitted=time.time())
        context.logger.info("%s %s %s submitted", ops.engine, ops.what, remote_id)
    inflight.add(ops, remote_id)
    try:
        description = _wait(ops, remote_id, context, on_poll, deadline)
    except Cancelled:
        raise _stop_and_confirm(ops, remote_id, context, inflight, record) from None
    except StopRemote as stop:
        _stop_and_confirm(ops, remote_id, context, inflight, record)
        if getattr(stop.error, "retryable", True) is False:
            record.save(refused=str(stop.error))
        else:
            record.next_generation()
        raise stop.error from None
    except Exception as exc:
        context.logger.warning("%s %s %s: waiting failed (%s: %s); stopping it so it does not run unwatched",
                               ops.engine, ops.what, remote_id, type(exc).__name__, exc)
        _stop_and_confirm(ops, remote_id, context, inflight, record)
        raise
    finally:
        inflight.discard(ops, remote_id)
    return _finish(ops, record, remote_id, description, reattached)


def _reattach(ops: RemoteOps, record: RemoteRecord, context: Context,
              find_live: Callable[[str], str | None] | None,
              find_orphan: FindOrphan | None) -> tuple[str | None, bool, dict[str, Any] | None]:
    """Work this call already has: in its record, in the resumed run's record, or found by token."""
    remote_id, source = record.remote_id, "an earlier attempt"
    previous = record.previous if not record.data else None
    if remote_id is None and previous is not None:
        remote_id, source = _previous_id(previous, find_live), f"resumed run {previous.run_id}"
        if remote_id is None and previous.data.get("token"):
            _inherit_token(ops, record, previous, context)
    if remote_id is None and record.data.get("token") and find_orphan is not None:
        remote_id = _find_orphan(ops, record, previous, context, find_orphan)
        source = "a submission never recorded"
    if remote_id is None and find_live is not None:
        remote_id, source = _find_live(ops, record, context, find_live), "an earlier attempt (found by token)"
    if remote_id is None:
        return None, False, None
    try:
        description = ops.describe(remote_id)
    except Exception as exc:
        if error_code(exc) not in NOT_FOUND_CODES.get(ops.engine, frozenset()):
            raise
        context.logger.warning("%s %s %s from %s does not exist (%s); submitting anew",
                               ops.engine, ops.what, remote_id, source, exc)
        if record.remote_id is not None:
            record.next_generation()
        return None, False, None
    state = ops.state_of(description)
    ours = outcome(ops.engine, state)
    if ours is None or ours == SUCCEEDED:
        verb = "already succeeded; not submitting again" if ours else f"still {state}; re-attaching"
        context.logger.info("%s %s %s from %s %s", ops.engine, ops.what, remote_id, source, verb)
        extra = {"inherited_from": previous.run_id} if previous is not None and record.remote_id is None else {}
        record.save(id=remote_id, **extra)
        return remote_id, True, description
    context.logger.info("%s %s %s from %s ended %s; submitting anew", ops.engine, ops.what, remote_id, source, state)
    if record.remote_id is not None or record.data.get("token"):
        record.next_generation()
    return None, False, None


def _inherit_token(ops: RemoteOps, record: RemoteRecord, previous: RemoteRecord,
                   context: Context) -> None:
    """The resumed run saved a token and died before it saved the id: submit with that token."""
    token = previous.data["token"]
    context.logger.info("%s %s: resumed run %s submitted it (token %s) but never recorded its id; "
                        "using the same token", ops.engine, ops.what, previous.run_id, token)
    saved = previous.data.get("token_saved") or previous.data.get("updated") or time.time()
    record.save(id=None, token=token, token_saved=saved, inherited_from=previous.run_id)


def _find_orphan(ops: RemoteOps, record: RemoteRecord, previous: RemoteRecord | None,
                 context: Context, find_orphan: FindOrphan) -> str | None:
    """Best effort: a failed look-up is logged; the saved token, sent next, is the safeguard."""
    token = record.data["token"]
    saved = record.data.get("token_saved") or record.data.get("updated") or time.time()
    try:
        found = find_orphan(token, float(saved), known_ids(record, previous))
    except Exception as exc:
        context.logger.warning("%s %s: cannot look for work submitted with token %s (%s: %s); "
                               "submitting with the same token", ops.engine, ops.what, token,
                               type(exc).__name__, exc)
        return None
    if found:
        context.logger.warning("%s %s %s was submitted with token %s but its id was never "
                               "recorded; adopting it", ops.engine, ops.what, found, token)
    return found


def known_ids(*records: RemoteRecord | None) -> frozenset[str]:
    """Remote ids recorded next to these records (the step's other units): never an orphan."""
    ids: set[str] = set()
    for folder in {r.path.parent for r in records if r is not None}:
        for path in folder.glob("*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                ids.add(data["id"])
    return frozenset(ids)


def closest_submission(candidates: Iterable[tuple[str, float]], since: float) -> str | None:
    """The id submitted nearest ``since`` within [since - clock skew, since + submit window]."""
    fitting = [(abs(at - since), remote_id) for remote_id, at in candidates
               if since - ORPHAN_CLOCK_SKEW <= at <= since + ORPHAN_SUBMIT_WINDOW]
    return min(fitting)[1] if fitting else None


def _previous_id(previous: RemoteRecord, find_live: Callable[[str], str | None] | None) -> str | None:
    """The id the resumed run recorded for this unit (or, for Glue, found by the token it used)."""
    if previous.remote_id is not None:
        return previous.remote_id
    token = previous.data.get("token")
    return find_live(token) if token and find_live is not None else None


def _find_live(ops: RemoteOps, record: RemoteRecord, context: Context,
               find_live: Callable[[str], str | None]) -> str | None:
    """Look for work started with this record's token before (re)submitting.

    With a remembered token a failed look-up fails the attempt (as a lost reply must not start a
    second run). Without one (first submission, or a lost/unreadable record) only a transient
    failure does; any other is logged and the work is submitted.
    """
    token = record.data.get("token")
    try:
        return find_live(token or record.token())
    except Exception as exc:
        if token or transient(exc):
            raise
        context.logger.warning("%s %s: cannot look for a run started earlier (%s); submitting", ops.engine, ops.what, exc)
        return None


def _wait(ops: RemoteOps, remote_id: str, context: Context, on_poll: Callable[[dict[str, Any]], None] | None,
          deadline: float | None) -> dict[str, Any]:
    """Poll until the work ends; a transient status failure (throttling, 5xx, no answer) means "not yet"."""
    failing_since: list[float] = []

    def poll() -> dict[str, Any] | None:
        try:
            description = ops.describe(remote_id)
        except Exception as exc:
            if not transient(exc):
                raise
            now = time.monotonic()
            failing_since[:] = failing_since or [now]
            if deadline is None and now - failing_since[0] > TRANSIENT_PATIENCE_SECONDS:
                raise
            context.logger.warning("%s %s %s: status not available (%s); still waiting",
                                   ops.engine, ops.what, remote_id, exc)
            return None
        failing_since.clear()
        if on_poll is not None:
            on_poll(description)
        return description

    result = wait_for(poll, lambda d: d is not None and outcome(ops.engine, ops.state_of(d)) is not None, context,
                      deadline=deadline, long_poll=ops.long_poll)
    assert result is not None
    return result


def _stop_and_confirm(ops: RemoteOps, remote_id: str, context: Context, inflight: InFlight,
                      record: RemoteRecord) -> RemoteCancelled:
    """Stop the work and wait briefly until the engine says it stopped; the record keeps the final state."""
    state: str | None = None
    try:
        inflight.stop(ops, remote_id)
        end = time.monotonic() + STOP_CONFIRM_SECONDS
        description = wait_for(lambda: ops.describe(remote_id), lambda d: outcome(ops.engine, ops.state_of(d)) is not None,
                               None, deadline=end, backoff=Backoff(first=0.2, ratio=0.5, cap=1.0))
        state = ops.state_of(description)
    except Exception as exc:
        context.logger.warning("%s %s %s: stop not confirmed: %s", ops.engine, ops.what, remote_id, exc)
    record.save(state=state)
    context.logger.info("%s %s %s stopped (remote state %s)", ops.engine, ops.what, remote_id, state)
    return RemoteCancelled(ops.engine, ops.what, remote_id, state)


def _finish(ops: RemoteOps, record: RemoteRecord, remote_id: str, description: dict[str, Any],
            reattached: bool) -> RemoteResult:
    state = ops.state_of(description) or ""
    record.save(state=state)
    ours = outcome(ops.engine, state)
    if ours == SUCCEEDED:
        return RemoteResult(remote_id, description, state, reattached)
    if ours == CANCELLED:
        raise RemoteCancelled(ops.engine, ops.what, remote_id, state)
    raise RemoteJobError(ops.engine, ops.what, remote_id, state, ops.reason_of(description))


# --------------------------------------------------------------------------- executor base

class AwsExecutor(CallKeys, Executor):
    """Base of the AWS executors: clients, in-flight tracking, per-call record keys, ``cancel()``."""

    service: ClassVar[str] = ""

    @classmethod
    def check_environment(cls) -> list[str]:
        return environment_problems(AwsClients())

    def _aws_setup(self, region: str | None = None) -> None:
        """In-memory state only: constructors must have no side effects."""
        self._clients = AwsClients(region)
        self._inflight = InFlight()
        self._ordinals: dict[str, int] = {}

    @property
    def aws(self) -> AwsClients:
        return self._clients

    def cancel(self) -> None:
        self._inflight.stop_all()

    def close(self) -> None:
        self._clients.close()

    def record(self, context: Context, call_key: str, unit: str, *digest_parts: Any) -> RemoteRecord:
        folder = context.state_dir("remote", context.run_id)
        key, digest, scope = f"{call_key}.{unit}", args_digest(*digest_parts), f"{context.routine_name}/{context.step}"
        record = RemoteRecord(folder, key, digest, context.run_id, scope=scope, logger=context.logger)
        resumed = context.resumed_from
        if resumed and resumed != context.run_id and not record.data:
            previous = RemoteRecord(context.state_dir("remote", resumed), key, digest, resumed, scope=scope,
                                    logger=context.logger)
            record.previous = previous if previous.data else None
        return record


def read_text(location: str, clients: AwsClients) -> str:
    """Text of a local file or an ``s3://`` object (SQL files), through the executor's own S3 client."""
    if location.startswith("s3://"):
        from smart_open import open as smart_open

        params = {"client": clients.client("s3")}
        with smart_open(location, "r", encoding="utf-8", transport_params=params) as handle:
            return handle.read()
    return Path(location).read_text(encoding="utf-8")
