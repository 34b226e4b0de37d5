"""Build an image from a local folder, its output copied into the task's log as it comes."""
from __future__ import annotations

from typing import Any

from orchestrator import Cancelled, Context, NotRetryable


class BuildFailed(NotRetryable):
    """The Dockerfile did not build; the message is the builder's error."""


def build_image(api: Any, context_dir: str, dockerfile: str, tag: str, build_args: dict[str, str], network: str,
                pull: bool, context: Context) -> str:
    """Build and tag; return the image id. A cancelled run stops reading (and so the build) at the next line."""
    stream = api.build(path=context_dir, dockerfile=dockerfile, tag=tag, buildargs=build_args or None,
                       network_mode=network, pull=pull, rm=True, forcerm=True, decode=True,
                       labels={"orchestrator.routine": context.routine_name, "orchestrator.run": context.run_id})
    image_id = None
    try:
        for event in stream:
            if context.cancelled:
                raise Cancelled(f"build of {tag} cancelled")
            if "error" in event:
                detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                raise BuildFailed(f"building {tag} from {context_dir}/{dockerfile} failed: {detail.strip()}")
            text = str(event.get("stream") or event.get("status") or "").rstrip()
            if text:
                context.logger.info("build: %s", text)
            image_id = (event.get("aux") or {}).get("ID") or image_id
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return image_id or api.inspect_image(tag)["Id"]
