"""The run store: runs, task executions, logs and watermarks.

``RunStore`` is the contract a backend implements (a plugin returns one from the
``run_store`` hook); ``SQLiteStore`` is the default, a file under the orchestrator home,
safe when several processes write at once (WAL, immediate transactions).
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import json
import operator
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from ..records import FACTORY, Record
from ..errors import EnvironmentProblem, UserError
from ..outcome import TERMINAL, Status

RUNNING, DEAD = Status.RUNNING, Status.DEAD
HEARTBEAT_SECONDS = 5.0
DEAD_AFTER_SECONDS = 30.0
TIMEOUT_ENV = "ORCHESTRATOR_STORE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 30.0
F = TypeVar("F", bound=Callable[..., Any])
# The host of a run that an outside engine drives (a Step Functions execution): no process of ours
# lives for it between steps, so no heartbeat says it is alive; its engine records its end.
EXTERNAL_HOST_PREFIX = "external:"
EXECUTION_ARN_PREFIX = "arn:aws:states:"


def external_host(execution_arn: str | None) -> str:
    """The host recorded for a Step Functions execution: its ARN, for ``cancel RUN_ID``."""
    return EXTERNAL_HOST_PREFIX + (execution_arn or "states")


def execution_of(run: "RunRecord") -> str | None:
    """The Step Functions execution ARN a run is recorded under, if it is one."""
    arn = run.host[len(EXTERNAL_HOST_PREFIX):] if run.host.startswith(EXTERNAL_HOST_PREFIX) else ""
    return arn if arn.startswith(EXECUTION_ARN_PREFIX) and ":execution:" in arn else None


def hostname() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it (socket costs start-up)."""
    try:
        return os.uname().nodename
    except AttributeError:  # no uname (Windows)
        import socket

        return socket.gethostname()


class RoutineBusy(UserError):
    def __init__(self, routine: str, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"routine {routine!r} is already running as run {run_id}; wait for it, "
                         f"`orchestrate cancel {run_id}`, or pass --allow-concurrent")


class UnknownRun(UserError):
    pass


@dataclasses.dataclass(init=False, repr=False, eq=False)
class RunRecord(Record):
    """One run as the store keeps it; ``host``, ``pid`` and ``heartbeat`` tell whether it
    still lives."""

    run_id: str
    routine: str
    routine_file: str = ""
    routine_hash: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: str = RUNNING
    started: float = dataclasses.field(default_factory=time.time)
    ended: float | None = None
    parent_run_id: str | None = None
    resumed_from: str | None = None
    host: str = dataclasses.field(default_factory=hostname)
    pid: int | None = dataclasses.field(default_factory=os.getpid)
    pid_started: int | None = dataclasses.field(default_factory=lambda: process_start(os.getpid()))
    heartbeat: float = dataclasses.field(default_factory=time.time)
    cancel_requested: bool = False

    # Written out, not generated: see records.FACTORY. The factories run in field order, as
    # a generated __init__ runs them.
    def __init__(self, run_id: str, routine: str, routine_file: str = "",
                 routine_hash: str = "", params: dict[str, Any] = FACTORY,
                 status: str = RUNNING, started: float = FACTORY, ended: float | None = None,
                 parent_run_id: str | None = None, resumed_from: str | None = None,
                 host: str = FACTORY, pid: int | None = FACTORY, pid_started: int | None = FACTORY,
                 heartbeat: float = FACTORY, cancel_requested: bool = False) -> None:
        self.run_id = run_id
        self.routine = routine
        self.routine_file = routine_file
        self.routine_hash = routine_hash
        self.params = {} if params is FACTORY else params
        self.status = status
        self.started = time.time() if started is FACTORY else started
        self.ended = ended
        self.parent_run_id = parent_run_id
        self.resumed_from = resumed_from
        self.host = hostname() if host is FACTORY else host
        self.pid = os.getpid() if pid is FACTORY else pid
        self.pid_started = process_start(os.getpid()) if pid_started is FACTORY else pid_started
        self.heartbeat = time.time() if heartbeat is FACTORY else heartbeat
        self.cancel_requested = cancel_requested

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(init=False, repr=False, eq=False)
class TaskRecord(Record):
    """One attempt of one task, as the store keeps it (secrets already masked)."""

    # RunRecorder builds one per task attempt positionally (keywords cost a fifth of its time):
    # add new fields at the end, with a default.
    id: str
    run_id: str
    step: str
    executor: str
    task: str
    step_index: int
    task_index: int
    attempt: int
    status: str = RUNNING
    started: float = dataclasses.field(default_factory=time.time)
    ended: float | None = None
    error_type: str | None = None
    error: str | None = None
    metrics: dict[str, Any] | None = None
    traceback: str | None = None  # of a failed attempt, secrets masked; `report` shows it
    watermark: Any = None  # the watermark the task was given ...
    next_watermark: Any = None  # ... and the one it proposed (saved only on success)
    result: Any = None  # the task's return value when it is not metrics: JSON, secrets masked
    args: Any = None  # its args with ${steps...} resolved (masked); None when it had none

    # Written out, not generated: see records.FACTORY.
    def __init__(self, id: str, run_id: str, step: str, executor: str, task: str,
                 step_index: int, task_index: int, attempt: int, status: str = RUNNING,
                 started: float = FACTORY, ended: float | None = None,
                 error_type: str | None = None, error: str | None = None,
                 metrics: dict[str, Any] | None = None, traceback: str | None = None,
                 watermark: Any = None, next_watermark: Any = None, result: Any = None,
                 args: Any = None) -> None:
        self.id = id
        self.run_id = run_id
        self.step = step
        self.executor = executor
        self.task = task
        self.step_index = step_index
        self.task_index = task_index
        self.attempt = attempt
        self.status = status
        self.started = time.time() if started is FACTORY else started
        self.ended = ended
        self.error_type = error_type
        self.error = error
        self.metrics = metrics
        self.traceback = traceback
        self.watermark = watermark
        self.next_watermark = next_watermark
        self.result = result
        self.args = args

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(init=False, repr=False, eq=False)
class LogRecord(Record):
    """One log line of a run; ``seq`` orders them for ``orchestrate logs --follow``."""

    run_id: str
    ts: float
    level: str
    step: str | None
    task: str | None
    message: str
    seq: int = 0

    # Written out, not generated: see records.FACTORY.
    def __init__(self, run_id: str, ts: float, level: str, step: str | None, task: str | None,
                 message: str, seq: int = 0) -> None:
        self.run_id = run_id
        self.ts = ts
        self.level = level
        self.step = step
        self.task = task
        self.message = message
        self.seq = seq


