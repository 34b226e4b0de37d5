"""The routine a command line names (a file or a catalog ref), loaded with its ``--param``
values."""

from __future__ import annotations

import argparse
from typing import Any


def load(
    args: argparse.Namespace, path: str | None = None, params: dict[str, Any] | None = None,
    resolve: bool = False, options: Any = None,
) -> Any:
    """The routine of ``path`` (default: the command line's), its params overridden by
    ``params``, then by the ``--param`` values (a detached run's come from its params file); with
    ``options`` (a ``RunOptions``), its params and run id instead. ``resolve`` reads its
    ``${secret.X}``/``${ssm.X}`` (to run it here)."""
    from ..registry import Registry
    from ..routine.load import load_routine

    overrides = options.params if options is not None else param_overrides(args, params)
    run_id = options.run_id if options is not None else getattr(args, "run_id", None)
    return load_routine(
        routine_file(path or args.routine),
        overrides,
        Registry(),
        run_id=run_id,
        resolve_secrets=resolve,
    )


def param_overrides(args: argparse.Namespace, params: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """``--param`` values (a detached run's come from its params file) over ``params``."""
    from ..routine.load import parse_param_overrides

    given = list(args.param)
    if getattr(args, "params_file", None):
        from .detach import read_private_params

        given = [*read_private_params(args.params_file), *given]
    return {**(params or {}), **parse_param_overrides(given)}


def routine_file(text: str) -> str:
    """A routine argument as a local path: a catalog ref (``NAME@VERSION``) is fetched; the
    catalog's code is imported only for an argument that can be one."""
    if "@" not in text:
        return text
    from ..catalog.refs import resolve_routine_arg

    return resolve_routine_arg(text)
