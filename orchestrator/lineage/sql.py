"""Which tables a SQL text reads and writes, as far as a small parser can know for sure.

Conservative by design: ``FROM``/``JOIN`` (and ``USING`` of ``MERGE``) name inputs; ``INSERT
INTO``/``OVERWRITE``, ``CREATE TABLE``/``VIEW``, ``MERGE INTO``, ``UPDATE``, ``DELETE FROM``
and ``COPY table FROM`` name outputs; ``COPY ... FROM 's3://...'`` reads and ``UNLOAD ('...') TO
's3://...'`` writes a location (the unloaded query is parsed too). Common table expressions are
not tables; a subquery or a table function after ``FROM`` names nothing. Anything else adds
nothing rather than a guess.
"""
from __future__ import annotations

import dataclasses
import re

_PART = r'(?:"(?:[^"]|"")+"|`[^`]+`|[A-Za-z_][\w$]*)'  # an identifier, quoted or not
# Comments and strings are matched before names, so a FROM inside a string literal or a comment is
# never read as a keyword; 'other' takes any remaining character so nothing is skipped unseen.
_TOKEN = re.compile(rf"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>{_PART}(?:\s*\.\s*{_PART})*)
  | (?P<punct>[(),;])
  | (?P<other>\S)
""", re.X | re.S)
_TABLE_WORDS = {"table", "view", "materialized"}
# Words that may stand between CREATE/INSERT/FROM and the table's name without being one.
_SKIP = {"or", "replace", "external", "temp", "temporary", "if", "not", "exists", "local",
         "global", "overwrite", "only", "lateral"}


@dataclasses.dataclass
class SqlTables:
    """Names as written (unquoted identifiers lower-cased), and ``s3://`` locations."""

    inputs: list[str] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    input_locations: list[str] = dataclasses.field(default_factory=list)
    output_locations: list[str] = dataclasses.field(default_factory=list)


def tables(sql: str) -> SqlTables:
    """The tables and locations ``sql`` (one or several statements) reads and writes."""
    found = SqlTables()
    tokens = _tokens(sql)
    ctes = _cte_names(tokens)
    _scan(tokens, ctes, found)
    # A table the SQL both reads and writes (INSERT INTO t SELECT ... FROM t) is reported once, as
    # an output. dict.fromkeys de-duplicates and keeps the order of first mention.
    found.inputs = [n for n in dict.fromkeys(found.inputs) if n not in found.outputs]
    found.outputs = list(dict.fromkeys(found.outputs))
    return found


def _tokens(sql: str) -> list[tuple[str, str]]:
    out = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        if kind != "comment":
            out.append((kind, match.group(kind)))
    return out


def _word(token: tuple[str, str]) -> str:
    return token[1].lower() if token[0] == "name" else ""


def _name(text: str) -> str:
    """``db."My Table"`` -> ``db.My Table``; unquoted parts lower-cased (SQL folds them)."""
    parts = re.findall(r'"((?:[^"]|"")+)"|`([^`]+)`|([A-Za-z_][\w$]*)', text)
    return ".".join(q.replace('""', '"') if q else b if b else w.lower() for q, b, w in parts)


def _literal(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _cte_names(tokens: list[tuple[str, str]]) -> set[str]:
    names = set()
    for i, token in enumerate(tokens[:-1]):
        if _word(token) == "as" and tokens[i + 1][1] == "(" and i and tokens[i - 1][0] == "name":
            before = tokens[i - 2] if i >= 2 else ("", "")
            # 'CREATE TABLE t AS (SELECT ...)' has the same 'name AS (' shape: only after WITH,
            # RECURSIVE or a comma of the WITH list is the name a common table expression.
            if before[1] in (",", ) or _word(before) in ("with", "recursive"):
                names.add(_name(tokens[i - 1][1]))
    return names


# Words that open a parenthesis without calling a function: what follows them is a subquery or a
# list, where FROM does name tables.
_NOT_CALLS = {"in", "exists", "as", "from", "join", "any", "all", "some", "values", "using", "on",
              "where", "and", "or", "not", "select", "then", "else", "when", "union", "to"}


def _scan(tokens: list[tuple[str, str]], ctes: set[str], found: SqlTables) -> None:
    calls: list[bool] = []  # open parentheses: True for a function call's (EXTRACT(x FROM y))
    i = 0
    while i < len(tokens):
        word = _word(tokens[i])
        if tokens[i][1] == "(":
            before = tokens[i - 1] if i else ("", "")
            calls.append(before[0] == "name" and _word(before) not in _NOT_CALLS)
        elif tokens[i][1] == ")" and calls:
            calls.pop()
        # Inside a function call FROM is syntax, not a table: EXTRACT(YEAR FROM d), SUBSTRING(s
        # FROM 2), TRIM(BOTH FROM s). Only FROM takes a comma-separated list; JOIN and USING take
        # one table.
        if word in ("from", "join", "using") and not (calls and calls[-1]):
            target = found.outputs if _deleting(tokens, i) else found.inputs
            i = _table_list(tokens, i + 1, ctes, target, many=word == "from")
            continue
        if word in ("into", "update") or (word == "table" and _after_create(tokens, i)):
            i = _one_table(tokens, i + 1, found.outputs)
            continue
        if word == "view" and _after_create(tokens, i):
            i = _one_table(tokens, i + 1, found.outputs)
            continue
        if word == "copy":
            i = _copy(tokens, i + 1, found)
            continue
        if word == "unload":
            i = _unload(tokens, i + 1, ctes, found)
            continue
        i += 1


def _deleting(tokens: list[tuple[str, str]], i: int) -> bool:
    # DELETE FROM t changes t: an output, though it comes after FROM.
    return _word(tokens[i]) == "from" and i > 0 and _word(tokens[i - 1]) == "delete"


def _after_create(tokens: list[tuple[str, str]], i: int) -> bool:
    j = i - 1
    while j >= 0 and _word(tokens[j]) in _SKIP | _TABLE_WORDS:
        j -= 1
    return j >= 0 and _word(tokens[j]) == "create"


def _table_list(tokens: list[tuple[str, str]], i: int, ctes: set[str], target: list[str],
                many: bool) -> int:
    """Names in ``FROM a x, b AS y``; a subquery or table function stops the list."""
    while i < len(tokens):
        while i < len(tokens) and _word(tokens[i]) in _SKIP:
            i += 1
        if i >= len(tokens) or tokens[i][0] != "name":
            return i
        if i + 1 < len(tokens) and tokens[i + 1][1] == "(":
            return i + 1  # a table function: UNNEST(...), TABLE(...)
        name = _name(tokens[i][1])
        if name not in ctes:
            target.append(name)
        i += 1
        if i < len(tokens) and _word(tokens[i]) == "as":
            i += 1
        # A name right after the table is its alias, unless it is the keyword that goes on with the
        # query.
        if i < len(tokens) and tokens[i][0] == "name" and not _keyword(tokens[i]):
            i += 1  # the alias
        if not (many and i < len(tokens) and tokens[i][1] == ","):
            return i
        i += 1
    return i


# Words that can follow a table's name and are not its alias.
_KEYWORDS = {"where", "join", "inner", "left", "right", "full", "outer", "cross", "on", "group",
             "order", "having", "limit", "union", "except", "intersect", "set", "values",
             "select", "using", "when", "natural", "window", "qualify", "offset", "fetch",
             "with", "returning", "from", "partition", "tablesample", "as"}


def _keyword(token: tuple[str, str]) -> bool:
    return _word(token) in _KEYWORDS


def _one_table(tokens: list[tuple[str, str]], i: int, target: list[str]) -> int:
    while i < len(tokens) and _word(tokens[i]) in _SKIP | _TABLE_WORDS:
        i += 1
    if i < len(tokens) and tokens[i][0] == "name" and not _keyword(tokens[i]):
        target.append(_name(tokens[i][1]))
        return i + 1
    return i


def _copy(tokens: list[tuple[str, str]], i: int, found: SqlTables) -> int:
    """``COPY table [(cols)] FROM 's3://...'`` (Redshift)."""
    # 'COPY INTO' is another dialect's statement with another meaning: left alone.
    if i >= len(tokens) or tokens[i][0] != "name" or _word(tokens[i]) == "into":
        return i
    table = _name(tokens[i][1])
    j = i + 1
    if j < len(tokens) and tokens[j][1] == "(":
        while j < len(tokens) and tokens[j][1] != ")":
            j += 1
        j += 1
    # Only a quoted source is Redshift's COPY from a location; 'COPY t FROM STDIN' (PostgreSQL)
    # names nothing that can be known, so it adds nothing.
    if j + 1 < len(tokens) and _word(tokens[j]) == "from" and tokens[j + 1][0] == "string":
        found.outputs.append(table)
        location = _literal(tokens[j + 1][1])
        if location.startswith("s3://"):
            found.input_locations.append(location)
        return j + 2
    return j


def _unload(tokens: list[tuple[str, str]], i: int, ctes: set[str], found: SqlTables) -> int:
    """``UNLOAD ('select ...') TO 's3://...'`` (Redshift): the query's tables are read."""
    if i + 3 < len(tokens) and tokens[i][1] == "(" and tokens[i + 1][0] == "string" \
            and tokens[i + 2][1] == ")" and _word(tokens[i + 3]) == "to":
        # The unloaded query is a string literal: parsed as SQL of its own, its tables are what is
        # read.
        inner = tables(_literal(tokens[i + 1][1]))
        found.inputs.extend(inner.inputs)
        if i + 4 < len(tokens) and tokens[i + 4][0] == "string":
            location = _literal(tokens[i + 4][1])
            if location.startswith("s3://"):
                found.output_locations.append(location)
        return i + 5
    return i
