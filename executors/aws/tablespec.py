"""Declarative table specs shared by the Athena, Glue and Redshift executors.

A spec is plain data from the routine (names, column types, format, location). Everything
here is checked at validation time and then rendered by code, so no routine text is ever
pasted into DDL unchecked: identifiers must match a strict pattern, types must parse, and
string literals are escaped.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Iterator, Literal

Problem = tuple[str, str]
Dialect = Literal["hive", "redshift"]

# 127 characters is Redshift's identifier limit (Glue and Athena allow 255): the stricter one
# holds for every engine a spec may go to.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,126}")
"""Matched with ``fullmatch``: ``$`` would also accept a trailing newline."""
# Bucket naming rules: 3-63 lower-case letters, digits, dots and hyphens, starting and ending
# with a letter or digit. S3 does not restrict the key prefix, and it is escaped where used.
S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?")
# aws[-a-z]* takes the aws-cn and aws-us-gov partitions too. re.ASCII keeps \w from matching
# letters IAM names cannot hold: the role goes into COPY and UNLOAD statements.
IAM_ROLE_ARN = re.compile(r"arn:aws[-a-z]*:iam::\d{12}:role/[\w+=,.@/-]+", re.ASCII)

HIVE_PRIMITIVES = frozenset({
    "boolean", "tinyint", "smallint", "int", "integer", "bigint", "float", "double", "string",
    "binary", "date", "timestamp",
})
# (least, most) sizes in parentheses: decimal takes none (Hive's default precision), (p) or
# (p, s); varchar and char need their length.
HIVE_SIZED = {"decimal": (0, 2), "varchar": (1, 1), "char": (1, 1)}

REDSHIFT_PLAIN = frozenset(
    {
        "smallint",
        "int2",
        "integer",
        "int",
        "int4",
        "bigint",
        "int8",
        "real",
        "float4",
        "float8",
        "float",
        "double precision",
        "boolean",
        "bool",
        "text",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "timestamp without time zone",
        "timestamp with time zone",
        "time without time zone",
        "time with time zone",
        "geometry",
        "geography",
        "hllsketch",
        "super",
    }
)
# Sizes may be left out in Redshift, which then uses its default (varchar(256), char(1),
# decimal(18, 0)).
REDSHIFT_SIZED = {
    "decimal": (0, 2),
    "numeric": (0, 2),
    "char": (0, 1),
    "character": (0, 1),
    "nchar": (0, 1),
    "bpchar": (0, 1),
    "varchar": (0, 1),
    "character varying": (0, 1),
    "nvarchar": (0, 1),
    "varbyte": (0, 1),
    "varbinary": (0, 1),
}

FORMATS: dict[str, dict[str, str]] = {
    "csv": {
        "input": "org.apache.hadoop.mapred.TextInputFormat",
        "output": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        # LazySimpleSerDe keeps typed columns but knows no quoting: a field with an embedded comma
        # needs a serde_properties override or another format.
        "serde": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
    },
    "json": {
        "input": "org.apache.hadoop.mapred.TextInputFormat",
        "output": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        "serde": "org.openx.data.jsonserde.JsonSerDe",
    },
    "parquet": {
        "input": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "output": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "serde": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    },
}
DEFAULT_SERDE_PROPERTIES = {
    "csv": {"field.delim": ",", "serialization.format": ","},
    "json": {},
    "parquet": {},
}


class SpecError(ValueError):
    """A spec that passed validation cannot be rendered (only reachable when
    validation was skipped)."""


def identifier_problem(name: Any) -> str | None:
    """Why ``name`` is not a safe SQL identifier, or None."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        return (
            f"illegal identifier {name!r}: use letters, digits and _ (not starting with a digit), "
            "at most 127 characters"
        )
    return None


def qualified_problem(name: Any) -> str | None:
    """Like :func:`identifier_problem` but allows ``schema.table``."""
    if not isinstance(name, str):
        return identifier_problem(name)
    parts = name.split(".")
    if len(parts) > 2:
        return f"illegal table name {name!r}: at most one '.' (schema.table)"
    return next(filter(None, map(identifier_problem, parts)), None)


def type_problem(text: Any, dialect: Dialect) -> str | None:
    """Why ``text`` is not a column type of ``dialect``, or None."""
    if not isinstance(text, str) or not text.strip():
        return f"column type must be a non-empty string, got {text!r}"
    try:
        if dialect == "hive":
            # Lower case, the form _hive_column and _glue_column render.
            rest = _parse_hive(_tokens(text.lower()))
        else:
            rest = _parse_redshift(text.lower().strip())
    except SpecError as exc:
        return f"unknown column type {text!r}: {exc}"
    if rest:
        return f"unknown column type {text!r}: unexpected {''.join(rest)!r}"
    return None


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z_][a-z0-9_]*|\d+|[<>(),:]|\S", text) if t.strip()]


