"""The routine a command line names (a file or a catalog ref), loaded with its ``--param`` values."""
from __future__ import annotations

import argparse
from typing import Any

from .detach import read_private_params


def load(args: argparse.Namespace, path: str | None = None, params: dict[str, Any] | None = None) -> Any:
    from ..catalog.refs import resolve_routine_arg
    from ..registry import Registry
    from ..routine.load import load_routine, parse_param_overrides

    given = [*read_private_params(getattr(args, "params_file", None)), *args.param]
    overrides = {**(params or {}), **parse_param_overrides(given)}
    return load_routine(resolve_routine_arg(path or args.routine), overrides, Registry(),
                        run_id=getattr(args, "run_id", None))
