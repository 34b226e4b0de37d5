"""The run path's records behave as the dataclasses they were: same constructor (positional,
by name, defaults, the same refusals), fields, repr, equality, hashing, ``replace`` and
``asdict``, though their methods are shared or written out instead of generated at start-up."""
from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from orchestrator.engine.plan import Plan, Step
from orchestrator.errors import Problem
from orchestrator.events import RunInfo, RunResult, TaskResult
from orchestrator.executor import Dataset, Lineage, Place, TaskMetrics
from orchestrator.lineage.config import LineageSettings
from orchestrator.plugin_index import Claims, EntryPoint
from orchestrator.records import FrozenRecord, frozen_record
from orchestrator.registry import BrokenPlugin
from orchestrator.routine.load import Routine, StepSpec, TaskCall
from orchestrator.routine.outputs import StepOutput
from orchestrator.runs.store import LogRecord, RunRecord, TaskRecord

FROZEN = [Problem, Place, Dataset, Lineage, StepOutput, StepSpec, Routine, Step, Plan, RunInfo,
          LineageSettings, TaskCall]
# Made per task or per run with a hand-written __init__ (records.FACTORY).
MUTABLE = [TaskResult, RunResult, RunRecord, TaskRecord, LogRecord]


def twin(cls: type, frozen: bool = True) -> type:
    """What ``cls`` was: a plain dataclass with the same fields, generated methods."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default,
                                                 default_factory=f.default_factory,
                                                 repr=f.repr, compare=f.compare, hash=f.hash))
              for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=frozen)


def parameters(cls: type) -> list[tuple[str, Any, str, str]]:
    return [(p.name, p.kind, repr(p.default), str(p.annotation))
            for p in inspect.signature(cls).parameters.values()]


def arguments(cls: type) -> tuple[list[Any], dict[str, Any]]:
    """A value for each required field (positional) and for the first optional one (by name)."""
    positional, named = [], {}
    for number, field in enumerate(dataclasses.fields(cls)):
        value = f"value-{number}"
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            positional.append(value)
        elif not named:
            named[field.name] = value
    return positional, named


@pytest.mark.parametrize("cls", FROZEN, ids=lambda cls: cls.__name__)
def test_a_frozen_record_is_made_and_compared_as_its_dataclass_was(cls: type) -> None:
    old = twin(cls)
    args, kwargs = arguments(cls)
    record, before = cls(*args, **kwargs), old(*args, **kwargs)
    assert dataclasses.asdict(record) == dataclasses.asdict(before)
    assert repr(record) == repr(before).replace(f"types.{cls.__name__}", cls.__qualname__)
    assert record == cls(*args, **kwargs) and hash(record) == hash(cls(*args, **kwargs))
    assert list(vars(record)) == [f.name for f in dataclasses.fields(cls)], "in field order"
    names = [f.name for f in dataclasses.fields(cls)]
    changed = dataclasses.replace(record, **{names[0]: "other"})
    assert getattr(changed, names[0]) == "other" and changed != record
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, names[0], "again")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(record, names[0])
    assert parameters(cls) == parameters(old)


@pytest.mark.parametrize("cls", FROZEN, ids=lambda cls: cls.__name__)
def test_a_frozen_record_refuses_the_arguments_its_dataclass_refused(cls: type) -> None:
    old = twin(cls)
    args, kwargs = arguments(cls)
    too_many = [*args, *(["x"] * (len(dataclasses.fields(cls)) + 1 - len(args)))]
    names = [f.name for f in dataclasses.fields(cls)]
    twice = [(["once"], {names[0]: "twice"})]
    for bad_args, bad_kwargs in [(too_many, {}), (args, {**kwargs, "nonsense": 1}), *twice]:
        with pytest.raises(TypeError):
            old(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            cls(*bad_args, **bad_kwargs)
    if args:
        with pytest.raises(TypeError, match=repr(names[len(args) - 1])):
            cls(*args[:-1], **kwargs)


def test_a_frozen_record_calls_post_init_and_fills_defaults_fresh() -> None:
    @frozen_record
    class Counted(FrozenRecord):
        name: str
        tags: list[str] = dataclasses.field(default_factory=list)
        path: Path = Path(".")
        seen: int = dataclasses.field(default=0, init=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "seen", len(self.name))

    one, two = Counted("abc"), Counted(name="de", path=Path("/"))
    assert one.tags == [] and one.tags is not two.tags
    assert (one.seen, two.seen, two.path) == (3, 2, Path("/"))
    with pytest.raises(TypeError):
        Counted("abc", seen=4)


@pytest.mark.parametrize("cls", MUTABLE, ids=lambda cls: cls.__name__)
def test_a_written_out_init_takes_what_the_generated_one_took(cls: type) -> None:
    old = twin(cls, frozen=False)
    assert parameters(cls) == parameters(old)
    args, kwargs = arguments(cls)
    record, before = cls(*args, **kwargs), old(*args, **kwargs)
    made_by_factory = {f.name for f in dataclasses.fields(cls)
                       if f.default_factory is not dataclasses.MISSING}
    assert ({k: v for k, v in vars(record).items() if k not in made_by_factory}
            == {k: v for k, v in vars(before).items() if k not in made_by_factory})
    assert list(vars(record)) == [f.name for f in dataclasses.fields(cls)], "in field order"
    names = [f.name for f in dataclasses.fields(cls)]
    everything = {name: f"value-{name}" for name in names}
    assert vars(cls(**everything)) == vars(old(**everything)) == everything
    assert vars(cls(*everything.values())) == everything
    assert dataclasses.replace(cls(**everything), **{names[0]: "x"}) == cls(**{**everything,
                                                                             names[0]: "x"})
    for name in made_by_factory:
        assert getattr(record, name) == getattr(before, name) or name in ("started", "heartbeat")


def test_task_metrics_keep_their_checks_defaults_and_subclasses() -> None:
    assert parameters(TaskMetrics) == parameters(twin(TaskMetrics, frozen=False))
    one, two = TaskMetrics(total_rows=3), TaskMetrics()
    assert one.execution_metadata == {} and one.execution_metadata is not two.execution_metadata
    assert one == TaskMetrics(None, None, None, 3, {}) and one != two
    with pytest.raises(ValueError):
        TaskMetrics(inserts=-1)

    @dataclasses.dataclass(repr=False, eq=False)
    class More(TaskMetrics):
        files: int = 0

    more = More(total_rows=1, files=2)
    assert more.to_dict()["files"] == 2 and more.execution_metadata == {}
    with pytest.raises(ValueError):
        More(updates=True)


@pytest.mark.parametrize("cls", [EntryPoint, Claims, BrokenPlugin], ids=lambda c: c.__name__)
def test_a_written_out_named_tuple_behaves_as_a_named_tuple(cls: type) -> None:
    old = NamedTuple(cls.__name__, [(name, Any) for name in cls._fields])  # type: ignore[misc]
    values = [f"v{number}" for number in range(len(cls._fields))]
    row, before = cls(*values), old(*values)
    assert row == before == tuple(values) and hash(row) == hash(before)
    assert repr(row) == repr(before) and row._asdict() == before._asdict()
    assert cls(**dict(zip(cls._fields, values))) == row
    assert [getattr(row, name) for name in cls._fields] == values
    assert pickle.loads(pickle.dumps(row)) == row
    with pytest.raises(TypeError):
        cls(*values[:-1])
    with pytest.raises(AttributeError):
        row.extra = 1