def _parse_hive(tokens: list[str]) -> list[str]:
    """Consume one Hive type from ``tokens``; return what is left."""
    if not tokens:
        raise SpecError("type expected")
    head, rest = tokens[0], tokens[1:]
    if head in HIVE_PRIMITIVES:
        return rest
    if head in HIVE_SIZED:
        return _sized(head, rest, HIVE_SIZED[head])
    if head == "array":
        return _close(_parse_hive(_open(rest)))
    if head == "map":
        rest = _parse_hive(_open(rest))
        return _close(_parse_hive(_expect(rest, ",")))
    if head == "struct":
        rest = _open(rest)
        while True:
            # Field names are rendered inside struct<...> without quotes, so they must be plain
            # identifiers.
            if not rest or identifier_problem(rest[0]):
                raise SpecError("struct field name expected")
            rest = _parse_hive(_expect(rest[1:], ":"))
            if rest[:1] == [","]:
                rest = rest[1:]
                continue
            return _close(rest)
    raise SpecError(
        f"{head!r} is not a type (known: {', '.join(sorted(HIVE_PRIMITIVES | set(HIVE_SIZED)))}, "
        "array<…>, map<…,…>, struct<…>)"
    )


def _sized(name: str, rest: list[str], bounds: tuple[int, int]) -> list[str]:
    low, high = bounds
    if rest[:1] != ["("]:
        if low:
            raise SpecError(f"{name} needs a size, e.g. {name}(10)")
        return rest
    rest, count = rest[1:], 0
    while rest and rest[0].isdigit():
        rest, count = rest[1:], count + 1
        if rest[:1] != [","]:
            break
        rest = rest[1:]
        if not rest[:1] or not rest[0].isdigit():
            raise SpecError(f"{name}: a size expected after ','")
    if not low <= count <= high or count == 0:
        raise SpecError(f"{name} takes {low or 1}..{high} numeric sizes")
    return _expect(rest, ")")


def _open(rest: list[str]) -> list[str]:
    return _expect(rest, "<")


def _close(rest: list[str]) -> list[str]:
    return _expect(rest, ">")


def _expect(rest: list[str], token: str) -> list[str]:
    if rest[:1] != [token]:
        raise SpecError(f"{token!r} expected")
    return rest[1:]


def _parse_redshift(text: str) -> list[str]:
    if text in REDSHIFT_PLAIN:
        return []
    # The name part may hold spaces ("character varying"); the size is MAX, n or (p, s).
    match = re.fullmatch(r"([a-z ]+?)\s*(\(\s*(max|\d+)\s*(,\s*\d+\s*)?\))?", text)
    if not match:
        raise SpecError("not a Redshift type")
    name, size = match.group(1), match.group(2)
    if name in REDSHIFT_PLAIN and not size:
        return []
    if name not in REDSHIFT_SIZED:
        raise SpecError(f"{name!r} is not a Redshift type")
    if size and match.group(4) and REDSHIFT_SIZED[name][1] < 2:
        raise SpecError(f"{name} takes one size")
    # MAX is a length, not a precision: varchar(max) is valid, decimal(max) and varchar(max, 2)
    # are not.
    if size and match.group(3) == "max" and (match.group(4) or name in ("decimal", "numeric")):
        raise SpecError(f"{name} does not take max here")
    return []


def column_problems(
    columns: Any, dialect: Dialect, path: str = "columns", required: bool = True
) -> Iterator[Problem]:
    """Problems of a ``[{name, type, comment?}]`` list, each with its JSON path."""
    if columns is None and not required:
        return
    if not isinstance(columns, list) or (required and not columns):
        yield path, "must be a non-empty list of {name, type} objects"
        return
    seen: set[str] = set()
    for i, column in enumerate(columns):
        where = f"{path}[{i}]"
        if not isinstance(column, dict):
            yield where, "must be an object with name and type"
            continue
        unknown = set(column) - {"name", "type", "comment"}
        if unknown:
            yield where, f"unknown keys {sorted(unknown)} (allowed: name, type, comment)"
        problem = identifier_problem(column.get("name"))
        if problem:
            yield f"{where}.name", problem
        elif column["name"].lower() in seen:
            # Hive, Glue and Redshift fold unquoted names to lower case, so Id and id are one
            # column.
            yield f"{where}.name", f"duplicate column {column['name']!r}"
        else:
            seen.add(column["name"].lower())
        problem = type_problem(column.get("type"), dialect)
        if problem:
            yield f"{where}.type", problem


