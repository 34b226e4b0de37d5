"""The staging executor: copy landed files to the dump, then archive or delete what was copied.

Nothing is lost: each copy is verified before its source may go, ``post_staging`` touches only
files this run transferred and that have not changed since, and a run killed at any moment then
rerun ends with each file in the dump exactly once (the dump key is the landing relative path).
boto3 and smart-open are imported only when a location is ``s3://``.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, Iterable, Literal

from orchestrator.executor import Cancelled, CodeLocation, Context, Executor, Location, TaskMetrics, task
from orchestrator.hookspecs import hookimpl

from . import _journal
from . import _locations as loc
from ._journal import Journal, Leftover
from ._loader import code_path, code_problem
from ._storage import Entry, open_store, remove_quietly


class StagingExecutor(Executor):
    """Stage files from a landing folder or S3 prefix into a dump, optionally transforming each one."""

    name = "staging"

    def __init__(
        self,
        parent_directory: Annotated[Location, "Landing folder or s3:// prefix to stage from"],
        dump_directory: Annotated[Location, "Folder or s3:// prefix the files are copied to"],
        archive_or_delete: Annotated[Literal["archive", "delete"], "What happens to staged landing files"] = "archive",
        archive_directory: Annotated[Location | None, "Archive folder; default <landing>_archive"] = None,
        pattern: Annotated[str, "Glob matched on the relative path or the file name"] = "*",
        py_exec_path: Annotated[CodeLocation | None, "Legacy: folder holding py_exec.py (test(), main())"] = None,
        py_exec_args: Annotated[dict | None, "Legacy: keyword arguments for py_exec.main"] = None,
        transform: Annotated[CodeLocation | None, "file.py:function(source, destination, **transform_args)"] = None,
        transform_args: Annotated[dict | None, "Keyword arguments for the transform"] = None,
    ) -> None:
        self.parent_directory = str(parent_directory)
        self.dump_directory = str(dump_directory)
        self.archive_or_delete = archive_or_delete
        self.archive_directory = str(archive_directory or loc.default_archive(self.parent_directory) or "")
        self.pattern = pattern
        self.py_exec_path = py_exec_path
        self.py_exec_args = py_exec_args or {}
        self.transform = transform
        self.transform_args = transform_args or {}
        self._handled: dict[str, Entry] = {}
        self._cancelled = False
        self._client: Any = None

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        yield from _validate(params)

    def cancel(self) -> None:
        self._cancelled = True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @task
    def transfer(self, context: Context) -> TaskMetrics:
        """Copy every matching landing file to the dump (verified); the landing files stay."""
        from ._transfer import legacy_transfer, transfer

        self._cancelled = False  # a cancel() of an earlier attempt (timeout, then retry) is over
        self._handled = {}
        self._check_places()
        journal = self._journal(context)
        try:
            landing = self._store(self.parent_directory)
            if not landing.exists():
                context.logger.info("landing %s does not exist: nothing to stage", landing.uri)
                return _metrics(0, files=0, bytes=0, skipped=0, verified=0)
            dump = self._store(self.dump_directory)
            if self.py_exec_path:
                self._handled, metrics = legacy_transfer(self, landing, dump, context)
            else:
                self._handled, metrics = transfer(self, landing, dump, journal, context)
            return metrics
        finally:
            journal.finish()

    @task
    def post_staging(self, context: Context) -> TaskMetrics:
        """Archive or delete the landing files this run transferred, if they are unchanged since."""
        from ._transfer import post_staging

        self._cancelled = False
        self._check_places()
        journal = self._journal(context)
        try:
            return post_staging(self, self._store(self.parent_directory), journal, context)
        finally:
            journal.finish()

    def check_cancelled(self, context: Context) -> None:
        if self._cancelled:
            raise Cancelled(f"{context.step}.{context.task} cancelled")
        context.check_cancelled()

    def s3_client(self) -> Any:
        if self._client is None:
            from ._s3store import make_client

            self._client = make_client()
        return self._client

    def _check_places(self) -> None:
        """Validation's nesting check again, now that symlinks may have changed since the routine was read."""
        from ._transfer import StagingError

        params = {"parent_directory": self.parent_directory, "dump_directory": self.dump_directory,
                  "archive_or_delete": self.archive_or_delete, "archive_directory": self.archive_directory}
        for key, problem in _place_problems(params):
            raise StagingError(f"{key}: {problem}")

    def _store(self, location: str) -> Any:
        return open_store(location, self.s3_client)

    def _journal(self, context: Context) -> Journal:
        """This task's journal; first, what dead runs left in flight is undone (never a live
        run's)."""
        folder = context.state_dir("staging")
        live: list[set[str]] = []  # targets live runs have in flight, read only when needed

        def clean(leftover: Leftover) -> None:
            if leftover.path is not None:
                from ._claim import put_back

                put_back(leftover.target, leftover.path)
            elif loc.is_s3(leftover.target):
                from ._uploads import abort_uploads

                if not leftover.uploads and not live:
                    live.append(_journal.in_flight(folder))
                if leftover.uploads or leftover.target not in live[0]:
                    abort_uploads(self.s3_client(), leftover.target, leftover.uploads or None)
            else:
                remove_quietly(leftover.target)

        found = _journal.recover(folder, clean)
        if found:
            context.logger.info("undid %d leftovers of an interrupted run", found)
        return Journal(folder, context.run_id)


def _metrics(total: int, **metadata: Any) -> TaskMetrics:
    return TaskMetrics(total_rows=total, execution_metadata=metadata)


def _validate(params: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """Cross-field checks. No side effects: local paths may be read (symlinks resolved, code files
    parsed with ``ast``) but nothing is written, imported or executed."""
    if params.get("py_exec_path") and params.get("transform"):
        yield "transform", "py_exec_path and transform are mutually exclusive"
    if params.get("transform"):
        try:
            path, function = loc.split_callable(str(params["transform"]))
        except ValueError as exc:
            yield "transform", str(exc)
        else:
            if (problem := code_problem(path, (function,))) is not None:
                yield "transform", problem
    if params.get("py_exec_path"):
        folder = str(params["py_exec_path"])
        module = folder if loc.is_s3(folder) else os.path.join(code_path(folder), "py_exec.py")
        if (problem := code_problem(module, ("test", "main"))) is not None:
            yield "py_exec_path", problem
    yield from _place_problems(params)


def _place_problems(params: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """Unsupported locations, and landing, dump and archive that are one place or nested."""
    places = {k: str(params[k]) for k in ("parent_directory", "dump_directory") if params.get(k)}
    if params.get("archive_or_delete", "archive") == "archive" and "parent_directory" in places:
        archive = params.get("archive_directory") or loc.default_archive(places["parent_directory"])
        if not archive:
            yield "archive_directory", "required when parent_directory is a bucket or filesystem root"
        else:
            places["archive_directory"] = str(archive)
    for key, value in places.items():
        if (problem := loc.scheme_error(value)) is not None:
            yield key, problem
    names = list(places)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if loc.overlaps(places[a], places[b]):
                yield b, f"{b} ({places[b]}) and {a} ({places[a]}) are the same place or nested"


@hookimpl
def register_executors() -> list[type]:
    return [StagingExecutor]
