"""Schema drift: columns added, removed or retyped since the previous extraction (or versus an
expected column list given in the routine)."""
from __future__ import annotations

from typing import Any

from .model import Catalog

Columns = dict[tuple[str, str], str | None]  # (table, column) -> type, None when not stated


def current_columns(catalog: Catalog) -> Columns:
    return {(t.name, c.name): c.data_type for t in catalog.tables for c in t.columns}


def expected_columns(expected: dict[str, list[Any]]) -> Columns:
    """``{"main.orders": ["id", {"name": "total", "type": "numeric"}]}`` → columns."""
    found: Columns = {}
    for table, columns in expected.items():
        for column in columns:
            if isinstance(column, str):
                found[(table, column)] = None
            else:
                found[(table, column["name"])] = column.get("type")
    return found


def expected_problems(expected: Any) -> list[tuple[str, str]]:
    """Shape errors in an ``expected`` argument, as (path, message)."""
    if not isinstance(expected, dict):
        return [("expected", "must map 'schema.table' to a list of column names or {name, type}")]
    problems = []
    for table, columns in expected.items():
        if not isinstance(columns, list):
            problems.append((f"expected.{table}", "must be a list of columns"))
            continue
        for i, column in enumerate(columns):
            ok = isinstance(column, str) or (
                isinstance(column, dict)
                and isinstance(column.get("name"), str)
                and set(column) <= {"name", "type"}
            )
            if not ok:
                problems.append(
                    (f"expected.{table}[{i}]", "a column is a name or {name: ..., type: ...}")
                )
    return problems


def compare(
    before: Columns, after: Columns, tables: set[str] | None = None
) -> list[dict[str, Any]]:
    """Changes from ``before`` to ``after``; with ``tables``, only those tables are compared."""
    def keep(key: tuple[str, str]) -> bool:
        return tables is None or key[0] in tables

    changes = []
    for key in sorted(k for k in after.keys() - before.keys() if keep(k)):
        changes.append(_change(key, "added", None, after[key]))
    for key in sorted(k for k in before.keys() - after.keys() if keep(k)):
        changes.append(_change(key, "removed", before[key], None))
    for key in sorted(k for k in before.keys() & after.keys() if keep(k)):
        old, new = before[key], after[key]
        # A type not stated (an expected column given by name alone) matches any type.
        if old is not None and new is not None and _norm(old) != _norm(new):
            changes.append(_change(key, "retyped", old, new))
    return changes


def _change(key: tuple[str, str], change: str, old: str | None, new: str | None) -> dict[str, Any]:
    return {
        "table_name": key[0],
        "column_name": key[1],
        "change": change,
        "old_type": old,
        "new_type": new,
    }


def _norm(kind: str) -> str:
    # Only case and spacing are ignored: "VARCHAR(10)" is "varchar(10)", but "varchar(20)" is not.
    return " ".join(kind.lower().split())


def describe(changes: list[dict[str, Any]], limit: int = 10) -> str:
    parts = []
    for c in changes[:limit]:
        where = f"{c['table_name']}.{c['column_name']}"
        parts.append(f"{where} {c['change']}" + (f" {c['old_type']} -> {c['new_type']}"
                                                  if c["change"] == "retyped" else ""))
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(parts) + more
