"""``${params.X}``, ``${run.id}``, ``${run.date}`` in a compiled state: paths into the state's
input.

A routine resolves these when it is loaded; a state machine resolves them per execution. So the
compiler keeps the routine's raw text where it held such a reference, and here turns each string
into a JSONPath (a whole-value reference keeps its type) or a ``States.Format`` call.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..routine.substitution import _REF

RUNTIME_SCOPES = ("params", "run")
# Where the compiled machine's first states put the run's id and date in every state's input.
RUN_PATHS = {"id": "$.run.id", "date": "$.run.date"}
# Param names a JSONPath can address; anything else is refused rather than built into a path.
_NAME = re.compile(r"^[A-Za-z_][\w-]*$")


class ReferenceProblem(ValueError):
    """A reference a state machine cannot resolve at run time."""


def has_runtime_reference(text: str) -> bool:
    # group(1) is None for '$${', the escape of a literal '${'.
    return any(m.group(1) is not None and m.group(1).strip().split(".")[0] in RUNTIME_SCOPES
               for m in _REF.finditer(text))


def referenced_params(text: str) -> set[str]:
    return {m.group(1).strip().partition(".")[2] for m in _REF.finditer(text)
            if m.group(1) is not None and m.group(1).strip().startswith("params.")}


def path_of(ref: str) -> str:
    scope, _, name = ref.strip().partition(".")
    if scope == "run" and name in RUN_PATHS:
        return RUN_PATHS[name]
    if scope == "params" and _NAME.match(name):
        # Dot notation would read 'a-b' as a subtraction: such a name needs the bracket form.
        return f"$.params['{name}']" if "-" in name else f"$.params.{name}"
    raise ReferenceProblem(f"${{{ref}}} cannot be resolved by a state machine")


def _escaped(text: str) -> str:
    """Literal text inside an intrinsic function's string:
    ``'``, ``{``, ``}`` and ``\\`` escaped."""
    return re.sub(r"([\\'{}])", r"\\\1", text)


def expression(text: str) -> str | None:
    """The ``.$`` value for ``text``, or None when it holds no run-time reference."""
    if not has_runtime_reference(text):
        return None
    # A value that is one reference and nothing else becomes a plain path, which keeps the param's
    # type (a number stays a number); States.Format always makes a string.
    whole = _REF.fullmatch(text)
    if whole and whole.group(1) is not None:
        return path_of(whole.group(1))
    template: list[str] = []
    paths: list[str] = []
    position = 0
    for match in _REF.finditer(text):
        template.append(_escaped(text[position:match.start()]))
        position = match.end()
        if match.group(1) is None:  # `$${` is a literal `${`
            template.append(_escaped("${"))
            continue
        template.append("{}")
        paths.append(path_of(match.group(1)))
    template.append(_escaped(text[position:]))
    return f"States.Format('{''.join(template)}', {', '.join(paths)})"


def array_expression(items: list[Any]) -> str | None:
    """``States.Array(...)`` for a list of strings some of which hold run-time references."""
    if not any(isinstance(v, str) and has_runtime_reference(v) for v in items):
        return None
    if not all(isinstance(v, str) for v in items):
        raise ReferenceProblem(
            "a ${params.X} or ${run.X} in a list of other than strings cannot be "
            "resolved by a state machine; use it in a single value"
        )
    parts = [expression(v) or f"'{_escaped(v)}'" for v in items]
    return f"States.Array({', '.join(parts)})"


def resolve_fields(value: Any) -> Any:
    """A copy of a state's ``Parameters`` with each referencing string as a ``key.$`` field."""
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            # A key already ending in '.$' is the executor's own path or intrinsic: left alone.
            if isinstance(item, str) and not key.endswith(".$") and (found := expression(item)):
                result[f"{key}.$"] = found
            elif isinstance(item, list) and (found := array_expression(item)):
                result[f"{key}.$"] = found
            else:
                result[key] = resolve_fields(item)
        return result
    if isinstance(value, list):
        # A list nested deeper than a field has no key of its own to become a 'key.$' field.
        if any(isinstance(v, str) and has_runtime_reference(v) for v in value):
            raise ReferenceProblem(
                "a ${params.X} or ${run.X} in a list cannot be resolved here by a "
                "state machine; use it in a single value"
            )
        return [resolve_fields(v) for v in value]
    return value


# JSONata (a state with ``"QueryLanguage": "JSONata"``) can do what JSONPath's intrinsics cannot:
# replace characters, so a value from the execution's input is escaped by Step Functions itself.
JSONATA_RUN = {"id": "$states.input.run.id", "date": "$states.input.run.date"}


def jsonata_path(ref: str) -> str:
    scope, _, name = ref.strip().partition(".")
    if scope == "run" and name in JSONATA_RUN:
        return JSONATA_RUN[name]
    if scope == "params" and _NAME.match(name):
        # Backticks quote any name; $string because a param may come in as a number, and the
        # escaping functions ($replace) take strings only.
        return f"$string($states.input.params.`{name}`)"
    raise ReferenceProblem(f"${{{ref}}} cannot be resolved by a state machine")


def jsonata_string(text: str) -> str:
    """A JSONata expression of ``text`` with its ``${params.X}``/``${run.X}`` taken from the state's
    input (literal parts as JSON string literals, which JSONata reads alike)."""
    parts: list[str] = []
    position = 0
    for match in _REF.finditer(text):
        if match.start() > position:
            parts.append(json.dumps(text[position:match.start()]))
        position = match.end()
        parts.append(json.dumps("${") if match.group(1) is None else jsonata_path(match.group(1)))
    # An empty text still needs an expression: the empty string literal.
    if position < len(text) or not parts:
        parts.append(json.dumps(text[position:]))
    return " & ".join(parts)


def jsonata_redshift_literal(expression: str) -> str:
    """The JSONata of ``tablespec.redshift_literal``: backslashes and quotes doubled, quoted."""
    doubled = f'$replace($replace({expression}, "\\\\", "\\\\\\\\"), "\'", "\'\'")'
    return f'"\'" & {doubled} & "\'"'
