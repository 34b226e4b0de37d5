"""Derive JSON Schemas from Python signatures, so params and task args are declared once."""
from __future__ import annotations

import inspect
import types
import typing
from functools import lru_cache
from typing import Any, Callable

from ..executor import CodeLocation, Executor, Location

_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
    # JSON has no tuple: a routine gives a list.
    tuple: {"type": "array"},
    type(None): {"type": "null"},
    # jsonschema does not assert formats unless asked to, so these two only mark which keys the
    # loader resolves against the routine's folder and holds to a location policy.
    Location: {"type": "string", "format": "location"},
    CodeLocation: {"type": "string", "format": "code"},
}


def type_schema(annotation: Any) -> dict[str, Any]:
    """JSON Schema for one annotation; unknown annotations accept anything."""
    try:
        simple = _SIMPLE.get(annotation)
    except TypeError:  # Annotated[..., {schema}] cannot be hashed: a dict is part of it
        simple = None
    if simple is not None:
        # A copy: callers add "default" or "description" to what they get, which must not change the
        # entry shared by every later annotation.
        return dict(simple)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema: dict[str, Any] = type_schema(args[0])
        for extra in args[1:]:
            if isinstance(extra, str):
                schema["description"] = extra
            elif isinstance(extra, dict):
                schema.update(extra)
        return schema
    if origin is typing.Literal:
        return {"enum": list(args)}
    # Optional[X] arrives here too, as X | None: anyOf [X, null].
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(a) for a in args]}
    if origin in (list, set, frozenset):
        return {"type": "array", "items": type_schema(args[0])} if args else {"type": "array"}
    if origin is tuple:
        # tuple[int, ...] is any number of ints; tuple[int, str] is exactly an int then a str,
        # which JSON Schema 2020-12 says with prefixItems (items would hold every element to int).
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0])}
        if args:
            return {"type": "array", "prefixItems": [type_schema(a) for a in args],
                    "items": False, "minItems": len(args)}
        return {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    return {}


@lru_cache(maxsize=None)
def signature_schema(
    fn: Callable[..., Any], skip: tuple[str, ...] = ("self", "context")
) -> dict[str, Any]:
    """Object schema of ``fn``'s keyword arguments: required ones, types,
    no extras unless ``**kwargs``."""
    # include_extras keeps Annotated[...], whose descriptions and schema fragments type_schema
    # reads; without it get_type_hints strips them.
    hints = typing.get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    extra_allowed = False
    for name, param in inspect.signature(fn).parameters.items():
        # "context" is handed in by the engine, never by the routine; *args cannot be given by
        # keyword.
        if name in skip or param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            extra_allowed = True
            continue
        schema = type_schema(hints.get(name, Any))
        if param.default is param.empty:
            required.append(name)
        # A default becomes part of the schema (and of help and editors) only when JSON can write
        # it; None means "not given" and says nothing a user could copy.
        elif param.default is not None and _json_like(param.default):
            schema["default"] = param.default
        properties[name] = schema
    result: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": extra_allowed,
    }
    if required:
        result["required"] = required
    return result


def summary(obj: Any) -> str:
    """The first paragraph of a docstring, on one line ("" when there is none)."""
    text = inspect.getdoc(obj) or ""
    return " ".join(text.split("\n\n", 1)[0].split())


def task_schemas(cls: type[Executor]) -> dict[str, dict[str, Any]]:
    """Each task's ``args`` as an object schema, described by the method's docstring."""
    return {
        name: {**signature_schema(fn), "description": summary(fn)}
        for name, fn in cls.tasks().items()
    }


def _json_like(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict))


LOCATION_FORMATS = ("location", "code")


def location_kinds(schema: dict[str, Any]) -> dict[str, str]:
    """Top-level properties that hold locations (resolved against the routine's folder):
    ``key -> "location"|"code"``."""
    found = {}
    for key, sub in schema.get("properties", {}).items():
        for option in (sub, *sub.get("anyOf", [])):
            # anyOf covers Optional[Location], whose schema is anyOf [location, null].
            if option.get("format") in LOCATION_FORMATS:
                found[key] = option["format"]
    return found


def item_location_kinds(schema: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Top-level lists whose object items hold locations (a container's mount sources):
    ``key -> {item key -> "location"|"code"}``."""
    found = {}
    for key, sub in schema.get("properties", {}).items():
        for option in (sub, *sub.get("anyOf", [])):
            if option.get("type") == "array" and (
                kinds := location_kinds(option.get("items") or {})
            ):
                found[key] = kinds
    return found


def location_keys(schema: dict[str, Any]) -> set[str]:
    return set(location_kinds(schema))