class RunStore:
    """What a backend keeps. Methods are called from several threads and processes."""

    def start_run(self, run: RunRecord, allow_concurrent: bool = False) -> None:
        """Record a new running run; raise :class:`RoutineBusy` if the routine has a live run.

        Two simultaneous starts must not both win. Runs found dead are marked so first.
        """
        raise NotImplementedError

    def update_run(self, run_id: str, **fields: Any) -> None:
        raise NotImplementedError

    def get_run(self, run_id: str) -> RunRecord | None:
        raise NotImplementedError

    def list_runs(
        self,
        routine: str | None = None,
        status: str | None = None,
        parent: str | None = None,
        limit: int = 20,
    ) -> list[RunRecord]:
        raise NotImplementedError

    def record_task(self, task: TaskRecord) -> None:
        """Insert or replace one task execution (one attempt)."""
        raise NotImplementedError

    def record_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        """Insert or replace several, in order; a store that can writes them in one transaction."""
        for task in tasks:
            self.record_task(task)

    def tasks(self, run_id: str) -> list[TaskRecord]:
        raise NotImplementedError

    def append_logs(self, records: Iterable[LogRecord]) -> None:
        raise NotImplementedError

    def logs(self, run_id: str, after: int = 0) -> list[LogRecord]:
        """Log records of a run with ``seq`` greater than ``after``, in order."""
        raise NotImplementedError

    def get_watermark(self, routine: str, step: str, task: str) -> Any:
        raise NotImplementedError

    def set_watermark(self, routine: str, step: str, task: str, value: Any, run_id: str) -> None:
        raise NotImplementedError

    def lost(self) -> str | None:
        """Why the store this process opened is no longer the one at its place (deleted, replaced),
        or None. A run checks it while it runs: a lost store has lost the run's record and claim."""
        return None

    def reopen(self) -> None:
        """Open the store at its place afresh (creating it), after :meth:`lost` said it is gone."""

    def find_run(self, ref: str) -> RunRecord:
        """A run by id or unique id prefix."""
        run = self.get_run(ref)
        if run is not None:
            return run
        matches = (
            [r for r in self.list_runs(limit=10_000) if r.run_id.startswith(ref)]
            if len(ref) >= 4
            else []
        )
        if len(matches) == 1:
            return matches[0]
        raise UnknownRun(
            f"no run {ref!r}" if not matches else f"run id prefix {ref!r} is ambiguous"
        )


