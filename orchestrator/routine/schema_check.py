"""JSON Schema validation that speaks the user's language: a JSON path and a fix per problem."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

from ..limits import finite_number

_TYPE_NAMES = {
    "object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false", "null": "null",
}


def json_path(parts: Iterable[Any], prefix: str = "") -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def schema_problems(
    instance: Any, schema: dict[str, Any], prefix: str = "", what: str = "property"
) -> list[tuple[str, str]]:
    """Every violation of ``schema`` as ``(json path, message)``, most specific cause first."""
    if quick_valid(instance, schema, schema):
        return []
    validator = _validator(_freeze(schema))
    problems: list[tuple[str, str]] = []
    for error in validator.iter_errors(instance):
        problems.extend(p for e in _causes(error) for p in _describe(e, prefix, what))
    return sorted(set(problems), key=lambda p: _sort_key(p[0]))


def _sort_key(path: str) -> list[Any]:
    import re

    key: list[Any] = []
    for part in filter(None, re.split(r"[.\[\]]+", path)):
        # An index sorts as a number; "²" is a digit to isdigit() but not to int().
        key.append((0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part))
    return key


_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    # bool is an int subclass in Python, but JSON Schema's true is neither an integer nor a number.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: finite_number(v) and not isinstance(v, bool),
}
_QUICK = {"type", "properties", "required", "additionalProperties", "items", "anyOf", "enum",
          "$ref", "minimum", "exclusiveMinimum", "maximum", "minItems", "maxLength",
          "minProperties", "uniqueItems", "pattern", "default", "description", "title", "format",
          "$defs", "$schema", "$id", "allOf"}


def quick_valid(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    """A fast yes for the common case: True only if ``value`` surely satisfies ``schema``.

    It knows the keywords routines use; anything else (or any doubt) returns False and the
    caller asks jsonschema, which also words the messages. Valid routines never import it.
    """
    # A keyword this does not know might forbid the value: only jsonschema can say yes then.
    if not schema.keys() <= _QUICK:
        return False
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {})
        if not quick_valid(value, target, root):
            return False
    # Loops, not any()/all() over generators: this runs for every task of a routine, twice.
    kind = schema.get("type")
    if kind is not None:
        for k in kind if isinstance(kind, list) else (kind,):
            if _is(value, k):
                break
        else:
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "anyOf" in schema:
        for sub in schema["anyOf"]:
            if quick_valid(value, sub, root):
                break
        else:
            return False
    if "allOf" in schema:
        for sub in schema["allOf"]:
            if not quick_valid(value, sub, root):
                return False
    if isinstance(value, dict):
        return _quick_object(value, schema, root)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or (
            # repr, because the items may be dicts or lists, which a set cannot hold.
            schema.get("uniqueItems") and len(set(map(repr, value))) < len(value)
        ):
            return False
        items = schema.get("items")
        if items is not None:
            valid_names: set[str] = set()  # a list of task names repeats them: each checked once
            for item in value:
                if item.__class__ is str:
                    if item in valid_names:
                        continue
                    valid_names.add(item)
                if not quick_valid(item, items, root):
                    return False
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        return False
    if isinstance(value, str) and "pattern" in schema:
        import re

        return re.search(schema["pattern"], value) is not None
    return True


def _is(value: Any, kind: str) -> bool:
    check = _TYPES.get(kind)
    if check is None:
        return False
    return isinstance(value, check) if isinstance(check, type) else check(value)


def _quick_object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> bool:
    for key in schema.get("required", ()):
        if key not in value:
            return False
    if len(value) < schema.get("minProperties", 0):
        return False
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            if not quick_valid(item, properties[key], root):
                return False
        elif extra is False or (isinstance(extra, dict) and not quick_valid(item, extra, root)):
            return False
    return True


def _freeze(schema: dict[str, Any]) -> str:
    import json

    # A schema is a dict, which lru_cache cannot key on; its canonical JSON can, so each distinct
    # schema (the routine's, each executor's params, each task's args) compiles one validator.
    return json.dumps(schema, sort_keys=True)


@lru_cache(maxsize=256)
def _validator(frozen: str) -> Any:
    import json

    from jsonschema import Draft202012Validator, validators

    # NaN and the infinities pass every minimum and maximum (each comparison is false): no numbers
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "number", lambda _, value: finite_number(value) and not isinstance(value, bool))
    # types-jsonschema leaves validators.extend unannotated
    extended = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, type_checker=checker
    )
    return extended(json.loads(frozen))


def _causes(error: Any) -> list[Any]:
    """For anyOf/oneOf, every error of the branch whose type fits the value
    (else the best guess)."""
    if not error.context:
        return [error]
    from jsonschema.exceptions import best_match

    branches: dict[Any, list[Any]] = {}
    # Sub-errors grouped by the anyOf/oneOf branch they come from. A branch whose type fits the
    # value (a task given as an object, not as a name) is the one the user meant: its errors are the
    # useful ones, not "expected a string" from the branch that does not fit.
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    fitting = [
        errs
        for errs in branches.values()
        if not any(e.validator == "type" and not e.relative_path for e in errs)
    ]
    chosen = fitting[0] if len(fitting) == 1 else [best_match(error.context)]
    return [cause for sub in chosen for cause in _causes(sub)]


def _describe(error: Any, prefix: str, what: str) -> list[tuple[str, str]]:
    path = json_path(error.absolute_path, prefix)
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "required":
        # jsonschema names the missing key only in its message ("'task' is a required property").
        missing = error.message.split("'")[1]
        return [(json_path([missing], path), f"missing required {what} {missing!r}; add it")]
    if kind == "additionalProperties":  # every unknown key, not only the first
        allowed = sorted(schema.get("properties", {}))
        return [(json_path([extra], path), f"unknown {what} {extra!r}; {_hint(extra, allowed)}")
                for extra in sorted(set(value) - set(allowed), key=str)]
    # The schema's description says the rule in words; the regex itself would not help the user.
    if kind in ("pattern", "maxLength") and schema.get("description"):
        shown = repr(value) if len(value) <= 40 else repr(value[:40])[:-1] + "...'"
        return [(path, f"{shown} is not allowed. {schema['description']}")]
    if kind == "type" and _wants_number(schema["type"]) and isinstance(value, float) \
            and not finite_number(value):
        return [(path, f"{value} is not a number a routine may give; give a finite number")]
    if kind == "type":
        expected: str | list[str] = schema["type"]
        names = " or ".join(
            _TYPE_NAMES.get(t, t) for t in (expected if isinstance(expected, list) else [expected])
        )
        return [(path, f"expected {names}, got {_show(value)}")]
    if kind == "enum":
        return [
            (path, f"must be one of {', '.join(map(repr, schema['enum']))}, got {_show(value)}")
        ]
    return [(path, error.message)]


def _hint(extra: str, allowed: list[str]) -> str:
    import difflib  # only a mistake pays for it

    close = difflib.get_close_matches(str(extra), allowed, n=1)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed) or 'none'}"


SHOWN_CHARS = 40  # of a wrong value's repr in a message (the loader masks secrets cut this short)


def _wants_number(expected: str | list[str]) -> bool:
    return bool({"number", "integer"} & set([expected] if isinstance(expected, str) else expected))


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:SHOWN_CHARS]}"
