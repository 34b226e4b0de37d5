"""The executor contract: what a plugin subclasses, marks and returns.

An executor knows one system. The routine's ``params`` become its constructor's
keyword arguments; its tasks are the methods marked with :func:`task`.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, TypeVar

from .records import FACTORY, FrozenRecord, Record, frozen_record
from .ids import sha256_hex

if TYPE_CHECKING:
    # Only named in annotations: a run imports ``logging`` when a task first asks for its logger
    # (see orchestrator.lazy_logging), and a plugin's import of this module must not do it.
    import logging

__all__ = ["Cancelled", "CodeLocation", "Context", "Dataset", "NotRetryable", "Executor", "Lineage",
           "Location", "Place", "TaskMetrics", "Uncompilable", "task"]

F = TypeVar("F", bound=Callable[..., Any])
_TASK_MARK = "__orchestrator_task__"
# Per thread: a step's tasks run in parallel threads, and each thread's current context is the
# task it runs (log lines and child runs are attributed through it).
_current = threading.local()


def current_context() -> "Context | None":
    """The context of the task running in this thread, if any."""
    return getattr(_current, "context", None)


# A str subclass, not a marker: annotations must be real types that signature_schema can map
# (to ``"format": "location"``), while the values a task receives stay plain strings.
class Location(str):
    """Annotation for a param that names a file, folder or ``s3://`` URI.

    Relative local paths are resolved against the routine file's folder.
    """


class CodeLocation(Location):
    """Annotation for a param or arg that names Python code (a file, ``file.py:function`` or a
    folder).

    Resolved like a :class:`Location`; a caller may apply a stricter policy to code than to data
    (the Lambda handler does, for routines that arrive in events).
    """


@frozen_record
class Place(FrozenRecord):
    """A location an executor will use that its ``Location``/``CodeLocation`` annotations do not
    show: one it derives (a default archive folder), one inside a free-form argument (a path among a
    function's kwargs), or the functions it will call from a code location.

    A caller that applies a location policy (the Lambda handler, for routines from events) checks
    these too, so that declaring them is what keeps the core from naming any executor.
    """

    key: str  # where the value is, relative to the step's params or the task's args: "kwargs.out"
    value: str  # the location, resolved as the executor will use it
    kind: str = "location"  # "location" (data: read, written, deleted) or "code" (imported)
    functions: tuple[str, ...] = ()  # for code: the names that will be called from it
    derived: bool = False  # not written in the routine: the executor's default


@frozen_record
class Dataset(FrozenRecord):
    """A dataset a task reads or writes, named as OpenLineage names datasets: ``namespace`` says
    where it lives (``s3://bucket``, ``file``, ``postgres://host:5432``, ``awsathena://...``),
    ``name`` which one it is there (a key prefix, a path, ``database.schema.table``)."""

    namespace: str
    name: str

    @classmethod
    def at(cls, location: str) -> Dataset:
        """The dataset of a location: ``s3://bucket/key`` or a local path (made absolute)."""
        if location.startswith("s3://"):
            bucket, _, key = location[5:].partition("/")
            return cls(f"s3://{bucket}", key.rstrip("/") or "/")
        path = location[7:] if location.startswith("file://") else location
        return cls("file", str(Path(path).absolute()).rstrip("/") or "/")


@frozen_record
class Lineage(FrozenRecord):
    """What one task reads (``inputs``) and writes (``outputs``): see
    :meth:`Executor.task_lineage`."""

    inputs: tuple[Dataset, ...] = ()
    outputs: tuple[Dataset, ...] = ()


class Cancelled(Exception):
    """Raised inside a task when its run was cancelled (Ctrl-C, SIGTERM, timeout)."""


class NotRetryable(Exception):
    """A failure that a retry would only repeat (a cost guard, a rejected spec): the task fails at
    once.

    Any exception with a ``retryable = False`` attribute is treated the same way.
    """

    retryable = False


# Where a state machine's batches keep what later tasks of their step need (``run_batch``): an
# ``s3://`` prefix the generated template creates and gives the orchestrator's Lambda.
BATCH_STATE_ENV = "ORCHESTRATOR_BATCH_STATE"


class Uncompilable(Exception):
    """Raised by :meth:`Executor.state_machine_task` for a task that cannot run in a state machine
    at all (neither as a native integration nor in our Lambda): generating one is refused, naming
    the step.
    """


@dataclasses.dataclass(init=False, repr=False, eq=False)
class TaskMetrics(Record):
    """What a task reports. Subclass it to add fields; they are kept and shown."""

    inserts: int | None = None
    updates: int | None = None
    soft_deletes: int | None = None
    total_rows: int | None = None
    execution_metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    # Written out, as records.FACTORY says: tasks make one each. A subclass declared a dataclass
    # gets a generated one for all its fields again.
    def __init__(self, inserts: int | None = None, updates: int | None = None,
                 soft_deletes: int | None = None, total_rows: int | None = None,
                 execution_metadata: dict[str, Any] = FACTORY) -> None:
        self.inserts = inserts
        self.updates = updates
        self.soft_deletes = soft_deletes
        self.total_rows = total_rows
        self.execution_metadata = {} if execution_metadata is FACTORY else execution_metadata
        self.__post_init__()

    def __post_init__(self) -> None:
        for name in _METRIC_NAMES:
            value = getattr(self, name)
            # bool is an int subclass: True would otherwise be stored as a count of 1.
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(
                    f"TaskMetrics.{name} must be a non-negative integer or None, got {value!r}"
                )
        if not isinstance(self.execution_metadata, dict):
            raise ValueError("TaskMetrics.execution_metadata must be a dict")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Any) -> TaskMetrics | None:
        """What a task returned, as metrics; None when it is a plain result instead.

        Metrics are a ``TaskMetrics``, a dict whose keys are all metric names
        (``{"total_rows": 5}``), or any object (another library's metrics class, say) carrying
        metric attributes. Values that are not valid metrics make it a plain result.
        """
        if isinstance(value, TaskMetrics):
            return value
        if isinstance(value, dict):
            known = set(_METRIC_NAMES) | {"execution_metadata"}
            fields = (
                dict(value)
                if value and set(value) <= known and set(value) & set(_METRIC_NAMES)
                else None
            )
        elif value is None or isinstance(value, (str, bytes, int, float, list, tuple, set)):
            fields = None
        else:
            fields = {
                n: getattr(value, n)
                for n in (*_METRIC_NAMES, "execution_metadata")
                if hasattr(value, n)
            }
            fields = fields if set(fields) & set(_METRIC_NAMES) else None
        if not fields:
            return None
        meta = fields.pop("execution_metadata", None)
        # Copied into a plain dict: the task's own object stays the task's; a value that is
        # not a dict is dropped rather than making the whole value a plain result.
        try:
            return cls(**fields, execution_metadata=dict(meta) if isinstance(meta, dict) else {})
        except (TypeError, ValueError):
            return None


_METRIC_NAMES = ("inserts", "updates", "soft_deletes", "total_rows")


def task(fn: F) -> F:
    """Mark a method as a task: only marked methods may be called from a routine."""
    setattr(fn, _TASK_MARK, True)
    return fn


class Context:
    """What a running task may know about its run; passed if the task takes ``context``."""

    def __init__(
        self,
        *,
        run_id: str,
        run_date: str,
        routine_name: str,
        step: str,
        task: str,
        attempt: int = 1,
        trusted: bool = True,
        cancel_event: threading.Event | None = None,
        home: Path | None = None,
        watermark: Any = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.run_date = run_date
        self.routine_name = routine_name
        self.step = step
        self.task = task
        self.attempt = attempt
        # False for a routine from outside (a Lambda event): code it names may then be called only
        # for functions the code file defines itself, not names the file imports.
        self.trusted = trusted
        self.watermark = watermark
        self.next_watermark: Any = None
        self.resumed_from = (
            resumed_from  # the run this one resumes: its remote work may still be going
        )
        # A context made outside a run (a test, ``track``) still answers ``cancelled`` and
        # ``wait``: its own event, never set.
        self._cancel_event = cancel_event or threading.Event()
        self._home = home
        self._logger = logger

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        """The task's logger, made on first use: most tasks never log, and the engine makes a
        context for every attempt."""
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(f"orchestrator.task.{self.step}.{self.task}")
        return self._logger

    @logger.setter
    def logger(self, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._logger = logger

    def active(self) -> _Active:
        """Make this the current task's context in this thread (log attribution, child runs):
        ``with context.active(): ...``. A plain class, not a generator: it wraps every task."""
        return _Active(self)

    @property
    def cancelled(self) -> bool:
        return self._cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the run was asked to stop; call it between units of work."""
        if self._cancel_event.is_set():
            raise Cancelled(f"{self.step}.{self.task} cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early if the run is cancelled."""
        return self._cancel_event.wait(seconds)

    @property
    def home(self) -> Path:
        if self._home is None:
            # Found on first use: home_dir() creates the folder (and may fail to), which a task
            # that keeps no state must not cause.
            from .home import home_dir

            self._home = home_dir()
        return self._home

    def state_dir(self, *parts: str) -> Path:
        """A folder under the orchestrator home for what this step must remember between runs."""
        path = self.home.joinpath(
            "state", _safe(self.routine_name), _safe(self.step), *map(_safe, parts)
        )
        path.mkdir(parents=True, exist_ok=True)
        return path


class _Active:
    """``Context.active()``: this context is the thread's current one inside the ``with``."""

    __slots__ = ("context", "previous")

    def __init__(self, context: Context) -> None:
        self.context = context
        self.previous: Context | None = None

    def __enter__(self) -> Context:
        self.previous = getattr(_current, "context", None)
        _current.context = self.context
        return self.context

    def __exit__(self, *exc: object) -> None:
        # The previous context, not None: a task that runs a child routine in-process gets its
        # own context back when the child's task ends.
        _current.context = self.previous


def _safe(part: str) -> str:
    """One folder name that stays where it is put: no separator, no ``.``/``..``, not too long."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in part)
    if len(name) > 128:  # two long names that share a beginning stay two folders
        digest = sha256_hex(part.encode("utf-8", "surrogatepass"))
        name = f"{name[:111]}-{digest[:16]}"
    return "_" + name[1:] if name.startswith(".") else name or "_"


class Executor:
    """Base class of every executor.

    Class attributes a subclass may set:
      ``name``           short registry name (its class name resolves too)
      ``params_schema``  JSON Schema of its params (otherwise derived from ``__init__``)

    Methods a subclass may override: ``validate_params``, ``validate_args``, ``check``, ``cancel``,
    ``restore`` (resume: rebuild state a skipped task left) and ``close``.
    """

    name: ClassVar[str | None] = None
    params_schema: ClassVar[dict[str, Any] | None] = None
    _orchestrator_tasks: ClassVar[dict[str, Callable[..., Any]]]  # set by tasks(), per class

    def __init__(self) -> None:  # executors without params need no constructor
        pass

    @classmethod
    def registry_name(cls) -> str:
        return cls.name or cls.__name__

    @classmethod
    def tasks(cls) -> dict[str, Callable[..., Any]]:
        """The methods a routine may call, by name, in definition order."""
        # From the class's own __dict__, not getattr: a subclass must not reuse its parent's
        # cached table, it may add or override tasks.
        cached: dict[str, Callable[..., Any]] | None = cls.__dict__.get("_orchestrator_tasks")
        if cached is not None:
            return cached
        found: dict[str, Callable[..., Any]] = {}
        # Base classes first: an override replaces its parent's method under the same name and
        # keeps the parent's place in the order.
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if callable(value) and getattr(value, _TASK_MARK, False):
                    found[attr] = value
        cls._orchestrator_tasks = found
        return found

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        """Cross-field checks after the schema passed: yield ``(param, message)`` pairs.

        Runs at validation time, before any side effect: it must not touch the outside world.
        """
        return ()

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        """Deeper checks of one task's args (``params`` are the step's) after the signature check:
        yield ``(arg path, message)``.

        ``arg path`` is relative to the task's ``args`` (``"columns[2].type"``). No side effects.
        """
        return ()

    @classmethod
    def check_environment(cls) -> list[str]:
        """Problems that would stop *any* instance here (libraries, credentials), found without
        params: what ``orchestrate doctor`` reports for every executor when given no routine."""
        return []

    @classmethod
    def places(cls, params: dict[str, Any]) -> Iterable[Place]:
        """Locations the step will use beyond its ``Location``/``CodeLocation`` params: derived ones
        and the functions it calls from code. Called at validation, like ``validate_params``."""
        return ()

    @classmethod
    def task_places(cls, task: str, args: dict[str, Any],
                    params: dict[str, Any]) -> Iterable[Place]:
        """Locations one task will use beyond its typed args (paths inside a free-form dict, code
        and the function it calls); keys are relative to the task's ``args``. No side effects."""
        return ()

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        """How one task runs in an AWS Step Functions state machine, declared by the executor
        itself.

        Return None to run it through the orchestrator's Lambda (the default: any task can); a
        ``Task`` state (``Type``, ``Resource``, ``Parameters``..., without ``Next``/``End``, which
        the compiler adds with ``Retry``, ``Catch`` and ``TimeoutSeconds``); or a fragment
        ``{"StartAt", "States"}`` whose last states have ``"End": true`` (a submit-and-poll loop),
        which runs as a one-branch ``Parallel`` whose input is ``{"params", "run", "timeout"}``
        (``timeout`` in seconds, for the loop to honour). Strings may hold ``${params.X}``,
        ``${run.id}`` and ``${run.date}``: the compiler turns them into paths of the execution's
        input. Raise :class:`Uncompilable` when the task can run in neither way. No side effects.

        A fourth form fans the task out: a ``Map`` state with an ``ItemReader`` (and optionally
        ``ItemBatcher``, ``MaxConcurrency``...) but no ``ItemProcessor``. The compiler makes it a
        Distributed Map whose children call :meth:`run_batch` in the orchestrator's Lambda, each on
        a batch of items; the step's later tasks then start from :meth:`restore` (the task
        succeeded in this run), once every batch succeeded.
        """
        return None

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Lineage | None:
        """The datasets one task reads and writes, for lineage (OpenLineage events); None when the
        executor cannot tell. Asked when the task starts (``result`` None) and when it ends
        (``result``: the task's kept result, or its metrics as a dict), so what only the outcome
        knows can be added then. Only what can be known for sure: no guesses. No side effects."""
        return None
    def run_batch(self, context: Context, task: str, items: list[Any]) -> dict[str, Any]:
        """Do ``task`` for a batch of a Distributed Map's items (see :meth:`state_machine_task`);
        persist what the step's later tasks need under ``ORCHESTRATOR_BATCH_STATE``, so their
        :meth:`restore` finds it. Return a small JSON summary. Must be safe to run again."""
        raise NotImplementedError(f"{type(self).__name__} does not run {task} in batches")

    def check(self) -> list[str]:
        """Problems that would stop this configured executor here (endpoints, permissions):
        ``orchestrate doctor ROUTINE`` runs it after :meth:`check_environment`."""
        return []

    def cancel(self) -> None:
        """Stop remote work in flight. Called from another thread; must return quickly."""

    def restore(self, context: Context, succeeded_in: str) -> bool:
        """A resume skips ``context.task``: it already succeeded in run ``succeeded_in``.

        Called on the step's instance, in task order, instead of the task. An executor whose later
        tasks depend on what an earlier task left in memory rebuilds it here from what it persisted
        then (files under ``context.state_dir``). Return False only when that cannot be done and
        running the task again is harmless: the task then runs again. Raising fails the task.
        """
        return True

    def close(self) -> None:
        """Release resources once the executor's last task has run."""


# Cached: inspect.signature builds a whole Signature object, and the engine asks once per task;
# task functions live as long as their classes.
@functools.lru_cache(maxsize=None)
def accepts_context(fn: Callable[..., Any]) -> bool:
    return "context" in inspect.signature(fn).parameters
