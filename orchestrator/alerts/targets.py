"""A routine's ``notify:`` block, checked and typed: where to send,
on which events, how hard to try."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

KINDS = ("webhook", "sns", "email")
EVENTS = ("failure", "success", "late")


@dataclasses.dataclass(frozen=True)
class NotifyTarget:
    kind: str  # webhook, sns or email
    address: Any  # the URL, the topic ARN or the email settings
    when: tuple[str, ...]
    # Defaults as documented in the README: 3 attempts, 1 s doubling, 10 s per attempt. Small,
    # since the exit of a finished run waits for them.
    retries: int = 2
    retry_delay: float = 1.0
    timeout: float = 10.0

    def secrets(self) -> set[str]:
        """A webhook URL carries its token; an SMTP password is one: both are masked everywhere."""
        if self.kind == "webhook":
            # The whole URL: Slack-style webhooks carry their credential in the path.
            return {self.address}
        if self.kind == "email" and self.address.get("password"):
            return {self.address["password"]}
        return set()

    @property
    def label(self) -> str:
        """How records name the target without revealing it."""
        if self.kind == "sns":
            return f"sns {self.address}"
        if self.kind == "email":
            return f"email to {', '.join(self.address['to'])}"
        # Never the URL itself, which is the secret.
        return "webhook"


def notify_targets(raw: Any, report: Callable[[str, str], None]) -> list[NotifyTarget]:
    """The targets of a ``notify:`` list the schema already accepted;
    each needs exactly one kind."""
    targets = []
    for index, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, dict):
            continue
        kinds = [k for k in KINDS if k in entry]
        # A target with two kinds would be ambiguous about what its retries and when apply to; one
        # list entry per target keeps each outcome about one destination.
        if len(kinds) != 1:
            found = " and ".join(kinds) or "none"
            report(
                f"notify[{index}]",
                f"give exactly one target of webhook, sns or email (found {found}); "
                "use one list entry per target",
            )
            continue
        targets.append(
            NotifyTarget(
                kinds[0],
                entry[kinds[0]],
                tuple(entry.get("when") or ()),
                int(entry.get("retries", 2)),
                float(entry.get("retry_delay", 1.0)),
                float(entry.get("timeout", 10.0)),
            )
        )
    return targets
