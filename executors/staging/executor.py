"""The staging executor: copy landed files to the dump, then archive or delete what was copied.

Nothing is lost: each copy is verified before its source may go, ``post_staging`` touches only
files this run transferred and that have not changed since, and a run killed at any moment then
rerun ends with each file in the dump exactly once (the dump key is the landing relative path).
boto3 and smart-open are imported only when a location is ``s3://``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal

from orchestrator.executor import (Cancelled, CodeLocation, Context, Executor, Location, Place,
                                   TaskMetrics, task)
from orchestrator.hookspecs import hookimpl

from . import journal as _journal
from . import locations as loc
from .journal import Journal, Leftover
from .loader import code_path, code_problem
from .signature import call_problems
from .settings import StagingSettings
from .storage import Store, open_store, remove_quietly


class StagingExecutor(Executor):
    """Stage files from a landing folder or S3 prefix into a dump, optionally transforming each one."""

    name = "staging"

    def __init__(
        self,
        parent_directory: Annotated[Location, "Landing folder or s3:// prefix to stage from"],
        dump_directory: Annotated[Location, "Folder or s3:// prefix the files are copied to"],
        archive_or_delete: Annotated[
            Literal["archive", "delete"], "What happens to staged landing files"
        ] = "archive",
        archive_directory: Annotated[
            Location | None, "Archive folder; default <landing>_archive"
        ] = None,
        pattern: Annotated[str, "Glob matched on the relative path or the file name"] = "*",
        py_exec_path: Annotated[
            CodeLocation | None, "Legacy: folder holding py_exec.py (test(), main())"
        ] = None,
        py_exec_args: Annotated[dict | None, "Legacy: keyword arguments for py_exec.main"] = None,
        transform: Annotated[
            CodeLocation | None, "file.py:function(source, destination, **transform_args)"
        ] = None,
        transform_args: Annotated[dict | None, "Keyword arguments for the transform"] = None,
        require_files: Annotated[
            bool, "Fail transfer when no landing file arrived (else a warning)"
        ] = False,
    ) -> None:
        self.parent_directory = str(parent_directory)
        self.dump_directory = str(dump_directory)
        self.archive_or_delete = archive_or_delete
        self.archive_directory = str(
            archive_directory or loc.default_archive(self.parent_directory) or ""
        )
        self.pattern = pattern
        self.py_exec_path = py_exec_path
        self.py_exec_args = py_exec_args  # None: the seed calls only test(), never main()
        self.transform = transform
        self.transform_args = transform_args or {}
        self.require_files = require_files
        self._ledger: Path | None = None  # what the last transfer copied, on disk
        self._cancelled = False
        self._client: Any = None
        self._batches: Any = None  # transfer ran as a state machine's batches (``distributed``)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        yield from _validate(params)

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        if task == "wait_for_files":
            yield from _wait_problems(args)

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Any:
        """What the task reads and writes, for lineage events (``executors/lineage.py``)."""
        from .. import lineage

        return lineage.staging(task, args, params)

    @classmethod
    def places(cls, params: dict[str, Any]) -> Iterable[Place]:
        yield from _places(params)

    @classmethod
    def state_machine_task(cls, task: str, args: dict[str, Any],
                           params: dict[str, Any]) -> dict[str, Any] | None:
        """``transfer`` from an S3 landing fans out as a Distributed Map (see ``distributed``)."""
        if task == "transfer":
            from .distributed import map_state

            return map_state(params)
        return None

    def run_batch(self, context: Context, task: str, items: list[Any]) -> dict[str, Any]:
        from .distributed import stage_batch

        if task != "transfer":
            return super().run_batch(context, task, items)
        return stage_batch(self, context, items)

    def cancel(self) -> None:
        self._cancelled = True

    def check(self) -> list[str]:
        """Each s3:// location answers a one-key listing (endpoint, credentials, permission)."""
        places = [
            p
            for p in (self.parent_directory, self.dump_directory, self.archive_directory)
            if loc.is_s3(p)
        ]
        if not places:
            return []
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            return ["boto3 is not installed; s3:// locations need it"]
        # Short timeouts and few attempts: doctor must answer quickly about a dead endpoint.
        config = Config(
            connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}
        )
        problems = []
        try:
            client = boto3.client("s3", config=config)
        except Exception as exc:
            return [f"S3 client: {type(exc).__name__}: {exc}"]
        for place in dict.fromkeys(places):
            bucket, prefix = loc.split_s3(place)
            try:
                client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            except Exception as exc:
                problems.append(
                    f"{place} at {client.meta.endpoint_url}: {type(exc).__name__}: {exc}"
                )
        return problems

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @task
    def transfer(self, context: Context) -> TaskMetrics:
        """Copy every matching landing file to the dump (verified); the landing files stay."""
        from .ledger import Ledger
        from .transfer import StagingError, legacy_transfer, transfer

        self._cancelled = False  # a cancel() of an earlier attempt (timeout, then retry) is over
        # The previous attempt's ledger is not this one's: post_staging must only ever act on what
        # the transfer that succeeded copied.
        self._ledger = None
        # Again at run time, not only at validation: a symlink changed since may now make the dump
        # or archive the landing folder, and staging would then delete what it just copied.
        self._check_places()
        settings, check = self.settings(), self._check(context)
        journal = self._journal(context)
        ledger = Ledger.create(self._ledger_path(context, context.run_id))
        try:
            landing = self._store(settings.parent_directory)
            if not landing.exists():
                # Not fatal by default: an upstream step may create it later; but never silent.
                warning = f"landing {landing.uri} does not exist: nothing staged"
                if self.require_files:
                    raise StagingError(f"{warning} (require_files: true)")
                context.logger.warning(warning)
                metrics = _metrics(0, files=0, bytes=0, skipped=0, verified=0, warning=warning)
            elif settings.py_exec_path:
                dump = self._store(settings.dump_directory)
                metrics = legacy_transfer(settings, landing, dump, ledger, context, check)
            else:
                dump = self._store(settings.dump_directory)
                metrics = transfer(settings, landing, dump, journal, ledger, context, check)
            if not ledger.count() and self.require_files:
                raise StagingError(f"no file matching {self.pattern!r} arrived in {landing.uri} "
                                   "(require_files: true)")
        except BaseException:
            # A ledger that is not complete is never published: post_staging would otherwise delete
            # or archive a subset without knowing it is one.
            ledger.discard()
            raise
        finally:
            journal.finish()
        # Reached only when the transfer returned: the ledger gets its final name complete, and a
        # resume (``restore``) may trust it to hold every file that run copied.
        self._ledger = ledger.publish()
        return metrics

    def restore(self, context: Context, succeeded_in: str) -> bool:
        """Resume after ``transfer`` succeeded in run ``succeeded_in``: ``post_staging`` gets the
        files that run copied, from its ledger. Without it (a run of an older version) ``transfer``
        runs again, which is harmless: a file copied before is copied to the same dump path."""
        from .ledger import Ledger

        if context.task != "transfer":
            return True
        path = self._ledger_path(context, succeeded_in)
        ledger = Ledger.open(path)
        if ledger is None:  # transfer ran as a state machine's batches, or not in this version
            from .distributed import restore_batches

            return restore_batches(self, context, succeeded_in)
        try:
            context.logger.info("%d files transferred by run %s", ledger.count(), succeeded_in)
        finally:
            ledger.close()
        self._ledger = path
        return True

    @task
    def post_staging(self, context: Context) -> TaskMetrics:
        """Archive or delete the landing files this run transferred, if they are unchanged since."""
        from .ledger import Ledger
        from .transfer import post_staging

        self._cancelled = False
        self._check_places()
        if self._batches is not None:  # transfer ran as a state machine's batches
            from .distributed import post_staging_batches

            return post_staging_batches(self, context)
        settings, path = self.settings(), self._ledger
        journal = self._journal(context)  # first, undo what a dead run left in flight
        ledger = None if path is None else Ledger.open(path)
        if ledger is None:
            journal.finish()
            context.logger.info("nothing was transferred in this run: nothing to %s",
                                settings.archive_or_delete)
            return _metrics(0, files=0)
        try:
            metrics = post_staging(settings, self._store(settings.parent_directory),
                                   lambda: self._store(settings.archive_directory), journal,
                                   ledger, context, self._check(context))
        finally:
            ledger.close()
            journal.finish()
        if path is not None:  # dealt with: a later resume has nothing to redo
            # Only after a post_staging that did all it could: a failure above keeps the ledger
            # (updated as files were done) for a resume.
            path.unlink(missing_ok=True)
        self._ledger = None
        return metrics

    @task
    def wait_for_files(
        self,
        context: Context,
        min_files: Annotated[int, "How many matching files must be there"] = 1,
        pattern: Annotated[str | None, "Glob as for the step's pattern; default the step's"] = None,
        timeout: Annotated[float, "Seconds to wait before failing"] = 3600,
        stable_for: Annotated[float, "Seconds a file must stay unchanged (size, mtime/ETag)"] = 0,
    ) -> TaskMetrics:
        """Wait until files land in ``parent_directory`` and stop changing; nothing is moved."""
        from .sensor import wait_for_files

        self._cancelled = False
        return wait_for_files(
            self._store(self.parent_directory),
            pattern or self.pattern,
            min_files=min_files,
            timeout=timeout,
            stable_for=stable_for,
            context=context,
            check_cancelled=lambda: self.check_cancelled(context),
        )

    def settings(self) -> StagingSettings:
        """The params the staging helpers work from, as one value."""
        return StagingSettings(
            parent_directory=self.parent_directory, dump_directory=self.dump_directory,
            archive_or_delete=self.archive_or_delete, archive_directory=self.archive_directory,
            pattern=self.pattern, transform=None if self.transform is None else str(self.transform),
            transform_args=dict(self.transform_args),
            py_exec_path=None if self.py_exec_path is None else str(self.py_exec_path),
            py_exec_args=None if self.py_exec_args is None else dict(self.py_exec_args))

    def check_cancelled(self, context: Context) -> None:
        if self._cancelled:
            raise Cancelled(f"{context.step}.{context.task} cancelled")
        context.check_cancelled()

    def _check(self, context: Context) -> Callable[[], None]:
        return lambda: self.check_cancelled(context)

    def s3_client(self) -> Any:
        if self._client is None:
            from .s3store import make_client

            self._client = make_client()
        return self._client

    def _check_places(self) -> None:
        """Validation's nesting check again, now that symlinks may have changed since the routine was read."""
        from .transfer import StagingError

        params = {
            "parent_directory": self.parent_directory,
            "dump_directory": self.dump_directory,
            "archive_or_delete": self.archive_or_delete,
            "archive_directory": self.archive_directory,
        }
        for key, problem in _place_problems(params):
            raise StagingError(f"{key}: {problem}")

    def _store(self, location: str) -> Store:
        return open_store(location, self.s3_client)

    def _journal(self, context: Context) -> Journal:
        """This task's journal; first, what dead runs left in flight is undone (never a live
        run's)."""
        folder = context.state_dir("staging")
        live: list[set[str]] = []  # targets live runs have in flight, read only when needed

        def clean(leftover: Leftover) -> None:
            if leftover.path is not None:
                from .claim import put_back

                put_back(leftover.target, leftover.path)
            elif loc.is_s3(leftover.target):
                from .uploads import abort_uploads

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

    def _ledger_path(self, context: Context, run_id: str) -> Path:
        """What ``transfer`` copied in run ``run_id`` (see ``ledger``), for ``post_staging``
        and for a resume that skips ``transfer``."""
        return context.state_dir("staging", "transferred") / f"{run_id}.sqlite"


