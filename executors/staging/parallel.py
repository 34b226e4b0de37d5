"""Run one function over many items, concurrently when the work waits on the network."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_all(fn: Callable[[T], R], items: Iterable[T], workers: int,
            check: Callable[[], None]) -> list[tuple[T, R | Exception]]:
    """Each item's result or exception, in input order.

    ``check`` runs before each item and may raise (cancellation): that exception stops the
    remaining items and is re-raised once the items already running have finished.
    """
    def guarded(item: T) -> R | Exception:
        check()
        try:
            return fn(item)
        except Exception as exc:  # one bad file must not stop the others
            return exc

    # A list: the results pair each item with its outcome, and a batch is at most ``BATCH`` items.
    items = list(items)
    # No pool locally: the work is CPU and metadata calls on one filesystem, where threads only
    # contend for the GIL.
    if workers <= 1 or len(items) <= 1:
        return [(item, guarded(item)) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="staging") as pool:
        futures = [pool.submit(guarded, item) for item in items]
        try:
            return [(item, future.result()) for item, future in zip(items, futures)]
        except BaseException:
            # Items not started are dropped, and the running ones are waited for: none may go on
            # writing after the task has failed or been cancelled.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