def properties_problems(value: Any, path: str) -> Iterator[Problem]:
    if value is None:
        return
    # Scalars only: each value is rendered as a quoted literal of str(v), and a nested object
    # would arrive as its Python repr.
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items()
    ):
        yield path, "must be an object of string keys to scalar values"


def s3_problem(value: Any, what: str = "location") -> str | None:
    if not isinstance(value, str) or not S3_URI.fullmatch(value):
        return f"{what} must be an s3://bucket/prefix/ URI, got {value!r}"
    return None


def iam_role_problem(value: Any, what: str = "iam_role") -> str | None:
    if not isinstance(value, str) or not IAM_ROLE_ARN.fullmatch(value):
        return (
            f"{what} must be an IAM role ARN (arn:aws:iam::123456789012:role/name), got {value!r}"
        )
    return None


def quote_literal(value: Any) -> str:
    """A single-quoted Trino (Athena DML/CTAS) string literal:
    embedded quotes doubled, backslash is literal."""
    return "'" + str(value).replace("'", "''") + "'"


def redshift_literal(value: Any) -> str:
    """A single-quoted Redshift string literal: Redshift reads backslash escapes,
    so backslashes are doubled too."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def hive_literal(value: Any) -> str:
    """A single-quoted Hive DDL literal: Hive reads backslash escapes, not doubled quotes."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def hive_name(name: str) -> str:
    if identifier_problem(name):
        raise SpecError(identifier_problem(name))
    # Backticks let reserved words (date, location, timestamp) serve as column names.
    return f"`{name}`"


def sql_name(name: str) -> str:
    """A double-quoted identifier (Presto/Trino DML, Redshift); ``schema.table`` keeps its dot."""
    problem = qualified_problem(name)
    if problem:
        raise SpecError(problem)
    return ".".join(f'"{part}"' for part in name.split("."))


def hive_qualified(name: str, database: str | None = None) -> str:
    problem = qualified_problem(name)
    if problem:
        raise SpecError(problem)
    # A name with its own schema wins over the executor's database.
    parts = name.split(".") if "." in name else ([database, name] if database else [name])
    return ".".join(hive_name(p) for p in parts)


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """An external table over files in S3, as Athena DDL or a Glue TableInput."""

    name: str
    columns: tuple[dict[str, str], ...]
    location: str
    format: str = "parquet"
    partition_keys: tuple[dict[str, str], ...] = ()
    serde_properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    table_properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    skip_header: bool = False
    comment: str | None = None

    def all_serde_properties(self) -> dict[str, str]:
        merged = {**DEFAULT_SERDE_PROPERTIES[self.format], **self.serde_properties}
        return {k: str(v) for k, v in merged.items()}

    def all_table_properties(self) -> dict[str, str]:
        props = {"classification": self.format, **self.table_properties}
        if self.skip_header:
            props["skip.header.line.count"] = "1"
        return {k: str(v) for k, v in props.items()}

    def athena_ddl(self, database: str | None, if_not_exists: bool = True) -> str:
        fmt = FORMATS[self.format]
        lines = [
            f"CREATE EXTERNAL TABLE {'IF NOT EXISTS ' if if_not_exists else ''}"
            f"{hive_qualified(self.name, database)} ("
        ]
        lines.append(",\n".join(f"  {_hive_column(c)}" for c in self.columns))
        lines.append(")")
        if self.comment:
            lines.append(f"COMMENT {hive_literal(self.comment)}")
        if self.partition_keys:
            lines.append(
                "PARTITIONED BY (" + ", ".join(_hive_column(c) for c in self.partition_keys) + ")"
            )
        lines.append(f"ROW FORMAT SERDE {hive_literal(fmt['serde'])}")
        serde = self.all_serde_properties()
        if serde:
            lines.append(
                "WITH SERDEPROPERTIES ("
                + ", ".join(f"{hive_literal(k)}={hive_literal(v)}" for k, v in serde.items())
                + ")"
            )
        lines.append(
            f"STORED AS INPUTFORMAT {hive_literal(fmt['input'])} "
            f"OUTPUTFORMAT {hive_literal(fmt['output'])}"
        )
        lines.append(f"LOCATION {hive_literal(self.location)}")
        lines.append(
            "TBLPROPERTIES ("
            + ", ".join(
                f"{hive_literal(k)}={hive_literal(v)}"
                for k, v in self.all_table_properties().items()
            )
            + ")"
        )
        return "\n".join(lines)

    def glue_table_input(self) -> dict[str, Any]:
        fmt = FORMATS[self.format]
        table: dict[str, Any] = {
            # CreateTable takes the database as a separate argument; only the table's own name goes
            # here.
            "Name": self.name.split(".")[-1],
            "TableType": "EXTERNAL_TABLE",
            # TableType and the EXTERNAL parameter as Athena's own CREATE EXTERNAL TABLE writes
            # them, so a table made through Glue looks the same to Athena and to Hive.
            "Parameters": {"EXTERNAL": "TRUE", **self.all_table_properties()},
            "PartitionKeys": [_glue_column(c) for c in self.partition_keys],
            "StorageDescriptor": {
                "Columns": [_glue_column(c) for c in self.columns],
                "Location": self.location,
                "InputFormat": fmt["input"],
                "OutputFormat": fmt["output"],
                "SerdeInfo": {
                    "SerializationLibrary": fmt["serde"],
                    "Parameters": self.all_serde_properties(),
                },
            },
        }
        if self.comment:
            table["Description"] = self.comment
        return table