def _metrics(total: int, **metadata: Any) -> TaskMetrics:
    return TaskMetrics(total_rows=total, execution_metadata=metadata)


def _places(params: dict[str, Any]) -> Iterable[Place]:
    """What the typed params do not show: the default archive folder, the functions called from
    the code, and the paths among the arguments handed to that code."""
    parent, archive = params.get("parent_directory"), params.get("archive_directory")
    if params.get("archive_or_delete", "archive") == "archive" and parent and not archive:
        if (default := loc.default_archive(str(parent))) is not None:
            yield Place("archive_directory", default, derived=True)
    if params.get("transform"):
        try:
            path, function = loc.split_callable(str(params["transform"]))
        except ValueError:
            pass  # validate_params says what is wrong with it
        else:
            yield Place("transform", path, "code", (function,))
    if params.get("py_exec_path"):
        folder = str(params["py_exec_path"])
        module = os.path.join(code_path(folder), "py_exec.py")
        yield Place("py_exec_path", module, "code", ("test", "main"))
    for name in ("transform_args", "py_exec_args"):
        for key, value in loc.local_path_strings(params.get(name) or {}, name):
            yield Place(key, value)


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
            else:
                yield from call_problems(path, function, _args(params, "transform_args"),
                                         kwargs_key="transform_args", function_key="transform",
                                         positional=("source", "destination"))
    if params.get("py_exec_path"):
        folder = str(params["py_exec_path"])
        module = folder if loc.is_s3(folder) else os.path.join(code_path(folder), "py_exec.py")
        needed = ("test", "main") if params.get("py_exec_args") is not None else ("test",)
        if (problem := code_problem(module, needed)) is not None:
            yield "py_exec_path", problem
        elif params.get("py_exec_args") is not None:  # main() is called only then, as in the seed
            yield from call_problems(module, "main", _args(params, "py_exec_args"),
                                     kwargs_key="py_exec_args", function_key="py_exec_path",
                                     positional=("parent_directory", "dump_directory"))
    yield from _place_problems(params)


def _wait_problems(args: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for name, least in (("min_files", 1), ("timeout", 0), ("stable_for", 0)):
        value = args.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < least:
            yield name, f"{value} is below {least}" if least else f"{value} is negative"


def _args(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    return value if isinstance(value, dict) else {}


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
