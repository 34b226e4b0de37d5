"""Build an image from a local folder, its output copied into the task's log as it comes."""
from __future__ import annotations

import threading
from typing import Any

from orchestrator import Cancelled, Context, NotRetryable

# How often the watcher thread looks for a cancel; it also ends within this after the build does.
CANCEL_TICK = 0.1


class BuildFailed(NotRetryable):
    """The Dockerfile did not build; the message is the builder's error."""


def build_image(
    api: Any,
    context_dir: str,
    dockerfile: str,
    tag: str,
    build_args: dict[str, str],
    network: str,
    pull: bool,
    context: Context,
) -> str:
    """Build and tag; return the image id.

    ``api`` must be a client of this build's own: a cancel closes its connection from another
    thread, and the daemon stops a build (killing a running ``RUN`` step) whose client went away.
    A build that prints nothing for minutes is stopped as promptly as a chatty one.
    """
    from docker.types import CancellableStream

    # build() returns only a generator of events; closing its connection from another thread needs
    # the HTTP response under it, which the session's response hook hands over.
    responses: list[Any] = []
    api.hooks["response"].append(lambda response, *args, **kwargs: responses.append(response))
    stream = api.build(
        path=context_dir,
        dockerfile=dockerfile,
        tag=tag,
        buildargs=build_args or None,
        network_mode=network,
        pull=pull,
        # rm and forcerm: intermediate containers go even when a step fails, or every failed RUN
        # would leave one on the daemon.
        rm=True,
        forcerm=True,
        decode=True,
        labels={"orchestrator.routine": context.routine_name, "orchestrator.run": context.run_id},
    )
    # The build's POST is the last request this client made (build() sends no other first).
    events = CancellableStream(stream, responses[-1])
    finished = threading.Event()
    # A watcher thread, because the loop below blocks in a read as long as a RUN step prints
    # nothing: checking the cancel between lines would wait for the next line, maybe minutes.
    threading.Thread(target=_close_on_cancel, args=(events, context, finished), daemon=True,
                     name=f"build-cancel-{context.step}").start()
    try:
        image_id = _follow(events, context, context_dir, dockerfile, tag)
    except Exception:
        # Closing the stream under the loop makes it fail or end early: after a cancel that is
        # expected, any other error is the build's.
        if not context.cancelled:
            raise
        image_id = None
    finally:
        finished.set()
        events.close()
    if context.cancelled:
        raise Cancelled(f"build of {tag} cancelled (its connection closed: the daemon stops it)")
    # A builder that announced no id still tagged the image: the tag names it.
    return image_id or api.inspect_image(tag)["Id"]


def _close_on_cancel(events: Any, context: Context, finished: threading.Event) -> None:
    while not finished.is_set():
        if context.wait(CANCEL_TICK):
            events.close()
            return


def _follow(events: Any, context: Context, context_dir: str, dockerfile: str,
            tag: str) -> str | None:
    """Copy the build's output into the log; the image id it announced, if any."""
    image_id = None
    for event in events:
        if "error" in event:
            detail = (event.get("errorDetail") or {}).get("message") or event["error"]
            # A failed build arrives as an event in a 200 answer, not as an HTTP error.
            raise BuildFailed(f"building {tag} from {context_dir}/{dockerfile} failed: "
                              f"{detail.strip()}")
        text = str(event.get("stream") or event.get("status") or "").rstrip()
        if text:
            context.logger.info("build: %s", text)
        image_id = (event.get("aux") or {}).get("ID") or image_id
    return image_id
