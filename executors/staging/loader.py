"""Load user code from a file path, never by name lookup: each load gets a fresh, unique module.

``code_problem`` checks a code reference at validation time without importing it: the file is
read and parsed with ``ast``, never executed.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from orchestrator.executor import NotRetryable

from .locations import is_s3, split_callable

_counter = itertools.count()
MAX_PARSED_BYTES = 16 * 1024 * 1024  # bigger code files are only checked to exist


def code_path(location: str | Path) -> Path:
    """A code location as a local path (``file://`` stripped)."""
    text = str(location)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def load_file(path: str | Path) -> ModuleType:
    """Import ``path`` under a unique name; registered in ``sys.modules`` so dataclasses and pickling work."""
    path = code_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such Python file: {path}")
    name = f"_orchestrator_user_{path.stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class ForeignFunction(NotRetryable):
    """An untrusted routine named a function the code file does not define itself (an import)."""


def function_of(module: ModuleType, name: str, own_only: bool = False) -> Callable[..., Any]:
    """``module.name``; with ``own_only`` (an untrusted routine) it must be a function the module
    itself defines: a name it imports (``from shutil import copyfile``) would let a routine from an
    event call any library function through an allowlisted file."""
    function = getattr(module, name, None)
    if not callable(function):
        raise AttributeError(f"{module.__file__} has no function {name!r}")
    if own_only and not (inspect.isfunction(function) and function.__module__ == module.__name__):
        origin = getattr(function, "__module__", None) or "?"
        origin += "." + getattr(function, "__qualname__", name)
        raise ForeignFunction(
            f"{module.__file__}: {name} is {origin}, not a function this file defines; a routine "
            "from an event may call only functions the allowlisted file defines")
    return function


def load_callable(ref: str, own_only: bool = False) -> Callable[..., Any]:
    """``/path/file.py:function`` → the function."""
    path, name = split_callable(ref)
    return function_of(load_file(path), name, own_only)


def code_problem(path: str | Path, functions: tuple[str, ...] = ()) -> str | None:
    """Why ``path`` cannot provide ``functions`` (top-level names), or None. Reads, never imports.

    A name counts as defined when the module binds it at top level in any way (``def``, ``class``,
    assignment, import, also inside a top-level ``if``/``try``); a star import or a write to
    ``globals()`` makes the check give up rather than reject code that may well work.
    """
    if is_s3(str(path)):
        return f"{path}: code must be a local .py file, not an s3:// object"
    file = code_path(path)
    try:
        st = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        return f"no such Python file: {file}"
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"{file} is a folder, not a Python file"
    if not stat.S_ISREG(st.st_mode):
        return f"{file} is not a regular file"  # a FIFO or a device would block or never end
    if not functions or st.st_size > MAX_PARSED_BYTES:
        return None
    tree = _parse(file)
    if isinstance(tree, str):
        return tree
    bound = _top_level_names(tree.body)
    if bound is None:
        return None
    missing = [name for name in functions if name not in bound]
    if missing:
        names = ", ".join(f"{name}()" for name in missing)
        return f"{file} defines no top-level {names}"
    return None

def parsed_code(path: str | Path) -> ast.Module | None:
    """The syntax tree of a local code file, or None when it cannot be had (missing, too big, not
    Python): :func:`code_problem` says why."""
    file = code_path(path)
    try:
        if is_s3(str(path)) or not file.is_file() or file.stat().st_size > MAX_PARSED_BYTES:
            return None
    except OSError:
        return None
    tree = _parse(file)
    return None if isinstance(tree, str) else tree


def function_definition(tree: ast.Module,
                        name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The ``def`` that top-level ``name`` surely is when the module has run; None when that cannot
    be known statically (bound otherwise too, decorated, or the module writes its globals)."""
    found: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found = node  # a later def replaces an earlier one
        elif _binds(node, name) or _touches_globals(node):
            return None
    if found is None or found.decorator_list:
        return None
    return found


def _binds(node: ast.stmt, name: str) -> bool:
    """Whether a module-level statement binds ``name`` other than as a plain top-level ``def``."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    bound = _top_level_names([node])
    return bound is None or name in bound


def _parse(file: Path) -> ast.Module | str:
    """The file's syntax tree, or why it cannot be had."""
    try:
        source = file.read_bytes()
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    try:
        return ast.parse(source, filename=str(file))
    except SyntaxError as exc:
        # Only the line: the text of a file named by an untrusted routine is not echoed back.
        return f"{file} is not valid Python" + (f" (line {exc.lineno})" if exc.lineno else "")
    except (ValueError, RecursionError, MemoryError):
        return f"{file} is not valid Python"


def _top_level_names(body: list[ast.stmt]) -> set[str] | None:
    """Names bound at module level; None when that cannot be known statically."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        else:
            for target in _targets(node):
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        for child in _nested_blocks(node):
            inner = _top_level_names(child)
            if inner is None:
                return None
            names |= inner
        if _touches_globals(node):
            return None
    return names


def _targets(node: ast.stmt) -> list[ast.AST]:
    """What a module-level statement assigns to (walrus targets included)."""
    found: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        found += node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        found.append(node.target)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        found += [item.optional_vars for item in node.items if item.optional_vars is not None]
    found += [n.target for n in ast.walk(node) if isinstance(n, ast.NamedExpr)]
    return found


def _nested_blocks(node: ast.stmt) -> list[list[ast.stmt]]:
    """Statement blocks of ``node`` that run at module level (not function or class bodies)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    blocks = [
        getattr(node, field)
        for field in ("body", "orelse", "finalbody")
        if getattr(node, field, None)
    ]
    blocks += [handler.body for handler in getattr(node, "handlers", [])]
    blocks += [case.body for case in getattr(node, "cases", [])]
    return [b for b in blocks if isinstance(b, list) and all(isinstance(s, ast.stmt) for s in b)]


def _touches_globals(node: ast.stmt) -> bool:
    """``globals()``/``setattr(sys.modules[...])``-style dynamic definitions at module level."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id in ("globals", "exec", "setattr")
        for n in ast.walk(node)
    )
