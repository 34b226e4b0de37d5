"""The routine schema with every registered executor's params, for editors (``$schema``)."""
from __future__ import annotations

import copy
from typing import Any

from ..registry import ExecutorInfo, Registry
from .introspect import summary, task_schemas
from .load import routine_schema


def full_schema(registry: Registry) -> dict[str, Any]:
    """The routine schema with, for each executor, its params and each task's args, so an
    editor completes and checks both (``orchestrate schema > routine.schema.json``)."""
    # routine_schema() is cached and validates every routine loaded in this process: it is filled in
    # on a copy, never in place.
    schema = copy.deepcopy(routine_schema())
    defs = schema["$defs"]
    rules = []
    by_class: dict[str, Any] = {}
    for info in registry.executors():
        key = f"params_{info.name}"
        defs[key] = {**info.params_schema, "description": summary(info.cls) or info.class_name}
        defs[f"tasks_{info.name}"] = _tasks_schema(info)
        step = {
            "params": {"$ref": f"#/$defs/{key}"},
            "tasks": {"$ref": f"#/$defs/tasks_{info.name}"},
        }
        # One if/then per executor, all under allOf: an entry is held to the schema of the executor
        # it names (by short or class name), and the rules for other executors hold vacuously.
        rules.append(
            {
                "if": {
                    "properties": {"executor": {"enum": [info.name, info.class_name]}},
                    "required": ["executor"],
                },
                "then": {"properties": step},
            }
        )
        for alias in dict.fromkeys((info.name, info.class_name)):
            by_class[alias] = {"allOf": [{"$ref": "#/$defs/dict_executor"}, {"properties": step}]}
    defs["list_executor"]["allOf"] = rules
    # The seed's dict form: each key is an executor's name, so it gets that executor's schema
    # directly.
    dict_form = schema["properties"]["executors"]["anyOf"][1]
    dict_form["properties"] = by_class
    return schema


def _tasks_schema(info: ExecutorInfo) -> dict[str, Any]:
    """A step's ``tasks`` for one executor: its task names, and per task the schema of ``args``."""
    per_task = task_schemas(info.cls)
    names = list(per_task)
    call = {
        "type": "object",
        "required": ["task"],
        "properties": {"task": {"enum": names}},
        "allOf": [
            {
                "if": {"properties": {"task": {"const": name}}},
                "then": {"properties": {"args": args}, "description": args.get("description", "")},
            }
            for name, args in per_task.items()
        ],
    }
    # A task is given as its bare name or as an object with args; editors complete both.
    return {"type": "array", "items": {"anyOf": [{"enum": names}, call]}}
