"""What the staging helpers need to know of a step, as a value: its params.

The executor builds one per task; helpers take it instead of the executor itself, so they read
no private field and cannot change the executor's state behind its back.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class StagingSettings:
    """The step's params as the helpers use them (locations as strings, defaults applied)."""

    parent_directory: str
    dump_directory: str
    archive_or_delete: str
    archive_directory: str
    pattern: str
    transform: str | None = None
    transform_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    py_exec_path: str | None = None
    py_exec_args: Mapping[str, Any] | None = None  # None: the seed calls only test(), not main()

