"""``wait_for_files``: files that land later are waited for, a file still growing is not taken,
the timeout says what was there, a cancel ends the wait at once; local folders and S3 prefixes."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from executors.aws.polling import Backoff
from executors.staging.executor import StagingExecutor
from executors.staging.sensor import FilesNotReady, wait_for_files
from executors.staging.storage import LocalStore
from orchestrator.executor import Cancelled
from staging_helpers import CSV, context, staging


def later(action: Callable[[], None], delay: float = 0.3) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def grow(path: Path, stop: threading.Event, chunks: int = 60) -> threading.Thread:
    """Append to ``path`` every 20 ms, ``chunks`` times (about a second and more), unless stopped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CSV)

    def run() -> None:
        for _ in range(chunks):
            if stop.wait(0.02):
                return
            with path.open("ab") as f:
                f.write(b"Carol,51,baker\n")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_waits_for_files_landing_later_in_a_folder_made_later(tmp_path: Path) -> None:
    landing = tmp_path / "landing"  # does not exist yet: the sender makes it

    def arrive(path: Path, data: bytes) -> None:
        """Whole at once (written aside, then renamed): this test is about arrival, not growth
        (stable_for is 0 here, so a file caught half-written would count with its partial size)."""
        aside = path.with_name(path.name + ".part")
        aside.write_bytes(data)
        aside.rename(path)

    def deliver() -> None:
        (landing / "sub").mkdir(parents=True)
        arrive(landing / "a.csv", CSV)
        arrive(landing / "notes.txt", b"not a csv")
        time.sleep(0.3)
        arrive(landing / "sub" / "b.csv", CSV)

    sender = later(deliver)
    metrics = staging(tmp_path, pattern="*.csv").wait_for_files(context(tmp_path, "wait_for_files"),
                                                                min_files=2, timeout=60)
    sender.join()
    assert metrics.total_rows == 2
    assert metrics.execution_metadata["files"] == ["a.csv", "sub/b.csv"]
    assert metrics.execution_metadata["bytes"] == 2 * len(CSV)
    assert metrics.execution_metadata["polls"] > 1
    assert sorted(p.name for p in landing.rglob("*") if p.is_file()) == ["a.csv", "b.csv", "notes.txt"]


def test_a_file_still_growing_is_taken_only_once_unchanged_for_stable_for(tmp_path: Path) -> None:
    big = tmp_path / "landing" / "big.csv"
    writer = grow(big, threading.Event())
    metrics = staging(tmp_path).wait_for_files(context(tmp_path, "wait_for_files"),
                                               timeout=60, stable_for=1.0)
    assert not writer.is_alive()  # the writer stopped before the file was taken
    assert metrics.execution_metadata["files"] == ["big.csv"]
    assert metrics.execution_metadata["bytes"] == big.stat().st_size


def test_without_stable_for_a_growing_file_is_taken_as_it_is(tmp_path: Path) -> None:
    """The control for the test above: the writer is still going when the file is taken."""
    stop = threading.Event()
    big = tmp_path / "landing" / "big.csv"
    writer = grow(big, stop, chunks=1000)
    try:
        metrics = staging(tmp_path).wait_for_files(context(tmp_path, "wait_for_files"), timeout=60)
        assert writer.is_alive()
        time.sleep(0.3)  # the writer goes on appending to the file already taken
    finally:
        stop.set()
        writer.join()
    assert metrics.execution_metadata["bytes"] < big.stat().st_size


def test_timeout_fails_saying_how_many_matched_and_how_many_were_stable(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_bytes(CSV)
    (landing / "b.txt").write_bytes(CSV)
    stop = threading.Event()
    writer = grow(landing / "c.csv", stop, chunks=1000)
    try:
        with pytest.raises(FilesNotReady) as failed:
            staging(tmp_path, pattern="*.csv").wait_for_files(
                context(tmp_path, "wait_for_files"), min_files=2, timeout=0.8, stable_for=0.5)
    finally:
        stop.set()
        writer.join()
    message = str(failed.value)
    assert "waiting for 2 file(s) matching '*.csv'" in message and str(landing) in message
    assert "2 matched, 1 stable" in message  # c.csv kept growing; b.txt does not match


def test_cancel_ends_the_wait_at_once_whatever_the_poll_interval(tmp_path: Path) -> None:
    """A poll interval of 30 s: the wait must still end as soon as the run is cancelled."""
    event = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            wait_for_files(LocalStore(str(tmp_path)), "*", min_files=1, timeout=600, stable_for=0,
                           context=context(tmp_path, "wait_for_files", event),
                           check_cancelled=lambda: None, backoff=Backoff(first=30, cap=30))
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.3)
    event.set()
    waiter.join(10)  # a generous bound, far below the 30 s poll interval
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)


