"""The routine schema with every registered executor's params, for editors (``$schema``)."""
from __future__ import annotations

import copy
from typing import Any

from .load import routine_schema
from ..registry import Registry


def full_schema(registry: Registry) -> dict[str, Any]:
    schema = copy.deepcopy(routine_schema())
    defs = schema["$defs"]
    rules = []
    by_class: dict[str, Any] = {}
    for info in registry.executors():
        key = f"params_{info.name}"
        defs[key] = {**info.params_schema, "description": (info.cls.__doc__ or info.class_name).strip().splitlines()[0]}
        ref = {"$ref": f"#/$defs/{key}"}
        rules.append({"if": {"properties": {"executor": {"enum": [info.name, info.class_name]}}, "required": ["executor"]},
                      "then": {"properties": {"params": ref}}})
        for alias in {info.name, info.class_name}:
            by_class[alias] = {"allOf": [{"$ref": "#/$defs/dict_executor"}, {"properties": {"params": ref}}]}
    defs["list_executor"]["allOf"] = rules
    dict_form = schema["properties"]["executors"]["anyOf"][1]
    dict_form["properties"] = by_class
    return schema
