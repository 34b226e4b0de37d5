"""How remote work ends: each engine's terminal states mapped to ours, and the errors saying so."""
from __future__ import annotations

from orchestrator.events import CANCELLED, FAILED, SUCCEEDED
from orchestrator.executor import Cancelled

TERMINAL_STATES: dict[str, dict[str, str]] = {
    "athena": {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "CANCELLED": CANCELLED},
    "redshift": {"FINISHED": SUCCEEDED, "FAILED": FAILED, "ABORTED": CANCELLED},
    # TIMEOUT is Glue's own run timeout (the job's Timeout, in minutes), not ours: the work
    # failed, nobody cancelled it.
    "glue": {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "ERROR": FAILED, "TIMEOUT": FAILED,
             "EXPIRED": FAILED, "STOPPED": CANCELLED},
    # Keyed by the crawl's LastCrawl.Status, which only means something once the crawler is READY
    # again; glue.py maps a crawler still RUNNING or STOPPING to no state.
    "glue-crawler": {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "CANCELLED": CANCELLED},
    # ECS has one terminal lastStatus (STOPPED) however the task ended; ecs.task_state derives
    # these pseudo-states from the stop code and the container's exit code.
    "ecs": {"EXITED_ZERO": SUCCEEDED, "EXITED_NONZERO": FAILED, "STOPPED_BY_USER": CANCELLED},
}
"""Each engine's terminal states mapped to ours; any state not listed is still running.

Athena: QUEUED/RUNNING live. Redshift Data API: SUBMITTED/PICKED/STARTED live. Glue job runs:
STARTING/RUNNING/STOPPING/WAITING live. Glue crawls (``LastCrawl.Status`` once the crawler is
READY). The raw state is always kept beside ours in the task's metrics.
"""


NOT_FOUND_CODES: dict[str, frozenset[str]] = {
    # Athena has no not-found code: an unknown execution id is an InvalidRequestException (moto
    # answers an HTTP 500 instead, which counts as transient).
    "athena": frozenset({"InvalidRequestException"}),
    "redshift": frozenset({"ResourceNotFoundException"}),
    "glue": frozenset({"EntityNotFoundException"}),
    "ecs": frozenset({"TaskNotFound", "ClusterNotFoundException"}),
}
"""The error codes with which each engine's status call says a remote id does not exist (any
more)."""


def outcome(engine: str, raw_state: str | None) -> str | None:
    """Our status for an engine's raw state, or None while the remote work is still going."""
    return TERMINAL_STATES[engine].get(raw_state or "")


class RemoteJobError(RuntimeError):
    """Remote work ended badly; the message names the work, its remote id and the engine's
    reason."""

    def __init__(self, engine: str, what: str, remote_id: str, state: str,
                 reason: str | None = None) -> None:
        self.engine, self.what, self.remote_id = engine, what, remote_id
        self.state, self.reason = state, reason
        text = f"{engine} {what} {remote_id} ended {state}"
        super().__init__(f"{text}: {reason}" if reason else text)


class RemoteCancelled(Cancelled):
    """The remote work was stopped (by us on cancel/timeout, or by someone else)."""

    def __init__(self, engine: str, what: str, remote_id: str, state: str | None) -> None:
        self.engine, self.what, self.remote_id, self.state = engine, what, remote_id, state
        super().__init__(f"{engine} {what} {remote_id} cancelled "
                         f"(remote state {state or 'unknown'})")
