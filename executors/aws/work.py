"""The lifecycle of one piece of remote work: submit or re-attach, wait, stop, and map its end."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable

from orchestrator.events import CANCELLED, SUCCEEDED
from orchestrator.executor import Cancelled, Context, NotRetryable

from .clients import error_code, transient
from .inflight import InFlight, RemoteOps
from .outcomes import NOT_FOUND_CODES, RemoteCancelled, RemoteJobError, outcome
from .polling import Backoff, wait_for
from .record import RemoteRecord, known_ids

# Short on purpose: a stop often runs against a clock (SIGTERM's grace period, the Lambda's
# remaining time). The stop request is what matters; the confirmation only fills the record.
STOP_CONFIRM_SECONDS = 6.0
TRANSIENT_PATIENCE_SECONDS = 900.0
"""Without a deadline, status calls failing transiently this long in a row end the wait (the work
is stopped)."""
ORPHAN_CLOCK_SKEW = 60.0
"""An orphan's submission time may read this much before our token save (clocks differ)."""
ORPHAN_SUBMIT_WINDOW = 600.0
"""...and this much after it: a submit call with all its retries ends well within it."""


class StopRemote(Exception):
    """Raised from an ``on_poll`` hook: stop the remote work, then raise ``error`` (e.g. a cost
    guard)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class RefusedEarlier(NotRetryable):
    """An earlier attempt stopped this work for a reason a retry would only repeat (e.g. a cost
    guard)."""


@dataclasses.dataclass
class RemoteResult:
    """The final description of remote work, and whether we re-attached instead of submitting."""

    remote_id: str
    description: dict[str, Any]
    raw_state: str
    reattached: bool


FindLive = Callable[[str], "str | None"]
"""``(token) -> id``: live or succeeded work an earlier attempt started with ``token``; or None."""

FindOrphan = Callable[[str, float, frozenset[str]], "str | None"]
"""``(token, submitted_at, known_ids) -> id``: work submitted with ``token`` at about
``submitted_at`` (epoch seconds) whose id was never recorded, not one of ``known_ids``; or None."""


class RemoteWork:
    """One piece of remote work of one task call, from submission (or re-attachment) to its end.

    It owns what every step of that needs: how to describe and stop this kind of work (``ops``),
    what the call remembers of it across attempts and resumes (``record``), the task's
    ``context`` (logger, cancellation) and the executor's ``inflight`` registry, through which
    ``Executor.cancel()`` stops it from another thread.
    """

    def __init__(self, ops: RemoteOps, record: RemoteRecord, context: Context,
                 inflight: InFlight) -> None:
        self.ops, self.record, self.context, self.inflight = ops, record, context, inflight
        self.label = f"{ops.engine} {ops.what}"

    def run(self, submit: Callable[[str], str], *, find_live: FindLive | None = None,
            find_orphan: FindOrphan | None = None,
            on_poll: Callable[[dict[str, Any]], None] | None = None,
            deadline: float | None = None) -> RemoteResult:
        """Submit (or re-attach to) the work, wait for it, and map its end to ours.

        ``submit(token)`` starts the work and returns its id; ``find_live(token)`` may find work a
        previous attempt started but could not record (Glue has no idempotency token).

        A token saved without an id means a submission whose answer was lost (a crash or a lost
        reply between the two saves, here or in the run this one resumes). That token is
        submitted again, so an engine that honours it (Athena's ClientRequestToken, the Redshift
        Data API's ClientToken) returns the same work instead of starting it twice. Before that,
        ``find_orphan`` (best effort) looks the work up and adopts it: for engines or emulators
        that ignore the token, and for tokens the engine has forgotten.
        Raises :class:`RemoteJobError` on failure and :class:`RemoteCancelled` when it was
        stopped. Once submitted, the work is never left running unwatched: if waiting fails for
        any reason other than transient status errors (which are waited out), it is stopped
        before the error is raised.
        """
        record, ops = self.record, self.ops
        # Before anything remote: a call cancelled while it waited for its turn submits nothing.
        self.context.check_cancelled()
        # The refusal (a cost guard, say) would only be repeated after paying for the same work
        # again.
        if record.data.get("refused"):
            raise RefusedEarlier(f"{self.label} {record.remote_id or '?'} was stopped by an "
                                 f"earlier attempt: {record.data['refused']}")
        remote_id, reattached, description = self._reattach(find_live, find_orphan)
        # Finished work found on re-attachment is taken as it is: nothing to watch or to stop.
        if description is not None and outcome(ops.engine, ops.state_of(description)) == SUCCEEDED:
            return RemoteResult(remote_id or "", description, ops.state_of(description) or "", True)
        if remote_id is None:
            remote_id = self._submit(submit)
        description = self._watch(remote_id, on_poll, deadline)
        return self._finish(remote_id, description, reattached)

    def _submit(self, submit: Callable[[str], str]) -> str:
        """The token is saved before the call: a reply lost with it is found again by the token."""
        token = self.record.data.get("token") or self.record.token()
        # Wall-clock time, not monotonic: an orphan search compares it with the engine's submission
        # time, possibly in another process after a crash.
        self.record.save(token=token, id=None, token_saved=time.time())
        remote_id = submit(token)
        # Saved before the first poll: from here on a crash or retry re-attaches instead of
        # submitting.
        self.record.save(id=remote_id, state="SUBMITTED", submitted=time.time())
        self.context.logger.info("%s %s submitted", self.label, remote_id)
        return remote_id

    def _watch(self, remote_id: str, on_poll: Callable[[dict[str, Any]], None] | None,
               deadline: float | None) -> dict[str, Any]:
        """Wait while ``cancel()`` can see the work; whatever ends the wait early stops it."""
        self.inflight.add(self.ops, remote_id)
        try:
            description = self._wait(remote_id, on_poll, deadline)
        except Cancelled:
            # from None: the Cancelled was only the signal; the RemoteCancelled says what was
            # stopped.
            raise self._stop_and_confirm(remote_id) from None
        except StopRemote as stop:
            self._stop_and_confirm(remote_id)
            # A refusal a retry would repeat (the cost guard) is remembered, so the next attempt
            # fails at once. Anything else gets a fresh generation: the retry must submit new work,
            # not re-attach to the work just stopped.
            if getattr(stop.error, "retryable", True) is False:
                self.record.save(refused=str(stop.error))
            else:
                self.record.next_generation()
            raise stop.error from None
        except Exception as exc:
            self.context.logger.warning(
                "%s %s: waiting failed (%s: %s); stopping it so it does not run unwatched",
                self.label, remote_id, type(exc).__name__, exc)
            self._stop_and_confirm(remote_id)
            raise
        finally:
            self.inflight.discard(self.ops, remote_id)
        # cancel() stopped the work while a status call was on its way: the call saw it ended
        # before the wait saw the cancel, and an ECS task stopped that way reports exit code 0.
        # It ended because it was stopped, so it is cancelled, not succeeded.
        if self.inflight.was_stopped(self.ops, remote_id):
            raise self._stop_and_confirm(remote_id)
        return description

    def _reattach(self, find_live: FindLive | None, find_orphan: FindOrphan | None
                  ) -> tuple[str | None, bool, dict[str, Any] | None]:
        """Work this call already has: in its record, in the resumed run's record, or found by
        token."""
        record, logger = self.record, self.context.logger
        remote_id, source = record.remote_id, "an earlier attempt"
        # The resumed run's record counts only while this run has none of its own; once we saved
        # anything, ours is newer.
        previous = record.previous if not record.data else None
        if remote_id is None and previous is not None:
            remote_id, source = _previous_id(previous, find_live), f"resumed run {previous.run_id}"
            if remote_id is None and previous.data.get("token"):
                self._inherit_token(previous)
        # Only a token saved without an id (a reply lost to a crash or the network) can have an
        # orphan.
        if remote_id is None and record.data.get("token") and find_orphan is not None:
            remote_id = self._find_orphan(previous, find_orphan)
            source = "a submission never recorded"
        # Glue and ECS look for work started under this token (a job argument, ECS's startedBy);
        # Glue has no idempotency token at all.
        if remote_id is None and find_live is not None:
            remote_id, source = self._find_live(find_live), "an earlier attempt (found by token)"
        if remote_id is None:
            return None, False, None
        try:
            description = self.ops.describe(remote_id)
        except Exception as exc:
            # Only "no such id" means submit again: engines forget old work (Redshift Data API
            # statements after 24 hours, Athena's history after 45 days). Any other error fails the
            # attempt, since we cannot tell whether the work is still running.
            if error_code(exc) not in NOT_FOUND_CODES.get(self.ops.engine, frozenset()):
                raise
            logger.warning("%s %s from %s does not exist (%s); submitting anew",
                           self.label, remote_id, source, exc)
            # Our own record named the vanished id: drop it and its token so the submission is new
            # work.
            if record.remote_id is not None:
                record.next_generation()
            return None, False, None
        state = self.ops.state_of(description)
        ours = outcome(self.ops.engine, state)
        if ours is None or ours == SUCCEEDED:
            verb = ("already succeeded; not submitting again" if ours
                    else f"still {state}; re-attaching")
            logger.info("%s %s from %s %s", self.label, remote_id, source, verb)
            extra = ({"inherited_from": previous.run_id}
                     if previous is not None and record.remote_id is None else {})
            record.save(id=remote_id, **extra)
            return remote_id, True, description
        # Failed or cancelled before: a fresh generation, so the old token cannot hand that
        # execution back.
        logger.info("%s %s from %s ended %s; submitting anew", self.label, remote_id, source, state)
        if record.remote_id is not None or record.data.get("token"):
            record.next_generation()
        return None, False, None

    def _inherit_token(self, previous: RemoteRecord) -> None:
        """The resumed run saved a token and died before it saved the id: submit with that token."""
        token = previous.data["token"]
        self.context.logger.info("%s: resumed run %s submitted it (token %s) but never recorded "
                                 "its id; using the same token", self.label, previous.run_id, token)
        saved = previous.data.get("token_saved") or previous.data.get("updated") or time.time()
        self.record.save(id=None, token=token, token_saved=saved, inherited_from=previous.run_id)

    def _find_orphan(self, previous: RemoteRecord | None, find_orphan: FindOrphan) -> str | None:
        """Best effort: a failed look-up is logged; the saved token, sent next, is the safeguard."""
        record, logger = self.record, self.context.logger
        token = record.data["token"]
        saved = record.data.get("token_saved") or record.data.get("updated") or time.time()
        try:
            found = find_orphan(token, float(saved), known_ids(record, previous))
        except Exception as exc:
            logger.warning("%s: cannot look for work submitted with token %s (%s: %s); "
                           "submitting with the same token", self.label, token,
                           type(exc).__name__, exc)
            return None
        if found:
            logger.warning("%s %s was submitted with token %s but its id was never "
                           "recorded; adopting it", self.label, found, token)
        return found

    def _find_live(self, find_live: FindLive) -> str | None:
        """Look for work started with this record's token before (re)submitting.

        With a remembered token a failed look-up fails the attempt (as a lost reply must not start
        a second run). Without one (first submission, or a lost/unreadable record) only a
        transient failure does; any other is logged and the work is submitted.
        """
        token = self.record.data.get("token")
        try:
            return find_live(token or self.record.token())
        except Exception as exc:
            if token or transient(exc):
                raise
            self.context.logger.warning("%s: cannot look for a run started earlier (%s); "
                                        "submitting", self.label, exc)
            return None

    def _wait(self, remote_id: str, on_poll: Callable[[dict[str, Any]], None] | None,
              deadline: float | None) -> dict[str, Any]:
        """Poll until the work ends; a transient status failure (throttling, 5xx, no answer)
        means "not yet"."""
        ops = self.ops
        # A one-element list as a cell poll() can rebind: when the current run of failures began.
        failing_since: list[float] = []

        def poll() -> dict[str, Any] | None:
            try:
                description = ops.describe(remote_id)
            except Exception as exc:
                if not transient(exc):
                    raise
                now = time.monotonic()
                failing_since[:] = failing_since or [now]
                # A deadline bounds the wait anyway; without one, a status API that never answers
                # again must not hold the task forever.
                if deadline is None and now - failing_since[0] > TRANSIENT_PATIENCE_SECONDS:
                    raise
                self.context.logger.warning("%s %s: status not available (%s); still waiting",
                                            self.label, remote_id, exc)
                return None
            failing_since.clear()
            # Only real answers reach the hook (cost guard, log follower); a failed poll has none.
            if on_poll is not None:
                on_poll(description)
            return description

        def ended(description: dict[str, Any] | None) -> bool:
            if description is None:
                return False
            return outcome(ops.engine, ops.state_of(description)) is not None

        result = wait_for(poll, ended, self.context, deadline=deadline, long_poll=ops.long_poll)
        # ended() is False for None, so wait_for never returns it; this is for the type checker.
        assert result is not None
        return result

    def _stop_and_confirm(self, remote_id: str) -> RemoteCancelled:
        """Stop the work and wait briefly until the engine says it stopped; the record keeps the
        final state."""
        ops = self.ops
        state: str | None = None
        try:
            self.inflight.stop(ops, remote_id)
            # No context here: the run is usually being cancelled already, and its flag would end
            # this wait before the first poll.
            description = wait_for(lambda: ops.describe(remote_id),
                                   lambda d: outcome(ops.engine, ops.state_of(d)) is not None, None,
                                   deadline=time.monotonic() + STOP_CONFIRM_SECONDS,
                                   backoff=Backoff(first=0.2, ratio=0.5, cap=1.0))
            state = ops.state_of(description)
        except Exception as exc:
            # Still reported as cancelled: raising here would hide why the wait ended, and the
            # record without a state makes a resume describe the work again before trusting it.
            self.context.logger.warning("%s %s: stop not confirmed: %s", self.label, remote_id, exc)
        self.record.save(state=state)
        self.context.logger.info("%s %s stopped (remote state %s)", self.label, remote_id, state)
        return RemoteCancelled(ops.engine, ops.what, remote_id, state)

    def _finish(self, remote_id: str, description: dict[str, Any],
                reattached: bool) -> RemoteResult:
        ops = self.ops
        state = ops.state_of(description) or ""
        self.record.save(state=state)
        ours = outcome(ops.engine, state)
        if ours == SUCCEEDED:
            return RemoteResult(remote_id, description, state, reattached)
        if ours == CANCELLED:
            raise RemoteCancelled(ops.engine, ops.what, remote_id, state)
        raise RemoteJobError(ops.engine, ops.what, remote_id, state, ops.reason_of(description))


def _previous_id(previous: RemoteRecord, find_live: FindLive | None) -> str | None:
    """The id the resumed run recorded for this unit (or, for Glue, found by the token it used)."""
    if previous.remote_id is not None:
        return previous.remote_id
    token = previous.data.get("token")
    return find_live(token) if token and find_live is not None else None


def closest_submission(candidates: Iterable[tuple[str, float]], since: float) -> str | None:
    """The id submitted nearest ``since`` within [since - clock skew, since + submit window]."""
    fitting = [(abs(at - since), remote_id) for remote_id, at in candidates
               if since - ORPHAN_CLOCK_SKEW <= at <= since + ORPHAN_SUBMIT_WINDOW]
    return min(fitting)[1] if fitting else None
