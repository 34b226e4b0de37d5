"""The senders the standard library can do: a webhook (Slack-compatible JSON) and SMTP email.

SNS needs boto3, so it comes from a plugin (``register_notifiers``), as any other kind could.
"""
from __future__ import annotations

import json
import smtplib
import urllib.request
from email.message import EmailMessage
from typing import Any

from .deliver import Message, Sender
from .targets import NotifyTarget


def webhook(target: NotifyTarget, message: Message) -> None:
    # default=str: details may hold values JSON has no type for (a datetime, a Decimal from a
    # result).
    body = json.dumps(message.payload(), default=str).encode()
    request = urllib.request.Request(target.address, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=target.timeout) as response:  # raises on 4xx/5xx
        response.read()


def email(target: NotifyTarget, message: Message) -> None:
    settings: dict[str, Any] = target.address
    mail = EmailMessage()
    mail["Subject"] = f"[orchestrator] {message.routine}: {message.event}"
    mail["From"] = settings.get("from") or "orchestrator@localhost"
    mail["To"] = ", ".join(settings["to"])
    mail.set_content(message.text + "\n\n" + json.dumps(message.payload(), indent=2, default=str))
    with smtplib.SMTP(settings["host"], settings.get("port", 25), timeout=target.timeout) as smtp:
        # Upgrade before login, so the password never crosses the network in clear.
        if settings.get("starttls"):
            smtp.starttls()
        if settings.get("username"):
            smtp.login(settings["username"], settings.get("password", ""))
        smtp.send_message(mail)


BUILT_IN: dict[str, Sender] = {"webhook": webhook, "email": email}


def all_senders(registry: Any = None) -> dict[str, Sender]:
    """Built-in senders plus those plugins register (``sns`` from the AWS plugin)."""
    from ..registry import Registry

    senders = dict(BUILT_IN)
    # Plugins update after the built-ins: a plugin's sender of the same kind replaces ours.
    for found in (registry or Registry()).pm.hook.register_notifiers():
        senders.update(found or {})
    return senders
