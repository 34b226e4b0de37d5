"""Load user code from a file path, never by name lookup: each load gets a fresh, unique module."""
from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ._locations import split_callable

_counter = itertools.count()


def load_file(path: str | Path) -> ModuleType:
    """Import ``path`` under a unique name; registered in ``sys.modules`` so dataclasses and pickling work."""
    path = Path(path)
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


def function_of(module: ModuleType, name: str) -> Callable[..., Any]:
    function = getattr(module, name, None)
    if not callable(function):
        raise AttributeError(f"{module.__file__} has no function {name!r}")
    return function


def load_callable(ref: str) -> Callable[..., Any]:
    """``/path/file.py:function`` → the function."""
    path, name = split_callable(ref)
    return function_of(load_file(path), name)
