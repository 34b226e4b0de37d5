"""Validation of the executor's params and task args: no connection is opened, nothing is read
but a local file's first bytes."""
from __future__ import annotations

from typing import Any, Iterator


def param_problems(params: dict[str, Any]) -> Iterator[tuple[str, str]]:
    from .source import SourceError, find_source

    location = params.get("source")
    if isinstance(location, str) and location:
        try:
            # The source plugins' lookup runs here, at validation: an unknown source type stops the
            # routine (exit 2) before any step has run. problems() opens no connection.
            source = find_source(location, params)
        except SourceError as exc:
            yield "source", str(exc)
        else:
            for message in source.problems():
                yield "source", message
    target = params.get("target")
    if isinstance(target, str) and target:
        yield from _url_problem("target", target)
    api = params.get("api_url")
    if isinstance(api, str) and api and not api.startswith(("http://", "https://")):
        yield "api_url", f"{api!r} is not an http:// or https:// URL"


def _url_problem(name: str, url: str) -> Iterator[tuple[str, str]]:
    from .sql_source import missing_extra
    from .urls import mask_url

    try:
        from sqlalchemy.engine import make_url
    except ImportError:
        yield name, missing_extra()
        return
    try:
        make_url(url)
    except Exception:
        yield name, (
            f"{mask_url(url)!r} is not a SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)"
        )


def arg_problems(
    task: str, args: dict[str, Any], params: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    # Said at validation: otherwise the routine would extract and profile first, then fail at
    # publish.
    if task == "publish" and not params.get("api_url"):
        yield "", "publish needs the executor's api_url param (and api_token if the API wants one)"
    if task == "check_schema" and args.get("expected") is not None:
        from .drift import expected_problems

        yield from expected_problems(args["expected"])