def _hive_column(column: dict[str, str]) -> str:
    text = f"{hive_name(column['name'])} {column['type'].strip().lower()}"
    return text + (f" COMMENT {hive_literal(column['comment'])}" if column.get("comment") else "")


def _glue_column(column: dict[str, str]) -> dict[str, str]:
    # Lower case, as Athena's DDL writes names into the catalog: a table made here and one
    # made from athena_ddl then look the same to every reader.
    out = {"Name": column["name"].lower(), "Type": column["type"].strip().lower()}
    if column.get("comment"):
        out["Comment"] = column["comment"]
    return out


TABLE_ARGS = (
    "table",
    "columns",
    "location",
    "format",
    "partition_keys",
    "serde_properties",
    "table_properties",
    "skip_header",
    "comment",
)


def table_spec_problems(args: dict[str, Any], location_required: bool = True) -> Iterator[Problem]:
    """Validation-time problems of an external-table spec given as task args."""
    problem = qualified_problem(args.get("table"))
    if problem:
        yield "table", problem
    yield from column_problems(args.get("columns"), "hive", "columns")
    yield from column_problems(args.get("partition_keys"), "hive", "partition_keys", required=False)
    names = {
        c.get("name", "").lower()
        for c in args.get("columns") or []
        if isinstance(c, dict) and isinstance(c.get("name"), str)
    }
    for i, key in enumerate(args.get("partition_keys") or []):
        if (
            isinstance(key, dict)
            and isinstance(key.get("name"), str)
            and key["name"].lower() in names
        ):
            yield f"partition_keys[{i}].name", (
                f"partition key {key['name']!r} is also a column; Hive tables need them distinct"
            )
    if location_required or args.get("location") is not None:
        problem = s3_problem(args.get("location"))
        if problem:
            yield "location", problem
    fmt = args.get("format", "parquet")
    if fmt not in FORMATS:
        yield "format", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})"
    yield from properties_problems(args.get("serde_properties"), "serde_properties")
    yield from properties_problems(args.get("table_properties"), "table_properties")


def table_spec(args: dict[str, Any]) -> TableSpec:
    """Build a spec from validated task args; raises :class:`SpecError` if
    validation was skipped."""
    problems = list(table_spec_problems(args))
    if problems:
        raise SpecError("; ".join(f"{p}: {m}" for p, m in problems))
    return TableSpec(
        name=args["table"],
        columns=tuple(args["columns"]),
        location=args["location"],
        format=args.get("format") or "parquet",
        partition_keys=tuple(args.get("partition_keys") or ()),
        serde_properties=dict(args.get("serde_properties") or {}),
        table_properties=dict(args.get("table_properties") or {}),
        skip_header=bool(args.get("skip_header")),
        comment=args.get("comment"),
    )


def partition_problems(partitions: Any, path: str = "partitions") -> Iterable[Problem]:
    """``[{"values": {"dt": "2024-01-01"}, "location": "s3://…"}]`` for ADD PARTITION."""
    if partitions is None:
        return
    if not isinstance(partitions, list) or not partitions:
        yield path, "must be a non-empty list of {values: {key: value}, location?}"
        return
    for i, part in enumerate(partitions):
        where = f"{path}[{i}]"
        values = part.get("values") if isinstance(part, dict) else None
        if not isinstance(values, dict) or not values:
            yield f"{where}.values", "must be a non-empty object of partition key to value"
            continue
        for key in values:
            problem = identifier_problem(key)
            if problem:
                yield f"{where}.values.{key}", problem
        if part.get("location") is not None and s3_problem(part["location"]):
            yield f"{where}.location", s3_problem(part["location"]) or ""


