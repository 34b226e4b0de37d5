"""Each staging task's record of what it has in flight, so that after a crash the next run undoes
exactly what that task left, and never what a live run is doing.

Every task attempt writes its own file, ``<state dir>/journal-<run id>-<token>.jsonl``, created on
its first record. Each line is one JSON object written with one ``os.write`` on an ``O_APPEND``
descriptor, so it survives the process being killed (a torn last line is skipped)::

    {"owner": {"run_id": "…", "host": "…", "pid": 123, "pid_started": 456}}   always the first line
    {"begin": "/dump/sub/.orchestrator-partial-…"}     a temp file is about to exist there
    {"begins": ["/dump/sub/.orchestrator-partial-…", …]}   the same for many (a batch of links)
    {"begin": "s3://lake/raw/a.csv"}                   a multipart upload to that key is starting
    {"upload": "s3://lake/raw/a.csv", "id": "…"}       … and this is its upload id
    {"claims": [["/landing/.orchestrator-claim-…", "/landing/a.csv"], …]}
                                                        landing files about to be renamed, privately
    {"end": "<a begin target>"}                         done: published, removed or aborted
    {"ends": ["<a begin or claim target>", …]}          the same for many (claims: archived, deleted
                                                        or put back)

The file is removed when its task ends with nothing in flight. ``recover`` runs at the start of
every staging task, under an exclusive lock on the folder: for each journal whose owner process is
gone it hands every unfinished target to ``clean``, then deletes the journal. Journals of live
processes (a concurrent run, or an abandoned attempt of this run still finishing) are left alone,
and so are journals written on another host, whose processes cannot be checked from here.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

# Still read, so that a crash under an older version is undone after an upgrade.
LEGACY_NAME = "journal.jsonl"  # one shared journal, written before owners were recorded
# How long a journal without its owner line is taken for one being created by a live writer: far
# longer than the gap between its creation and its first write.
UNCLAIMED_SECONDS = 600


@dataclasses.dataclass(frozen=True)
class Owner:
    """The process that wrote a journal: a run id, a pid and its start time (pids get reused)."""

    run_id: str
    host: str
    pid: int
    pid_started: int | None

    @classmethod
    def current(cls, run_id: str) -> "Owner":
        from orchestrator.runs.store import process_start

        return cls(run_id, socket.gethostname(), os.getpid(), process_start(os.getpid()))

    def alive(self) -> bool:
        """Still running, as far as this host can tell: another host's process counts as alive."""
        if self.host != socket.gethostname():
            return True
        from orchestrator.runs.store import RunRecord, owns_pid

        return owns_pid(RunRecord(self.run_id, "", pid=self.pid, pid_started=self.pid_started))


@dataclasses.dataclass
class Leftover:
    """Something a journal began and never ended."""

    target: str  # a temp file, an s3:// key with a multipart upload, or a claimed landing file
    path: str | None = None  # for a claim: the landing path the file was taken from
    uploads: list[str] = dataclasses.field(default_factory=list)  # multipart upload ids, when known


