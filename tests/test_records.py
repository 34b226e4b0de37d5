"""The run path's records behave as the dataclasses they were: same constructor (positional,
by name, defaults, the same refusals), fields, repr, equality, hashing, ``replace`` and
``asdict``, though their methods are shared or written out instead of generated at start-up."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.plan import Plan, Step
from orchestrator.errors import Problem
from orchestrator.events import RunInfo
from orchestrator.executor import Dataset, Lineage, Place
from orchestrator.lineage.config import LineageSettings
from orchestrator.records import FrozenRecord, frozen_record
from orchestrator.routine.load import Routine, StepSpec
from orchestrator.routine.outputs import StepOutput

FROZEN = [Problem, Place, Dataset, Lineage, StepOutput, StepSpec, Routine, Step, Plan, RunInfo,
          LineageSettings]


def twin(cls: type) -> type:
    """What ``cls`` was: a plain frozen dataclass with the same fields, generated methods."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default,
                                                 default_factory=f.default_factory,
                                                 repr=f.repr, compare=f.compare, hash=f.hash))
              for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True)


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
    assert str(inspect.signature(cls)) == str(inspect.signature(old))


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
