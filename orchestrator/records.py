"""``__repr__``, ``__eq__`` and ``__hash__`` shared by the dataclasses every run makes.

``dataclasses`` compiles each generated method from source when the class is defined: about
0.5 M instructions per method, paid at every start-up for methods a run never calls. A record
declared ``@dataclasses.dataclass(repr=False, eq=False)`` on top of :class:`Record` behaves as
the default dataclass would (same repr, equality by fields within one class, hashable by fields
when frozen, unhashable otherwise) and stays a dataclass for ``fields``, ``asdict`` and
``replace``; only ``__init__`` (and a frozen class's ``__setattr__``) is still generated.
"""
from __future__ import annotations

import dataclasses
import reprlib
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

T = TypeVar("T")


def _names(cls: type, flag: str) -> tuple[str, ...]:
    """The fields of ``cls`` that take part in ``flag`` ("repr", "compare" or "hash"), cached."""
    cached: dict[str, tuple[str, ...]] = cls.__dict__.get("_record_names") or {}
    names = cached.get(flag)
    if names is None:
        fields = dataclasses.fields(cls)
        if flag == "hash":
            names = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
        else:
            names = tuple(f.name for f in fields if getattr(f, flag))
        cached[flag] = names
        setattr(cls, "_record_names", cached)
    return names


class Record:
    """Base of a run-path dataclass declared with ``repr=False, eq=False`` (see the module)."""

    __slots__ = ()
    _record_names: ClassVar[dict[str, tuple[str, ...]] | None] = None

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}"
                           for name in _names(type(self), "repr"))
        return f"{type(self).__qualname__}({values})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = _names(type(self), "compare")
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    def __hash__(self) -> int:
        frozen = type(self).__dataclass_params__.frozen  # type: ignore[attr-defined]
        if not (frozen or isinstance(self, FrozenRecord)):
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(tuple(getattr(self, n) for n in _names(type(self), "hash")))


class FrozenRecord(Record):
    """Base of a :func:`frozen_record`: each field is set once, by ``__init__``, and never again.

    A ``frozen=True`` dataclass compiles its own ``__setattr__`` and ``__delattr__`` (about
    1.5 M instructions at every start-up); this one is shared. Making an instance costs a
    Python call per field (about 0.1 us each), so records made once per task stay real frozen
    dataclasses.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        fields = self.__dataclass_fields__  # type: ignore[attr-defined]
        if name in self.__dict__ or name not in fields:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


if TYPE_CHECKING:
    from typing_extensions import dataclass_transform

    @dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
    def frozen_record(cls: type[T]) -> type[T]:
        """A frozen dataclass to type checkers."""
else:

    def frozen_record(cls):
        """A dataclass on :class:`FrozenRecord`: frozen, with no method compiled but __init__."""
        return dataclasses.dataclass(cls, repr=False, eq=False)
