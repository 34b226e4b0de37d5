"""Bounds on what a routine may ask of the process that reads it.

A routine may arrive in an event or be any file a user points at: reading it must cost a small,
fixed amount of memory and time, and the names it gives must be usable as names on a filesystem
or in a bucket. Every bound is far above what a real routine needs; each problem is a sentence
that says what to change.
"""
from __future__ import annotations

import math
from typing import Any, BinaryIO

MAX_ROUTINE_BYTES = 1 << 20  # a routine file, or one fetched from S3
MAX_DEPTH = 64  # objects and lists inside each other
MAX_VALUES = 100_000  # values in the whole document, YAML aliases counted once per use
MAX_INT_DIGITS = 1000  # Python refuses to print integers of more than 4,300 digits
MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_PATH_BYTES = 4095  # a whole local path (PATH_MAX on Linux, less its terminating NUL)
# S3's own limit on a key, in UTF-8 bytes.
MAX_S3_KEY_BYTES = 1024
JSON_TAGS = frozenset(f"tag:yaml.org,2002:{name}"
                      for name in ("str", "int", "float", "bool", "null", "seq", "map"))
ONLY_JSON = "a routine holds only what JSON can: strings, numbers, true/false, null, lists, objects"


class DocumentProblem(ValueError):
    """A document that cannot be read, or exceeds a bound: the message says which and how to fix
    it, ``path`` where (if known)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def read_bounded(stream: BinaryIO, limit: int = MAX_ROUTINE_BYTES) -> bytes:
    """At most ``limit`` bytes; a longer stream (or an endless one, like a device) is refused."""
    chunks, total = [], 0
    while total <= limit:  # a pipe or an HTTP body may return less than asked for
        # One byte past the limit is asked for, so that a document of exactly the limit passes and
        # one byte more is refused, without reading further.
        chunk = stream.read(min(1 << 16, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise DocumentProblem(f"larger than {limit // 1024} KiB; a routine that big is a mistake: "
                              "split it")
    return b"".join(chunks)


def decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        where = f"byte {data[exc.start]:#04x} at line {line}"
        raise DocumentProblem(f"not UTF-8 text ({where}); save the file as UTF-8") from None


def check_document(doc: Any) -> None:
    """Nesting, size and value types of a parsed routine: only what JSON can hold, within bounds.

    Walks without recursion, so a document too deep for Python is reported, not crashed on;
    shared values (YAML aliases) count once per use, so an alias bomb stops at ``MAX_VALUES``.
    """
    # A value's path is (parent's path, key), written out only for a message: most values are
    # fine, and formatting a path for each would cost more than checking it.
    stack: list[tuple[Any, Any, int]] = [(doc, None, 1)]
    seen = 0
    while stack:
        value, where, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise DocumentProblem(f"more than {MAX_VALUES:,} values (counting each use of a YAML "
                                  "alias); a routine that big is a mistake: split it")
        if depth > MAX_DEPTH:
            raise DocumentProblem(f"nested deeper than {MAX_DEPTH} levels; flatten it",
                                  _path(where))
        kind = value.__class__
        # Most values are strings: the cheapest test first, before the isinstance chain.
        if kind is str:
            continue
        if isinstance(value, dict):
            stack.extend((v, (where, str(k)), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (where, i), depth + 1) for i, v in enumerate(value))
        else:
            try:
                _check_scalar(value, "")
            except DocumentProblem as exc:
                raise DocumentProblem(str(exc), _path(where)) from None


def _path(where: Any) -> str:
    """``(parent, key)`` links as a JSON path: ``a.b[2].c``."""
    parts: list[Any] = []
    while where is not None:
        where, key = where
        parts.append(key)
    path = ""
    for key in reversed(parts):
        path += f"[{key}]" if isinstance(key, int) else (f"{path and '.'}{key}")
    return path


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        # About 3.32 bits per decimal digit: the size is judged without converting to decimal, the
        # very conversion that is slow for huge integers (and refused past 4,300 digits).
        if value.bit_length() > MAX_INT_DIGITS * 3.33:
            message = f"an integer of more than {MAX_INT_DIGITS} digits; write it as a string"
            raise DocumentProblem(message, path)
        return
    if isinstance(value, float):
        return  # NaN and the infinities: refused where a number is expected (schema type check)
    kind = type(value).__name__
    raise DocumentProblem(f"a value of type {kind} (from a YAML tag) is not allowed: {ONLY_JSON}",
                          path)


def yaml_graph_problem(root: Any) -> DocumentProblem | None:
    """Before a YAML document is built: aliases expanded beyond bounds, an alias inside its own
    anchor, or a tag JSON has no equivalent for. Memoised per node: linear in the text."""
    sizes: dict[int, tuple[int, int]] = {}
    try:
        _node_size(root, 1, sizes, set())
    except DocumentProblem as problem:
        return problem
    return None


def _node_size(node: Any, depth: int, sizes: dict[int, tuple[int, int]],
               open_nodes: set[int]) -> tuple[int, int]:
    """``(values, height)`` of ``node``, aliases expanded; :class:`DocumentProblem` past a bound.

    Recursion stops at ``MAX_DEPTH``: a node already measured is not entered again."""
    key, line = id(node), node.start_mark.line + 1
    # PyYAML accepts an alias inside its own anchor and builds a cyclic value; JSON cannot hold
    # one.
    if key in open_nodes:
        raise DocumentProblem(f"an alias inside its own anchor (line {line}): the value would be "
                              "infinite")
    # PyYAML gives every use of an alias the same node object, so keyed by id() each anchor is
    # measured once: linear in the text however often it is used.
    if key not in sizes:
        if node.tag not in JSON_TAGS:
            raise DocumentProblem(f"YAML tag {node.tag!r} at line {line} is not allowed: "
                                  f"{ONLY_JSON}")
        if depth > MAX_DEPTH:
            raise DocumentProblem(f"nested deeper than {MAX_DEPTH} levels (line {line}); "
                                  "flatten it")
        open_nodes.add(key)
        children = node.value if isinstance(node.value, list) else []  # a scalar's value: its text
        flat = [part for child in children
                for part in (child if isinstance(child, tuple) else (child,))]  # (key, value) pairs
        measured = [_node_size(child, depth + 1, sizes, open_nodes) for child in flat]
        open_nodes.discard(key)
        sizes[key] = (1 + sum(size for size, _ in measured),
                      1 + max((height for _, height in measured), default=0))
    values, height = sizes[key]
    if values > MAX_VALUES:
        raise DocumentProblem(f"more than {MAX_VALUES:,} values once its YAML aliases are "
                              "expanded; use fewer aliases")
    # Checked on every use, memoised or not: the same anchor used at a deeper place may go past the
    # bound there.
    if depth + height - 1 > MAX_DEPTH:
        raise DocumentProblem(f"nested deeper than {MAX_DEPTH} levels once its YAML aliases are "
                              "expanded; flatten it")
    return sizes[key]


def finite_number(value: Any) -> bool:
    """What a JSON number can be: NaN and the infinities are not numbers a routine may give."""
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def location_problem(location: str) -> str | None:
    """Why a location is too long for any file system or for S3, or None (checked at validation,
    before any folder is made)."""
    if location.startswith("s3://"):
        key = location[len("s3://"):].partition("/")[2]
        if len(_bytes(key)) > MAX_S3_KEY_BYTES:
            return f"the S3 key is longer than {MAX_S3_KEY_BYTES} bytes; use a shorter prefix"
        return None
    path = location[len("file://"):] if location.startswith("file://") else location
    if len(_bytes(path)) > MAX_PATH_BYTES:
        return f"the path is longer than {MAX_PATH_BYTES} bytes; use a shorter one"
    for part in path.split("/"):
        if len(_bytes(part)) > MAX_NAME_BYTES:
            return f"the name {part[:40]!r}... is longer than {MAX_NAME_BYTES} bytes; shorten it"
    return None


def _bytes(text: str) -> bytes:
    # surrogatepass: a path that came from the file system may hold lone surrogates
    # (surrogateescape); measuring it must not raise.
    return text.encode("utf-8", "surrogatepass")
