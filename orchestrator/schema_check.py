"""JSON Schema validation that speaks the user's language: a JSON path and a fix per problem."""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any, Iterable

_TYPE_NAMES = {
    "object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false", "null": "null",
}


def json_path(parts: Iterable[Any], prefix: str = "") -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def schema_problems(instance: Any, schema: dict[str, Any], prefix: str = "", what: str = "property") -> list[tuple[str, str]]:
    """Every violation of ``schema`` as ``(json path, message)``, most specific cause first."""
    validator = _validator(_freeze(schema))
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        error = _most_specific(error)
        problems.append(_describe(error, prefix, what))
    return problems


def _freeze(schema: dict[str, Any]) -> str:
    import json

    return json.dumps(schema, sort_keys=True)


@lru_cache(maxsize=256)
def _validator(frozen: str) -> Any:
    import json

    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(frozen))


def _most_specific(error: Any) -> Any:
    """For oneOf/anyOf, descend into the branch that matches the value's type best."""
    from jsonschema.exceptions import best_match

    while error.context:
        fitting = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        deeper = best_match(fitting or error.context)
        if deeper is None:
            break
        error = deeper
    return error


def _describe(error: Any, prefix: str, what: str) -> tuple[str, str]:
    path = json_path(error.absolute_path, prefix)
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "required":
        missing = error.message.split("'")[1]
        return json_path([missing], path), f"missing required {what} {missing!r}; add it"
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = sorted(set(value) - set(allowed))
        extra = extras[0] if extras else "?"
        close = difflib.get_close_matches(extra, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed) or 'none'}"
        return json_path([extra], path), f"unknown {what} {extra!r}; {hint}"
    if kind == "type":
        expected = schema["type"]
        names = " or ".join(_TYPE_NAMES.get(t, t) for t in (expected if isinstance(expected, list) else [expected]))
        return path, f"expected {names}, got {_show(value)}"
    if kind == "enum":
        return path, f"must be one of {', '.join(map(repr, schema['enum']))}, got {_show(value)}"
    return path, error.message


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"
