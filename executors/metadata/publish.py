"""POST a run's metadata to a platform API: retries with backoff, jitter and Retry-After,
an idempotency key per page, pages under a size limit, the bearer token never shown.

Standard library only (urllib): one small JSON POST does not justify an HTTP client dependency.
"""
from __future__ import annotations

import email.utils
import json
import random
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable

# Answers that may pass: the server's own timeout, "too early", rate limiting and the transient
# 5xx. 501 and 505 will not change on a retry, and any other 4xx is the request's fault.
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class PublishError(Exception):
    """The API refused or kept failing; the message names the URL and the last reply, no token."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Publisher:

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        page_bytes: int = 1_000_000,
        wait: Callable[[float], bool] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.url, self.token, self.timeout = url, token, timeout
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self.page_bytes = page_bytes
        self.wait = wait or _sleep
        self.log = log or (lambda message: None)
        self.attempts = 0  # every request of every page: the task's metric
        self._try_number = 0  # of the page being posted: what the backoff grows with

    def publish(self, document: dict[str, Any], key: str) -> int:
        """Send ``document`` (lists of records by kind) in pages; return the number of pages."""
        pages = paginate(document, self.page_bytes)
        for number, page in enumerate(pages, 1):
            # Every page carries the document's scalar fields (run id, source) and its place (page,
            # pages), so the API can file each page on its own.
            body = {**{k: v for k, v in document.items() if not isinstance(v, list)},
                    "page": number, "pages": len(pages), **page}
            # One key per page, the page count in it: a retried page is the same request to the API,
            # and a rerun split into another number of pages gets keys of its own.
            self.post(json.dumps(body, default=str).encode(), f"{key}:{number}/{len(pages)}")
        return len(pages)

    def post(self, body: bytes, key: str) -> None:
        for attempt in range(1, self.max_attempts + 1):
            self.attempts += 1
            self._try_number = attempt
            delay, reason = self._try(body, key)
            if delay is None:
                return
            if attempt == self.max_attempts:
                raise PublishError(
                    f"publish to {self.url} failed after {attempt} attempts: {reason}"
                )
            pause = min(delay, self.max_delay)
            self.log(
                f"publish to {self.url}: {reason}; "
                f"retry {attempt + 1}/{self.max_attempts} in {pause:.1f}s"
            )
            # The task's cancellable wait: a cancel during a backoff ends the publish at once.
            if self.wait(pause):
                raise PublishError(f"publish to {self.url} cancelled", retryable=False)

    def _try(self, body: bytes, key: str) -> tuple[float | None, str]:
        """(None, "") on success, else (seconds to wait, why)."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                reply.read()
            return None, ""
        except urllib.error.HTTPError as exc:
            # The first line of the error body, at most 300 bytes, with the token masked: an API
            # may echo the request's headers into its error page.
            detail = self._masked(exc.read(300).decode(errors="replace").strip().splitlines()[:1])
            reason = f"HTTP {exc.code}" + (f" ({detail})" if detail else "")
            if exc.code not in RETRY_STATUS:
                raise PublishError(
                    f"publish to {self.url} refused: {reason}", retryable=False
                ) from None
            # The server's Retry-After wins over our backoff (post caps it at max_delay).
            after = retry_after(exc.headers.get("Retry-After"))
            return (after if after is not None else self._backoff()), reason
        # Before OSError, which TimeoutError is a kind of: a slow reply is said as such, not as a
        # failed connection.
        except (socket.timeout, TimeoutError):
            return self._backoff(), f"no reply within {self.timeout:g}s"
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            return self._backoff(), f"cannot connect ({getattr(exc, 'reason', exc)})"

    def _backoff(self) -> float:
        """Exponential per page, with equal jitter (half the ceiling, plus up to half again): many
        publishers retrying at once do not arrive together, and none comes straight back."""
        # Per page, not self.attempts: a page that fails once after earlier pages needed retries
        # waits the first delay, not one grown by the earlier pages' failures.
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(self._try_number - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    def _masked(self, lines: list[str]) -> str:
        text = lines[0] if lines else ""
        return text.replace(self.token, "****") if self.token else text


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    # A date already past (clocks differ) means: retry now.
    return max(when.timestamp() - time.time(), 0.0)


def paginate(document: dict[str, Any], limit: int) -> list[dict[str, list[Any]]]:
    """The document's record lists packed greedily into pages of at most ``limit`` bytes of JSON
    (a single record larger than the limit gets a page of its own)."""
    pages: list[dict[str, list[Any]]] = [{}]
    size = 0
    for kind, records in document.items():
        if not isinstance(records, list):
            continue
        for record in records:
            # +2: the ", " json.dumps writes between list items. The limit counts the records; the
            # few fields every page repeats come on top.
            length = len(json.dumps(record, default=str)) + 2
            # Never a new page while the current one is empty: a record over the limit takes a page
            # of its own instead of leaving an empty page before it.
            if size + length > limit and any(pages[-1].values()):
                pages.append({})
                size = 0
            pages[-1].setdefault(kind, []).append(record)
            size += length
    return pages


def _sleep(seconds: float) -> bool:
    """The default wait: never interrupted (a task passes its context's cancellable wait)."""
    time.sleep(seconds)
    return False