class Journal:
    def __init__(self, folder: Path, run_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:64]
        self.path = folder / f"journal-{safe}-{secrets.token_hex(4)}.jsonl"
        self.owner = Owner.current(run_id)
        # S3 staging journals from 16 threads: one lock keeps each line whole and in order, and the
        # pending set consistent with what is written.
        self._lock = threading.Lock()
        self._fd: int | None = None
        # What this writer has begun and not ended: ``finish`` keeps the file when it is not empty,
        # for the next run's recovery.
        self._pending: set[str] = set()
        self._ends: list[bytes] = []  # end records not written yet (see ``end``)

    def begin(self, target: str) -> None:
        self._append({"begin": target}, add=[target])

    def begin_all(self, targets: list[str]) -> None:
        """Temp files about to exist, in one line: a batch costs one write, not one per file."""
        if targets:
            self._append({"begins": targets}, add=targets)

    def upload(self, target: str, upload_id: str) -> None:
        self._append({"upload": target, "id": upload_id})

    def claim_all(self, claims: list[tuple[str, str]]) -> None:
        """Claims of (private name, landing path), in one line."""
        if claims:
            self._append(
                {"claims": [list(claim) for claim in claims]},
                add=[private for private, _ in claims],
            )

    def end(self, target: str, lazy: bool = False) -> None:
        """``lazy``: written with the next record, not on its own, for a local temp file: an end
        lost in a crash only makes recovery remove a temp file that is gone, and a file staged
        costs one write less. Not for what others read while we live (S3 keys in flight)."""
        if not lazy:
            self._append({"end": target}, remove=[target])
            return
        with self._lock:
            self._pending.discard(target)
            self._ends.append((json.dumps({"end": target}) + "\n").encode())
            # Flushed by 64 at the latest, so that deferred ends do not pile up in memory between
            # writes.
            if len(self._ends) < 64:
                return
        self._append({"ends": []})

    def end_all(self, targets: list[str], lazy: bool = False) -> None:
        """``lazy``: as for ``end``, written with the next record."""
        if not targets:
            return
        if not lazy:
            self._append({"ends": targets}, remove=targets)
            return
        with self._lock:
            self._pending.difference_update(targets)
            self._ends.append((json.dumps({"ends": targets}) + "\n").encode())

    def finish(self) -> None:
        """Close; remove the file unless something is still in flight (then the next run's recovery
        takes care of it once this process is gone)."""
        if self._ends:
            self._append({"ends": []})
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if not self._pending:
                self.path.unlink(missing_ok=True)

    def _append(
        self, record: dict[str, Any], add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        data = (json.dumps(record) + "\n").encode()
        with self._lock:
            # One os.write of the deferred ends and the new record: a torn write loses at most the
            # last line, and an end never reaches the file before its begin.
            if self._ends:  # in the order they happened, before this record
                data = b"".join(self._ends) + data
                self._ends.clear()
            if self._fd is None:
                # O_APPEND: each write lands whole at the end, whichever thread made it; opened on
                # the first record, so a task that does nothing leaves no file.
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                if os.fstat(self._fd).st_size == 0:
                    # A write of its own, not the first record's: SIGKILL can stop a large write
                    # at any page (a batch's record is ~100 kB), and a journal left empty names
                    # no owner, so recovery would leave it alone for UNCLAIMED_SECONDS.
                    os.write(self._fd, (json.dumps({"owner": dataclasses.asdict(self.owner)})
                                        + "\n").encode())
            os.write(self._fd, data)
            self._pending.update(add)
            self._pending.difference_update(remove)


def read(path: Path) -> tuple[Owner | None, list[Leftover]]:
    """A journal's owner (None for the legacy shared journal) and its leftovers, in order."""
    owner, pending = None, {}
    for record in _records(path):
        if "owner" in record and owner is None:
            owner = _owner(record["owner"])
        elif "begin" in record:
            pending[record["begin"]] = Leftover(record["begin"])
        # Written by ``begin_all`` for a batch of links; an older version skips the line (it knows
        # only ``begin``).
        elif "begins" in record:
            for target in record["begins"]:
                pending[target] = Leftover(target)
        elif "claims" in record:
            for private, origin in record["claims"]:
                pending[private] = Leftover(private, path=origin)
        elif "upload" in record and record["upload"] in pending:
            pending[record["upload"]].uploads.append(record["id"])
        elif "end" in record:
            pending.pop(record["end"], None)
        elif "ends" in record:
            for target in record["ends"]:
                pending.pop(target, None)
    return owner, list(pending.values())


def _unclaimed(path: Path) -> bool:
    """A new journal still without its owner line: created a moment ago by a live writer (its
    first write, owner line included, is on its way), or left empty by a writer killed in between
    (then it holds nothing to undo, and goes once it is old)."""
    if path.name == LEGACY_NAME:
        return False
    try:
        return time.time() - path.stat().st_mtime < UNCLAIMED_SECONDS
    except FileNotFoundError:
        return True


def _owner(fields: Any) -> Owner | None:
    """The owner a journal names; None (a dead owner) when the line cannot be read as one."""
    try:
        return Owner(
            str(fields["run_id"]),
            str(fields["host"]),
            int(fields["pid"]),
            None if fields.get("pid_started") is None else int(fields["pid_started"]),
        )
    except (TypeError, KeyError, ValueError):
        return None


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's records, read a line at a time: a journal of a million files is read with
    the memory of one line (what is still pending is all ``read`` keeps)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line.decode("utf-8", errors="replace"))
            except ValueError:
                continue  # a line torn by a crash
            if isinstance(record, dict):
                yield record


def journals(folder: Path) -> list[Path]:
    return sorted(folder.glob("journal-*.jsonl")) + [
        p for p in [folder / LEGACY_NAME] if p.exists()
    ]


def in_flight(folder: Path) -> set[str]:
    """Targets that journals of live processes have begun and not ended."""
    found: set[str] = set()
    for path in journals(folder):
        owner, leftovers = read(path)
        if owner is not None and owner.alive():
            found.update(item.target for item in leftovers)
    return found


def recover(folder: Path, clean: Callable[[Leftover], None]) -> int:
    """Hand each leftover of every dead owner's journal to ``clean``, then delete that journal.

    A journal is deleted only after all its leftovers were cleaned: if ``clean`` fails, the journal
    stays for the next run (cleaning is idempotent). Returns the number of leftovers cleaned.
    """
    found = 0
    with open(folder / "recover.lock", "a") as lock:
        # Concurrent starts: one recovers, the other then finds nothing left to do.
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in journals(folder):
            owner, leftovers = read(path)
            # A live owner's journal is its own business (a concurrent run, or an abandoned attempt
            # still finishing); undoing its entries would remove temp files or claims it is still
            # using.
            if owner is not None and owner.alive() or owner is None and _unclaimed(path):
                continue
            for leftover in leftovers:
                clean(leftover)
            found += len(leftovers)
            path.unlink(missing_ok=True)
    return found
