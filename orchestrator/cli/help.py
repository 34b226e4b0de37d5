"""``orchestrate help EXECUTOR[.TASK]``: params, tasks and arguments, read from the signatures.

Executors declare params and args once, in their constructor's and methods' signatures
(types, defaults, ``Annotated`` descriptions); this module only lays that out for a terminal.
"""
from __future__ import annotations

import json
import textwrap
from typing import Any

from ..registry import ExecutorInfo
from ..routine.introspect import summary, task_schemas

WIDTH = 80


def type_label(schema: dict[str, Any]) -> str:
    """A short, readable type: ``string``, ``location``, ``integer | null``, ``one of: a, b``."""
    if "enum" in schema:
        return "one of: " + ", ".join(map(str, schema["enum"]))
    if "anyOf" in schema:
        # Options that read the same (list and tuple are both "array") are named once, in order.
        return " | ".join(dict.fromkeys(type_label(option) for option in schema["anyOf"]))
    # The format first: a location is a string, but "location" tells the user what to give.
    kind = schema.get("format") or schema.get("type") or "any"
    if kind == "array" and "items" in schema:
        return f"list of {type_label(schema['items'])}"
    return {"object": "mapping", "code": "code location"}.get(kind, kind)


def _fields(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, spec in schema.get("properties", {}).items():
        if name in required:
            when = "required"
        elif "default" in spec:
            # As JSON (true, null, "text"), the way a routine writes it, not Python's True and None.
            when = f"default {json.dumps(spec['default'])}"
        else:
            when = "optional"
        lines.append(f"  {name}  ({type_label(spec)}; {when})")
        if spec.get("description"):
            lines.extend(textwrap.wrap(spec["description"], WIDTH, initial_indent=" " * 6,
                                       subsequent_indent=" " * 6))
    # Set only for a signature with **kwargs: anything else given goes through to the function.
    if schema.get("additionalProperties"):
        lines.append("  ...  (any other keyword arguments are passed through)")
    return lines or ["  (none)"]


def describe_executor(info: ExecutorInfo) -> str:
    tasks = task_schemas(info.cls)
    lines = [f"{info.name} ({info.class_name}, from {info.origin})"]
    if summary(info.cls):
        lines += textwrap.wrap(summary(info.cls), WIDTH)
    lines += ["", "params:", *_fields(info.params_schema), "", "tasks:"]
    for name, schema in tasks.items():
        lines.append(f"  {name}")
        if schema.get("description"):
            lines += textwrap.wrap(
                schema["description"], WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    lines += ["", f"Each task's arguments: orchestrate help {info.name}.TASK"]
    return "\n".join(lines)


def describe_task(info: ExecutorInfo, task: str) -> str:
    schema = task_schemas(info.cls)[task]
    lines = [f"{info.name}.{task}"]
    if schema.get("description"):
        lines += textwrap.wrap(schema["description"], WIDTH)
    lines += [
        "",
        "args:",
        *_fields(schema),
        "",
        "In a routine:  tasks: [{task: %s, args: {...}, retries: N, timeout: SECONDS}]" % task,
    ]
    return "\n".join(lines)
