"""The routine a command line names (a file or a catalog ref), loaded with its ``--param`` values."""
from __future__ import annotations

import argparse
from typing import Any

from .detach import read_private_params


def load(args: argparse.Namespace, path: str | None = None, params: dict[str, Any] | None = None) -> Any:
    from ..registry import Registry
    from ..routine.load import load_routine, parse_param_overrides

    given = [*read_private_params(getattr(args, "params_file", None)), *args.param]
    overrides = {**(params or {}), **parse_param_overrides(given)}
    return load_routine(routine_file(path or args.routine), overrides, Registry(),
                        run_id=getattr(args, "run_id", None))


def routine_file(text: str) -> str:
    """A routine argument as a local path: a catalog ref (``NAME@VERSION``) is fetched; the
    catalog's code is imported only for an argument that can be one."""
    if "@" not in text:
        return text
    from ..catalog.refs import resolve_routine_arg

    return resolve_routine_arg(text)