def test_executor_cancel_stops_the_next_poll(tmp_path: Path) -> None:
    executor = staging(tmp_path)
    executor.cancel()  # from an earlier attempt: forgotten when the task starts again
    (tmp_path / "landing").mkdir()
    later(lambda: (tmp_path / "landing" / "a.csv").write_bytes(CSV))
    assert executor.wait_for_files(context(tmp_path, "wait_for_files"), timeout=60).total_rows == 1
    event = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            executor.wait_for_files(context(tmp_path, "wait_for_files", event), min_files=5, timeout=600)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.3)
    executor.cancel()  # as the engine does: the executor, then the task's event
    event.set()
    waiter.join(10)
    assert not waiter.is_alive() and isinstance(outcome[0], Cancelled)


def test_s3_prefix(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="land")
    s3.put_object(Bucket="land", Key="elsewhere/x.csv", Body=CSV)
    s3.put_object(Bucket="land", Key="in/a.csv", Body=CSV)

    def deliver() -> None:
        s3.put_object(Bucket="land", Key="in/sub/b.csv", Body=CSV + b"more\n")
        s3.put_object(Bucket="land", Key="in/c.txt", Body=CSV)

    sender = later(deliver)
    executor = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://land/dump",
                               pattern="*.csv")
    metrics = executor.wait_for_files(context(tmp_path, "wait_for_files"), min_files=2,
                                      timeout=60, stable_for=0.3)
    sender.join()
    executor.close()
    assert metrics.execution_metadata["location"] == "s3://land/in/"
    assert metrics.execution_metadata["files"] == ["a.csv", "sub/b.csv"]
    assert metrics.execution_metadata["bytes"] == 2 * len(CSV) + len(b"more\n")


def test_s3_timeout_counts_what_matched(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="land")
    s3.put_object(Bucket="land", Key="in/a.csv", Body=CSV)
    executor = StagingExecutor(parent_directory="s3://land/in", dump_directory="s3://land/dump")
    with pytest.raises(FilesNotReady, match=r"in s3://land/in/: 1 matched, 1 stable"):
        executor.wait_for_files(context(tmp_path, "wait_for_files"), min_files=3, timeout=0.5)
    executor.close()


@pytest.mark.parametrize("args, problem", [
    ({"min_files": 0}, ("min_files", "0 is below 1")),
    ({"timeout": -1}, ("timeout", "-1 is negative")),
    ({"stable_for": -0.5}, ("stable_for", "-0.5 is negative")),
])
def test_arguments_out_of_range_are_refused_at_validation(args: dict, problem: tuple) -> None:
    assert list(StagingExecutor.validate_args("wait_for_files", args, {})) == [problem]
    assert list(StagingExecutor.validate_args("wait_for_files", {"min_files": 3}, {})) == []


def routine(tmp_path: Path, **args: object) -> dict:
    step = {"name": "stage", "executor": "staging",
            "params": {"parent_directory": str(tmp_path / "landing"),
                       "dump_directory": str(tmp_path / "dump"), "archive_or_delete": "delete"},
            "tasks": [{"task": "wait_for_files", "args": args}, "transfer", "post_staging"]}
    return {"routine_name": "sensor", "executors": [step]}


def test_cli_run_waits_then_stages_what_landed(cli: Any, write_routine: Any, tmp_path: Path) -> None:
    path = write_routine(routine(tmp_path, min_files=2, timeout=60, stable_for=0.2))
    landing = tmp_path / "landing"

    def deliver() -> None:
        landing.mkdir()
        (landing / "a.csv").write_bytes(CSV)
        (landing / "b.csv").write_bytes(CSV)

    sender = later(deliver, delay=1.0)
    proc = cli("run", str(path))
    sender.join()
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == ["a.csv", "b.csv"]
    assert list(landing.iterdir()) == []


def test_cli_bad_arguments_exit_2_and_a_timeout_fails_the_run(cli: Any, write_routine: Any,
                                                                tmp_path: Path) -> None:
    bad = cli("run", str(write_routine(routine(tmp_path, min_files=0))))
    assert bad.returncode == 2 and "min_files" in bad.stderr and "0 is below 1" in bad.stderr
    timed_out = cli("run", str(write_routine(routine(tmp_path, timeout=0.3))))
    assert timed_out.returncode not in (0, 2)
    assert "0 matched, 0 stable" in timed_out.stdout + timed_out.stderr
    assert not (tmp_path / "dump").exists()
