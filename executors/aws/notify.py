"""SNS notifications for a routine's ``notify:`` block: a plugin, so boto3 stays out of the core.

boto3 is imported only when a message is actually sent. The topic's region is read from its ARN.
"""
from __future__ import annotations

import json
from typing import Any

from orchestrator import hookimpl


def send_sns(target: Any, message: Any) -> None:
    """Publish ``message`` to ``target.address`` (a topic ARN); one try within ``target.timeout``
    (the notifier does the retrying)."""
    import boto3
    from botocore.config import Config

    # arn:aws:sns:REGION:ACCOUNT:TOPIC. Publish must go to the topic's own region, whatever the
    # environment's default region is.
    region = target.address.split(":")[3] or None
    config = Config(connect_timeout=target.timeout, read_timeout=target.timeout,
                    # One request: the notifier's own retry loop (with its delays) owns retrying,
                    # and botocore's retries on top would multiply the attempts and stretch the
                    # timeout.
                    retries={"total_max_attempts": 1, "mode": "standard"})
    client = boto3.client("sns", region_name=region, config=config)
    try:
        client.publish(
            TopicArn=target.address,
            # SNS refuses the whole publish, not just the subject, when Subject passes its length
            # limit (around 100 characters): a long routine name is cut rather than the alert lost.
            Subject=f"orchestrator: {message.routine} {message.event}"[:100],
            Message=json.dumps(message.payload(), default=str),
        )
    finally:
        # A fresh client per message (notifications are rare): close its connection pool rather than
        # leak one per alert in a long-lived process.
        client.close()


@hookimpl
def register_notifiers() -> dict[str, Any]:
    return {"sns": send_sns}
