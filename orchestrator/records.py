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


class _Factory:
    """The default of a hand-written ``__init__``'s argument whose field has a default factory:
    shown as ``<factory>``, as a generated one shows it."""

    def __repr__(self) -> str:
        return "<factory>"


# A record whose instances are made per task (too often for the shared ``__init__`` below) is
# declared ``@dataclasses.dataclass(init=False, repr=False, eq=False)`` with its ``__init__``
# written out, compiled once into the module's .pyc instead of from source at every start-up.
# Such an ``__init__`` takes the fields in order, with their defaults, and ``FACTORY`` for those
# with a factory (``x = factory() if x is FACTORY else x``): what dataclasses would generate.
FACTORY: Any = _Factory()


def _names(cls: type, flag: str) -> tuple[str, ...]:
    """The fields of ``cls`` that take part in ``flag`` ("repr", "compare" or "hash"), cached."""
    # The class's own cache, not an inherited one: a subclass may have more fields.
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
        # The exact class, as a generated __eq__ compares: a subclass's record never equals its
        # base's, even with the same field values.
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = _names(type(self), "compare")
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    def __hash__(self) -> int:
        frozen = type(self).__dataclass_params__.frozen  # type: ignore[attr-defined]
        # A mutable dataclass with eq is unhashable (its __hash__ is None): a record whose hash
        # could change while it sits in a set or dict key must stay so.
        if not (frozen or isinstance(self, FrozenRecord)):
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(tuple(getattr(self, n) for n in _names(type(self), "hash")))


class FrozenRecord(Record):
    """Base of a :func:`frozen_record`: each field is set once, by ``__init__``, and never again.

    A ``frozen=True`` dataclass compiles its own ``__setattr__`` and ``__delattr__`` (about
    1.5 M instructions at every start-up); this one is shared, and so is ``__init__``: a
    generated one is compiled too (about 0.6 M each). The shared ``__init__`` takes the same
    arguments (positional in field order, or by name; defaults and default factories) and calls
    ``__post_init__`` if there is one, but costs a few microseconds per instance instead of one:
    records made once per task stay real frozen dataclasses.
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        fields = cls.__dict__.get("_record_init") or _init_fields(cls)
        if len(args) > len(fields):
            raise TypeError(f"{cls.__qualname__}() takes {len(fields)} positional arguments "
                            f"but {len(args)} were given")
        values: dict[str, Any] = {}
        missing = []
        used = 0
        for position, (name, init, default, factory) in enumerate(fields):
            if position < len(args):
                if name in kwargs:
                    raise TypeError(f"{cls.__qualname__}() got multiple values for argument "
                                    f"{name!r}")
                values[name] = args[position]
            elif init and name in kwargs:
                values[name] = kwargs[name]
                used += 1
            elif default is not dataclasses.MISSING:
                values[name] = default
            elif factory is not dataclasses.MISSING:
                values[name] = factory()
            elif init:
                missing.append(name)
        if used != len(kwargs):
            known = {name for name, init, _, _ in fields if init}
            unexpected = next(name for name in kwargs if name not in known)
            raise TypeError(f"{cls.__qualname__}() got an unexpected keyword argument "
                            f"{unexpected!r}")
        if missing:
            raise TypeError(f"{cls.__qualname__}() missing {len(missing)} required argument"
                            f"{'s' if len(missing) > 1 else ''}: "
                            + ", ".join(map(repr, missing)))
        # Straight into the instance's dict, in field order as a generated __init__ would set
        # them: the shared __setattr__ would refuse nothing here, only cost a call per field.
        self.__dict__.update(values)
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def __setattr__(self, name: str, value: Any) -> None:
        fields = self.__dataclass_fields__  # type: ignore[attr-defined]
        if name in self.__dict__ or name not in fields:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


_InitField = tuple[str, bool, Any, Any]


def _init_fields(cls: type) -> tuple[_InitField, ...]:
    """``(name, init, default, default_factory)`` of each field, in order, cached on the class.
    Fields that ``__init__`` does not take (``init=False``) come last in the signature's eyes:
    positional arguments go to the ``init`` fields only."""
    fields = dataclasses.fields(cls)
    ordered = [f for f in fields if f.init] + [f for f in fields if not f.init]
    spec = tuple((f.name, f.init, f.default, f.default_factory) for f in ordered)
    setattr(cls, "_record_init", spec)
    return spec


class _Signature:
    """``inspect.signature`` of a frozen record: its fields, as a generated ``__init__`` would
    show them, rather than the shared ``(*args, **kwargs)``. Worked out when asked for."""

    def __get__(self, instance: object, owner: type) -> Any:
        if not dataclasses.is_dataclass(owner):
            return None  # FrozenRecord itself: inspect looks further
        import inspect

        parameters = []
        for name, init, default, factory in _init_fields(owner):
            if not init:
                continue
            if factory is not dataclasses.MISSING:
                default = factory()
            parameters.append(inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if default is dataclasses.MISSING else default,
                annotation=owner.__dataclass_fields__[name].type))  # type: ignore[attr-defined]
        return inspect.Signature(parameters, return_annotation=None)


FrozenRecord.__signature__ = _Signature()  # type: ignore[attr-defined]


if TYPE_CHECKING:
    from typing_extensions import dataclass_transform

    @dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
    def frozen_record(cls: type[T]) -> type[T]:
        """A frozen dataclass to type checkers."""
else:

    def frozen_record(cls):
        """A dataclass on :class:`FrozenRecord`: frozen, with no method compiled at all."""
        for field in cls.__dict__.get("__annotations__", {}).values():
            # The shared __init__ knows plain fields only; a generated one would be needed.
            if isinstance(field, str) and field.startswith(("InitVar", "dataclasses.InitVar",
                                                            "KW_ONLY", "dataclasses.KW_ONLY")):
                raise TypeError(f"{cls.__qualname__}: a frozen record takes no {field}")
        return dataclasses.dataclass(cls, init=False, repr=False, eq=False)