Escapes = Literal["hive", "redshift", "trino"]

_HIVE_DDL = re.compile(
    r"\s*(CREATE\s+EXTERNAL\s+TABLE|ALTER\s+(TABLE|DATABASE|SCHEMA)|MSCK\s|"
    r"DROP\s+(TABLE|DATABASE|SCHEMA)|"
    r"CREATE\s+(DATABASE|SCHEMA)|DESCRIBE\s|DESC\s|SHOW\s)",
    re.I,
)
_CREATE_TABLE = re.compile(r"\s*CREATE\s+TABLE\b", re.I)
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str, dialect: Escapes = "hive") -> list[str]:
    """Split a script on ``;`` outside quotes, identifiers, dollar-quoted bodies and comments;
    empty statements are dropped.

    Inside ``'…'`` a doubled quote is always an escaped quote; a backslash escapes the next
    character in Redshift (``dialect="redshift"``) and in the Hive DDL Athena runs (CREATE EXTERNAL
    TABLE, ALTER, DROP TABLE, MSCK…, with ``dialect="hive"``, the default for Athena), but not in
    its Trino statements (SELECT, INSERT, CTAS…) nor with ``dialect="trino"``. ``$$ … $$`` and
    ``$tag$ … $tag$`` bodies (Redshift procedures and functions) are kept whole.
    """
    statements: list[str] = []
    current: list[str] = []
    # A scanner rather than a regex: quotes, comments and dollar bodies can each contain the
    # others' delimiters, and whichever opens first decides what the rest means.
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            # Backticks (Hive identifiers) never take backslash escapes; quotes depend on the engine
            # that will parse this statement.
            backslash = ch != "`" and _backslash_escapes(dialect, ch, "".join(current))
            end = i + 1
            while end < n:
                # Skip the escaped character, which may be the quote itself.
                if backslash and sql[end] == "\\":
                    end += 2
                    continue
                if sql[end] == ch:
                    # A doubled quote is an escaped quote in every dialect.
                    if end + 1 < n and sql[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql[i:end + 1])
            i = end + 1
        elif ch == "$" and (dollar := _dollar_quote_at(sql, i, current)):
            # An unterminated quote, body or comment runs to the end of the script: one statement
            # the engine rejects with a syntax error, rather than fragments of it run one by one.
            close = sql.find(dollar, i + len(dollar))
            end = n if close < 0 else close + len(dollar)
            current.append(sql[i:end])
            i = end
        elif sql.startswith("--", i):
            # Comments stay in the statement (the engines accept them); only a ';' inside one must
            # not split it.
            end = sql.find("\n", i)
            end = n if end < 0 else end
            current.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            current.append(sql[i:end])
            i = end
        elif ch == ";":
            statements.append("".join(current))
            current, i = [], i + 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    # A trailing ';' or a comment-only tail would otherwise be sent as an empty query, which the
    # engines reject.
    return [s.strip() for s in statements if _has_code(s)]


def _backslash_escapes(dialect: Escapes, quote: str, statement_so_far: str) -> bool:
    if dialect == "redshift":
        return quote == "'"
    if dialect == "trino":
        return False
    # Leading comments would hide the statement's first keyword. Athena sends DDL to Hive, which
    # reads backslash escapes in literals, and DML to Trino, which does not: the same text splits
    # differently by statement.
    head = re.sub(r"--[^\n]*|/\*.*?\*/", " ", statement_so_far, flags=re.S)
    if _HIVE_DDL.match(head):
        return True
    # CREATE TABLE without EXTERNAL: Hive DDL (Iceberg), unless it is a CTAS
    # (WITH (…) AS / AS SELECT): Trino
    return bool(_CREATE_TABLE.match(head)) and not re.search(r"\b(WITH|AS)\b", head, re.I)


def _dollar_quote_at(sql: str, i: int, current: list[str]) -> str | None:
    """The ``$tag$`` opening a dollar-quoted body at ``i``,
    or None (``$`` inside a word is not one)."""
    # As in PostgreSQL, a '$' that continues a word (price$usd$) belongs to the identifier and
    # opens no body.
    before = current[-1][-1:] if current else ""
    if before and (before.isalnum() or before in "_$"):
        return None
    match = _DOLLAR_TAG.match(sql, i)
    return match.group(0) if match else None


def _has_code(statement: str) -> bool:
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)
    return bool(stripped.strip())