def is_dead(run: RunRecord, now: float | None = None) -> bool:
    """A running record whose process is gone (same host) or whose heartbeat stopped (any host)."""
    if run.status != RUNNING or run.host.startswith(EXTERNAL_HOST_PREFIX):
        return False
    now = now or time.time()
    # On its own host a run is judged by its process, which is exact and immediate; elsewhere
    # only the heartbeat tells, so a run is dead there only after several missed beats.
    if run.host == hostname() and run.pid:
        return not owns_pid(run)
    return now - run.heartbeat > DEAD_AFTER_SECONDS


def owns_pid(run: RunRecord) -> bool:
    """The run's process is still the one with its pid: alive, and started when the run's process
    started.

    A pid reused by another process (containers with fixed host names repeat pids) is not ours.
    """
    if not run.pid or not pid_alive(run.pid):
        return False
    return run.pid_started is None or process_start(run.pid) in (None, run.pid_started)


def process_start(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (Linux); None where /proc cannot tell."""
    try:
        # Field 22 of stat, counted after the command name, which is in parentheses and may
        # itself hold spaces or ")": hence the split at the last ")".
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    # Signal 0 checks that the pid exists without touching it; a pid of another user's process
    # answers PermissionError, and it exists all the same.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is dead for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, routine TEXT NOT NULL, routine_file TEXT, routine_hash TEXT,
    params TEXT, status TEXT NOT NULL, started REAL, ended REAL, parent_run_id TEXT,
    resumed_from TEXT, host TEXT, pid INTEGER, pid_started INTEGER, heartbeat REAL,
    cancel_requested INTEGER DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_routine ON runs (routine, status);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT, executor TEXT, task TEXT,
    step_index INTEGER, task_index INTEGER, attempt INTEGER, status TEXT, started REAL, ended REAL,
    error_type TEXT, error TEXT, metrics TEXT, traceback TEXT, watermark TEXT, next_watermark TEXT,
    result TEXT, args TEXT);
CREATE INDEX IF NOT EXISTS tasks_run ON tasks (run_id);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL, level TEXT, step TEXT,
    task TEXT, message TEXT);
CREATE INDEX IF NOT EXISTS logs_run ON logs (run_id, seq);
CREATE TABLE IF NOT EXISTS watermarks (
    routine TEXT, step TEXT, task TEXT, value TEXT, run_id TEXT, updated REAL,
    PRIMARY KEY (routine, step, task));
"""
_RUN_COLUMNS = [f.name for f in dataclasses.fields(RunRecord)]
_TASK_COLUMNS = [f.name for f in dataclasses.fields(TaskRecord)]
_JSON_COLUMNS = frozenset({"params", "metrics", "watermark", "next_watermark", "result", "args"})
# the task columns kept as JSON: metrics, watermarks, the kept return value, resolved args
_TASK_JSON_INDEXES = tuple(i for i, name in enumerate(_TASK_COLUMNS) if name in _JSON_COLUMNS)
_TASK_VALUES = operator.attrgetter(*_TASK_COLUMNS)  # a record's values in column order, at C speed
_PLAIN_COLUMNS = _TASK_COLUMNS.index("ended") + 1  # a record that ends here is a plain one
_NO_DETAILS = (None,) * (len(_TASK_COLUMNS) - _PLAIN_COLUMNS)
_TEXT_INDEXES = tuple(i for i, field in enumerate(dataclasses.fields(TaskRecord))
                      if field.type == "str")  # id, run_id, step, executor, task, status


_STATUS = _TASK_COLUMNS.index("status")
# id, run_id, step, executor and task lead the row: one join checks all five at once
_LEADING_TEXT = _TEXT_INDEXES.index(_STATUS)
assert _TEXT_INDEXES == (*range(_LEADING_TEXT), _STATUS), "plain rows assume this layout"


def _plain_row(values: Sequence[Any]) -> tuple[Any, ...] | None:
    """A plain record's row as it comes, when its text columns are ASCII (nothing to make
    storable); a ``str`` subclass (the status, a ``StrEnum``) becomes plain text, which SQLite
    binds without its adapter lookup (that lookup cost as much as the rest of the row)."""
    status = values[_STATUS]
    try:
        # one join and one isascii() instead of a check per column; a value that is not text
        # at all makes join raise, and the caller builds the row the careful way
        if not ("".join(values[:_LEADING_TEXT]) + status).isascii():
            return None
    except TypeError:
        return None
    if status.__class__ is not str:
        status = str(status)
    return (*values[:_STATUS], status, *values[_STATUS + 1:_PLAIN_COLUMNS])


def _text(value: str) -> str:
    """Text as SQLite stores it cheaply: plain ``str`` (not a subclass), storable."""
    text: str = storable(value if value.__class__ is str else str(value))
    return text


# SQLite's bound-parameter limit before 3.32 (32766 since): the most any build allows.
_MAX_VARIABLES = 999
# Rows per INSERT statement, largest first. One statement of many rows costs about 7 k
# instructions less per row than executemany's statement per row (each execution opens and
# closes cursors on the table and its two indexes). But each size is prepared once per
# connection (the heartbeat's thread and a step's thread flush through their own), at about
# 23 k instructions per row of it: (64, 32, ... 1) cost more to prepare than a 1,000-task run
# saved, and (16, 4, 1) keeps nearly all of the saving.
_CHUNKS = (16, 4, 1)


@functools.lru_cache(maxsize=None)
def _insert_tasks(width: int, rows: int) -> str:
    """``INSERT OR REPLACE`` of ``rows`` rows of the first ``width`` task columns. Rows are
    inserted in the order given, so a later row of an id replaces an earlier one."""
    row = f"({', '.join('?' * width)})"
    return (f"INSERT OR REPLACE INTO tasks ({', '.join(_TASK_COLUMNS[:width])}) "
            f"VALUES {', '.join([row] * rows)}")


def _insert_rows(conn: sqlite3.Connection, width: int, values: list[Any]) -> None:
    """Insert rows of ``width`` columns given as one flat list of values, in order."""
    count, start = len(values) // width, 0
    for rows in _CHUNKS:
        if rows * width > _MAX_VARIABLES:
            continue
        while count >= rows:
            end = start + rows * width
            conn.execute(_insert_tasks(width, rows), values[start:end])
            count, start = count - rows, end


class StoreUnavailable(EnvironmentProblem):
    """The SQLite run store cannot be used: the message says why and what to do, in one line."""

    def __init__(self, path: Path, exc: BaseException, timeout: float) -> None:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        super().__init__(f"run store {path}: {reason}; {_advice(path, exc, timeout)}")


def _advice(path: Path, exc: BaseException, timeout: float) -> str:
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if "locked" in text or "busy" in text:
        return (f"another process kept it locked for {timeout:g}s; try again when it is done "
                f"(or raise {TIMEOUT_ENV})")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return ("the file is damaged: move it aside (a new, empty store is then created) or set "
                "ORCHESTRATOR_HOME")
    if "full" in text or code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"the disk of {path.parent} is full: free space or set ORCHESTRATOR_HOME elsewhere"
    if "disk i/o" in text:
        return (f"a write to {path.parent} failed (a full disk, a quota, a file size limit?): "
                "fix it or set ORCHESTRATOR_HOME elsewhere")
    if "readonly" in text or "unable to open" in text or code in (errno.EROFS, errno.EACCES,
                                                                   errno.EPERM):
        return f"make {path.parent} writable or set ORCHESTRATOR_HOME to a writable folder"
    return "check the file and its folder, or set ORCHESTRATOR_HOME to another folder"


def _store_errors(method: F) -> F:
    """SQLite and file-system errors become one :class:`StoreUnavailable` line, not a traceback."""

    @functools.wraps(method)
    def guarded(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(self.path, exc, self.timeout) from exc

    return guarded  # type: ignore[return-value]


def store_timeout(env: dict[str, str] | None = None) -> float:
    """Seconds to wait for another process's lock on the store (``$ORCHESTRATOR_STORE_TIMEOUT``)."""
    text = (os.environ if env is None else env).get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise EnvironmentProblem(f"{TIMEOUT_ENV}={text!r}: expected seconds, from 0 to 86400")
    return value


def storable(text: Any) -> Any:
    """Text SQLite can store: lone surrogates (undecodable file names) become backslash escapes."""
    if not isinstance(text, str) or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class SQLiteStore(RunStore):
    """Runs in one SQLite file; one connection per thread.

    The file's identity (device, inode) is kept: if the file is deleted or replaced while a run is
    going (the orchestrator home removed), :meth:`lost` says so and :meth:`reopen` starts afresh.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = None) -> None:
        self.path = Path(path)
        self.timeout = store_timeout() if timeout is None else timeout
        self._local = threading.local()
        self._generation = 0
        self._identity: tuple[int, int] | None = None
        self._open()

    @_store_errors
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        # CREATE ... IF NOT EXISTS: a store written by an older version keeps its data, and
        # columns added since are added below; nothing is ever dropped.
        conn.executescript(_SCHEMA)
        for table, wanted in (("runs", _RUN_COLUMNS), ("tasks", _TASK_COLUMNS)):
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name in sorted(set(wanted) - columns):  # a store written by an older version
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name}")
        # Compared by ``lost``: a path check alone would not see the file replaced by another.
        self._identity = _identity(self.path)

    def lost(self) -> str | None:
        try:
            identity = _identity(self.path)
        except FileNotFoundError:
            return f"{self.path} was deleted"
        except OSError as exc:
            return f"{self.path} cannot be read ({exc.strerror or exc})"
        return None if identity == self._identity else f"{self.path} was replaced by another file"

    def reopen(self) -> None:
        self._generation += 1
        self._open()

    def _conn(self) -> sqlite3.Connection:
        # A connection per thread (the heartbeat, each step, the main thread): one connection's
        # transaction would take in every thread's statements. A new generation (``reopen``)
        # makes each thread open the file at its place again.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.generation != self._generation:
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            self._local.conn, self._local.generation = conn, self._generation
            # WAL: readers (``orchestrate runs``, ``logs --follow``) and the run that writes
            # never wait for each other. NORMAL syncs at checkpoints only: a commit survives a
            # crash of the process (what a resume needs); only a power loss can take the last.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @_store_errors
    def _write(self, sql: str, args: Iterable[Any] = ()) -> None:
        self._conn().execute(sql, tuple(args))

    @_store_errors
    def start_run(self, run: RunRecord, allow_concurrent: bool = False) -> None:
        conn = self._conn()
        # IMMEDIATE takes the write lock before the check: two processes starting the same
        # routine at once would otherwise both read "no live run" and both claim it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not allow_concurrent:
                rows = conn.execute(
                    f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE routine = ? AND status = ?",
                    (run.routine, RUNNING),
                ).fetchall()
                for other in map(self._run_from_row, rows):
                    if is_dead(other):
                        conn.execute(
                            "UPDATE runs SET status = ?, ended = ? WHERE run_id = ?",
                            (DEAD, time.time(), other.run_id),
                        )
                    elif other.run_id != run.run_id:
                        raise RoutineBusy(run.routine, other.run_id)
            same = conn.execute(
                "SELECT host, pid FROM runs WHERE run_id = ?", (run.run_id,)
            ).fetchone()
            # The same process may claim again (a store re-created mid-run); another may not
            # take over a run id that is already on record.
            if same is not None and tuple(same) != (run.host, run.pid):
                raise UserError(f"run id {run.run_id} is already recorded; a run id is used once")
            values = [self._encode(name, getattr(run, name)) for name in _RUN_COLUMNS]
            conn.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                values,
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a COMMIT that failed (a full disk) may have ended it already
                conn.execute("ROLLBACK")
            raise

    def update_run(self, run_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{key} = ?" for key in fields)
        self._write(
            f"UPDATE runs SET {sets} WHERE run_id = ?",
            [*(self._encode(k, v) for k, v in fields.items()), run_id],
        )

    @_store_errors
    def get_run(self, run_id: str) -> RunRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return self._run_from_row(row) if row else None

    @_store_errors
    def list_runs(
        self,
        routine: str | None = None,
        status: str | None = None,
        parent: str | None = None,
        limit: int = 20,
    ) -> list[RunRecord]:
        where, args = [], []
        for column, value in (("routine", routine), ("status", status), ("parent_run_id", parent)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs {clause} "
                "ORDER BY started DESC LIMIT ?",
                (*args, limit),
            )
            .fetchall()
        )
        return [self._run_from_row(row) for row in rows]

    def record_task(self, task: TaskRecord) -> None:
        self.record_tasks([task])

    @_store_errors
    def record_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        """One transaction for the batch (group commit): a commit per task costs more than it."""
        # Most records (a task that succeeded with nothing to report) have every column after
        # ``ended`` empty: binding those NULLs is half the cost of a row, so such rows leave them
        # out, and are taken as they come when their text is ASCII (nothing to make storable).
        # A batch may hold two records of one id (running, then finished): rows are inserted in
        # the batch's order, a plain stretch and a full stretch after each other, so the later
        # record wins.
        stretches: list[tuple[int, list[Any]]] = []  # (columns, the rows' values one after another)
        width, values = 0, []  # type: tuple[int, list[Any]]
        for task in tasks:
            row: Sequence[Any] = _TASK_VALUES(task)
            # A record with any detail (error, metrics, watermarks, result, args) needs its JSON
            # columns encoded and its text made storable: the careful row.
            if row[_PLAIN_COLUMNS:] != _NO_DETAILS:
                row, columns = self._task_row(task), len(_TASK_COLUMNS)
            else:
                row, columns = (_plain_row(row) or self._task_row(task)[:_PLAIN_COLUMNS],
                                _PLAIN_COLUMNS)
            # A new statement only where the kind changes: a quick step's batch is one stretch.
            if columns != width:
                width, values = columns, []
                stretches.append((width, values))
            values.extend(row)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for columns, flat in stretches:
                _insert_rows(conn, columns, flat)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a COMMIT that failed (a full disk) may have ended it already
                conn.execute("ROLLBACK")
            raise

    @_store_errors
    def tasks(self, run_id: str) -> list[TaskRecord]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks WHERE run_id = ? "
                "ORDER BY step_index, task_index, attempt",
                (run_id,),
            )
            .fetchall()
        )
        return [
            TaskRecord(
                **{name: self._decode(name, value) for name, value in zip(_TASK_COLUMNS, row)}
            )
            for row in rows
        ]

    @_store_errors
    def append_logs(self, records: Iterable[LogRecord]) -> None:
        rows = [(r.run_id, r.ts, r.level, storable(r.step), storable(r.task), storable(r.message))
                for r in records]
        if rows:
            self._conn().executemany(
                "INSERT INTO logs (run_id, ts, level, step, task, message) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    @_store_errors
    def logs(self, run_id: str, after: int = 0) -> list[LogRecord]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, run_id, ts, level, step, task, message FROM logs "
                "WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            )
            .fetchall()
        )
        return [
            LogRecord(
                run_id=r[1], ts=r[2], level=r[3], step=r[4], task=r[5], message=r[6], seq=r[0]
            )
            for r in rows
        ]

    @_store_errors
    def get_watermark(self, routine: str, step: str, task: str) -> Any:
        row = (
            self._conn()
            .execute(
                "SELECT value FROM watermarks WHERE routine = ? AND step = ? AND task = ?",
                (routine, step, task),
            )
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def set_watermark(self, routine: str, step: str, task: str, value: Any, run_id: str) -> None:
        self._write("INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?, ?, ?)",
                    (routine, step, task, json.dumps(value), run_id, time.time()))

    def _task_row(self, task: TaskRecord) -> list[Any]:
        """The row of one task record; built for every task of a run, so kept to one pass."""
        values = _TASK_VALUES(task)
        row = [_text(v) if isinstance(v, str) else v for v in values]
        for i in _TASK_JSON_INDEXES:
            value = values[i]
            row[i] = None if value is None else json.dumps(value, default=str)
        return row

    @staticmethod
    def _encode(name: str, value: Any) -> Any:
        if name in _JSON_COLUMNS:
            return None if value is None else json.dumps(value, default=str)
        if name == "cancel_requested":
            return int(bool(value))
        return storable(value)

    @staticmethod
    def _decode(name: str, value: Any) -> Any:
        if name in _JSON_COLUMNS:
            return None if value is None else json.loads(value)
        if name == "cancel_requested":
            return bool(value)
        return value

    def _run_from_row(self, row: tuple[Any, ...]) -> RunRecord:
        return RunRecord(
            **{name: self._decode(name, value) for name, value in zip(_RUN_COLUMNS, row)}
        )


def _identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def open_store(registry: Any = None) -> RunStore:
    """The store named by ``ORCHESTRATOR_STORE`` (through the ``run_store`` hook), else SQLite in
    the home."""
    url = os.environ.get("ORCHESTRATOR_STORE", "")
    if url and not url.startswith("sqlite:"):
        from ..registry import Registry

        store: RunStore | None = (registry or Registry()).store_for(url)
        if store is None:
            raise UserError(
                f"ORCHESTRATOR_STORE={url!r}: no installed plugin provides this run store"
            )
        return store
    if url.startswith("sqlite:"):
        return SQLiteStore(url.removeprefix("sqlite://").removeprefix("sqlite:"))
    from ..home import home_dir

    return SQLiteStore(home_dir() / "runs.sqlite")
