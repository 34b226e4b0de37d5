"""Check a call of user code against the function's signature, read with ``ast``, never imported.

What would fail only when the task runs is found at validation: a keyword argument the function
does not take, a required one not given, too few positional parameters for what the executor
passes. Where the signature cannot be known statically (decorated, rebound, not a ``def``), nothing
is said: the check must not reject code that may well work.
"""
from __future__ import annotations

import ast
import difflib
from pathlib import Path
from typing import Any

from .loader import function_definition, parsed_code


def call_problems(path: str | Path, function: str, kwargs: dict[str, Any], *,
                  kwargs_key: str, function_key: str, positional: tuple[str, ...] = (),
                  supplied: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(key, message)`` for each way ``function(*positional, **kwargs)`` from ``path`` would not
    bind. ``positional`` names what the executor passes positionally; ``supplied`` names keyword
    arguments the executor itself passes when the function takes them (``context``). Keys are
    ``function_key`` for the signature itself, ``kwargs_key`` (``.NAME``) for the arguments."""
    tree = parsed_code(path)
    node = function_definition(tree, function) if tree is not None else None
    if node is None:
        return []
    spec = node.args
    slots = [a.arg for a in (*spec.posonlyargs, *spec.args)]
    posonly = {a.arg for a in spec.posonlyargs}
    with_default = set(slots[len(slots) - len(spec.defaults):]) if spec.defaults else set()
    with_default |= {a.arg for a, d in zip(spec.kwonlyargs, spec.kw_defaults) if d is not None}
    filled = slots[:len(positional)]
    keywords = [p for p in slots[len(positional):] if p not in posonly]
    keywords += [a.arg for a in spec.kwonlyargs]
    takes_any = spec.kwarg is not None
    shown = f"{function}()"
    problems: list[tuple[str, str]] = []
    if len(positional) > len(slots) and spec.vararg is None:
        wanted = ", ".join(positional)
        problems.append((function_key, f"{shown} must take {len(positional)} positional "
                                       f"parameters ({wanted}); it takes {len(slots)}"))
    for name in kwargs:
        key = f"{kwargs_key}.{name}"
        if name in filled and not (name in posonly and takes_any):
            problems.append((key, f"{name!r} is passed to {shown} already (positionally, as "
                                  f"{positional[filled.index(name)]}); remove it"))
        elif name in supplied and name in keywords:
            problems.append((key, f"{name!r} is passed to {shown} by the orchestrator; "
                                  "remove it (or rename the parameter)"))
        elif name in posonly and not takes_any:
            problems.append((key, f"{name!r} is positional-only in {shown}: it cannot be given "
                                  "by name"))
        elif name not in keywords and not takes_any:
            problems.append((key, f"unknown argument {name!r} of {shown}; "
                                  f"{_hint(name, [k for k in keywords if k not in supplied])}"))
    for name in slots[len(positional):] + [a.arg for a in spec.kwonlyargs]:
        if name in with_default or (name in kwargs and name not in posonly) or name in supplied:
            continue
        if name in posonly:
            problems.append((function_key, f"{shown} has a required positional-only parameter "
                                           f"{name!r} that no argument can fill"))
        else:
            problems.append((kwargs_key, f"missing required argument {name!r} of {shown}; "
                                         f"add it to {kwargs_key}"))
    return problems


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"it takes {', '.join(map(repr, known))}" if known else "it takes none"
