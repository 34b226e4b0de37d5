"""The ``metadata`` executor: catalog, profile, drift check and publish, as tasks of a routine.

The heavy work stays where the data is: databases compute their own aggregates (or hand over
their statistics), files are scanned by DuckDB in bounded memory. Results land in the target's
``_executor_metadata`` tables, keyed by the orchestrator run id.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from typing import Annotated, Any, Iterable, Iterator, Literal

from orchestrator import Context, Executor, Location, TaskMetrics, __version__, task

Mode = Literal["estimate", "sample", "exact"]


@dataclasses.dataclass
class MetadataMetrics(TaskMetrics):
    tables_seen: int | None = None
    columns_seen: int | None = None
    rows_profiled: int | None = None
    bytes_scanned: int | None = None
    drift_found: int | None = None


class SchemaDrift(Exception):
    """check_schema found changes and ``on_drift`` is ``fail``: a retry would find them again."""

    retryable = False


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    mode: str
    sample_percent: float
    sample_rows: int
    sample_limit: int
    top_values: int
    distinct: str


class MetadataExecutor(Executor):
    """Catalog and profile databases and files into ``_executor_metadata``; check drift; publish."""

    name = "metadata"

    def __init__(
        self,
        source: Annotated[
            Location, "SQLAlchemy URL, local file or folder, s3:// prefix, or glue://DATABASE"
        ],
        target: Annotated[
            str | None,
            "SQLAlchemy URL of the metadata store; default SQLite in the " "orchestrator home",
        ] = None,
        include: Annotated[
            list[str] | None, "Glob patterns on schema.table (or file path) to keep"
        ] = None,
        exclude: Annotated[
            list[str] | None, "Glob patterns on schema.table (or file path) to skip"
        ] = None,
        password: Annotated[str | None, "Database password, kept out of the URL (a secret)"] = None,
        mode: Annotated[
            Mode, "estimate: database statistics or a sample; sample; exact: full scan"
        ] = "estimate",
        sample_percent: Annotated[float, "TABLESAMPLE SYSTEM percentage in sample mode"] = 10.0,
        sample_limit: Annotated[
            int, "Rows read in sample mode where there is no TABLESAMPLE"
        ] = 100_000,
        sample_rows: Annotated[int, "Sample values kept per column"] = 5,
        top_values: Annotated[int, "Most frequent values kept per column"] = 5,
        distinct: Annotated[
            Literal["approx", "exact"], "Files: distinct counts by sketch or exact"
        ] = "approx",
        on_drift: Annotated[
            Literal["warn", "fail"], "What check_schema does when columns changed"
        ] = "warn",
        api_url: Annotated[str | None, "publish: the platform API endpoint (http or https)"] = None,
        api_token: Annotated[str | None, "publish: bearer token (a secret; use ${env.X})"] = None,
        api_timeout: Annotated[float, "publish: seconds to wait for a reply"] = 30.0,
        api_attempts: Annotated[int, "publish: attempts per page"] = 5,
        page_bytes: Annotated[int, "publish: largest page of JSON sent at once"] = 1_000_000,
        region: Annotated[str | None, "AWS region for s3:// and glue:// sources"] = None,
    ) -> None:
        self.location = str(source)
        self.target_url = target
        self.options = {
            "include": include,
            "exclude": exclude,
            "password": password,
            "region": region,
        }
        self.settings = ProfileSettings(
            mode, sample_percent, sample_rows, sample_limit, top_values, distinct
        )
        self.on_drift = on_drift
        self.api: dict[str, Any] = {
            "url": api_url,
            "token": api_token,
            "timeout": api_timeout,
            "attempts": api_attempts,
            "page_bytes": page_bytes,
        }
        self._source: Any = None
        self._store: Any = None
        self._catalog: Any = None
        # The target's default lives in the orchestrator home, which only a task's context names
        # (_recorded sets it before anything opens the store).
        self._home: Any = None

    # ------------------------------------------------------------------ validation

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> Iterable[tuple[str, str]]:
        """The source type must be known and its location plausible; nothing is opened."""
        from .checks import param_problems

        return param_problems(params)

    @classmethod
    def validate_args(
        cls, task: str, args: dict[str, Any], params: dict[str, Any]
    ) -> Iterable[tuple[str, str]]:
        from .checks import arg_problems

        return arg_problems(task, args, params)

    @classmethod
    def task_lineage(cls, task: str, args: dict[str, Any], params: dict[str, Any],
                     result: Any = None) -> Any:
        """What the task reads and writes, for lineage events (``executors/lineage.py``)."""
        from .. import lineage

        return lineage.metadata(task, args, params)

    def check(self) -> list[str]:
        from .checks import param_problems

        return [message for _, message in param_problems(self._params())]

    def _params(self) -> dict[str, Any]:
        return {
            "source": self.location,
            "target": self.target_url,
            **self.options,
            "api_url": self.api["url"],
        }

    # ------------------------------------------------------------------ tasks

    @task
    def extract(self, context: Context) -> MetadataMetrics:
        """Catalog the source (tables or files, columns, types, keys, counts,
        sizes) into the target."""
        with self._recorded(context, "extract") as log:
            catalog = self._extract(context)
            log("info", f"{len(catalog.tables)} tables, {catalog.column_count} columns "
                        f"({catalog.queries} catalog queries)")
            return MetadataMetrics(
                total_rows=_known_rows(catalog),
                tables_seen=len(catalog.tables),
                columns_seen=catalog.column_count,
                execution_metadata={"source": self.display, "catalog_queries": catalog.queries},
            )

    @task
    def profile(
        self,
        context: Context,
        tables: Annotated[list[str] | None, "Only these tables (glob patterns)"] = None,
    ) -> MetadataMetrics:
        """Per column: nulls, distinct (exact or approximate, said which), min/max, mean,
        top and sample values."""
        import fnmatch

        with self._recorded(context, "profile", self.settings.mode) as log:
            catalog = self._catalog or self._extract(context)
            # Views are catalogued, not profiled: a view's aggregates would run its defining query
            # over everything it reads.
            chosen = [t for t in catalog.tables if t.file_type not in ("view", "materialized view")
                      and (not tables or any(fnmatch.fnmatchcase(t.name, p) for p in tables))]
            # Optional: the SQL source reads pg_stats (PostgreSQL, estimate mode) for all chosen
            # tables in one query, not one per table; a plugin's source need not offer it.
            if hasattr(self.source, "set_tables"):
                self.source.set_tables(chosen)
            rows = scanned = 0
            for table in chosen:
                context.check_cancelled()
                result = self.source.profile(table, self.settings, context.check_cancelled)
                # Written table by table: a cancel or a failure halfway keeps the tables already
                # profiled.
                self.store.write_profile(context.run_id, self.source_key, catalog, result)
                rows += result.row_count or 0
                scanned += result.bytes_scanned or 0
                log("info", f"{table.name}: {result.row_count} rows, {result.mode}"
                            + (f" ({result.note})" if result.note else ""))
            return MetadataMetrics(
                total_rows=rows,
                tables_seen=len(chosen),
                columns_seen=sum(len(t.columns) for t in chosen),
                rows_profiled=rows,
                bytes_scanned=scanned or None,
                execution_metadata={"source": self.display, "mode": self.settings.mode},
            )

    @task
    def check_schema(
        self,
        context: Context,
        expected: Annotated[
            dict | None,
            "{'schema.table': [column or {name, type}]}; default: " "the previous extraction",
        ] = None,
    ) -> MetadataMetrics:
        """Report columns added, removed or retyped since the previous extraction (or
        versus ``expected``)."""
        from . import drift

        with self._recorded(context, "check_schema") as log:
            catalog = self._catalog or self._extract(context)
            after = drift.current_columns(catalog)
            if expected is not None:
                against, before = "expected", drift.expected_columns(expected)
                # Only the tables `expected` names: it says what the routine cares about.
                changes = drift.compare(before, after, set(expected))
            else:
                against, before = self.store.previous_columns(self.source_key, context.run_id)
                wanted = getattr(self.source, "wanted", None)
                # The previous extraction's tables that include/exclude now leave out are not
                # compared: narrowing the globs must not report all their columns as removed.
                tables = {t for t, _ in before if wanted is None or wanted(t)} | {
                    t.name for t in catalog.tables
                }
                changes = drift.compare(before, after, tables) if against else []
                against = against or "none"
            # Recorded before on_drift can fail the task: a failed check still shows what changed.
            self.store.write_changes(context.run_id, self.source_key, changes, against)
            if changes:
                message = f"schema drift against {against}: {drift.describe(changes)}"
                if self.on_drift == "fail":
                    raise SchemaDrift(message)
                log("warning", message)
            else:
                log("info", f"no schema drift against {against}")
            return MetadataMetrics(drift_found=len(changes), tables_seen=len(catalog.tables),
                                   execution_metadata={"compared_with": against})

    @task
    def publish(self, context: Context) -> MetadataMetrics:
        """POST this run's metadata to ``api_url`` (bearer token, retries,
        idempotency key, pages)."""
        from .publish import Publisher

        if not self.api["url"]:
            raise ValueError("publish needs the api_url param")
        with self._recorded(context, "publish") as log:
            # What gets published is this run's rows: a publish whose run did not extract here (a
            # resume skipped the extract step, a publish-only step) writes the catalog first.
            if self._catalog is None:
                self._extract(context)
            document = {"run_id": context.run_id, "source": self.display,
                        **self.store.run_document(context.run_id, self.source_key)}
            publisher = Publisher(
                self.api["url"],
                self.api["token"],
                self.api["timeout"],
                self.api["attempts"],
                page_bytes=self.api["page_bytes"],
                wait=context.wait,
                log=lambda m: log("warning", m),
            )
            # A resumed run keys its pages with the first run's id: the API recognises the pages
            # the crashed run already delivered instead of taking them twice.
            key = f"{context.resumed_from or context.run_id}/{context.step}/publish"
            pages = publisher.publish(document, key)
            log("info", f"published {len(document['columns'])} columns in {pages} page(s)")
            return MetadataMetrics(
                tables_seen=len(document["tables"]),
                columns_seen=len(document["columns"]),
                execution_metadata={"pages": pages, "attempts": publisher.attempts},
            )

    @classmethod
    def run_summary(cls, params: dict[str, Any], run_id: str) -> dict[str, Any]:
        """What one run wrote for these params, read back from the target (for
        ``orchestrate metadata``)."""
        from orchestrator.home import home_dir

        from .store import MetadataStore
        from .urls import mask_url, source_id

        target = params.get("target") or default_target(home_dir())
        store = MetadataStore(target)
        try:
            # The masked URL, as the executor keys its rows (source_key): the same rows are found.
            display = mask_url(str(params["source"]))
            doc = store.run_document(run_id, source_id(display))
        finally:
            store.close()
        return {"source": display, "target": mask_url(target), **doc}

    # ------------------------------------------------------------------ helpers

    @property
    def source(self) -> Any:
        if self._source is None:
            from .source import find_source

            self._source = find_source(self.location, self.options)
        return self._source

    @property
    def display(self) -> str:
        from .urls import mask_url

        return mask_url(self.location)

    @property
    def source_key(self) -> str:
        from .urls import source_id

        return source_id(self.display)

    @property
    def store(self) -> Any:
        if self._store is None:
            from .store import MetadataStore

            self._store = MetadataStore(self.target_url or default_target(self._home))
        return self._store

    def _extract(self, context: Context) -> Any:
        """Read the catalog and write it for this run (a task after a resume extracts again)."""
        catalog = self.source.extract()
        self.store.write_catalog(context.run_id, self.source_key, self.display, catalog)
        self._catalog = catalog
        return catalog

    @contextlib.contextmanager
    def _recorded(self, context: Context, name: str, mode: str | None = None) -> Iterator[Any]:
        """Run a task body; record its outcome and log lines in executor_runs and logs."""
        self._home = context.home
        started = _now()
        lines: list[tuple[str, str, str]] = []

        def log(level: str, message: str) -> None:
            getattr(context.logger, level)(message)
            lines.append((_now(), level, message))

        try:
            yield log
        # BaseException: Ctrl-C is recorded as a failure too. Best effort: the store may be what
        # failed, and the task's own error must be the one raised.
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            lines.append((_now(), "error", error))
            with contextlib.suppress(Exception):
                self.store.record_task(
                    context.run_id,
                    self.source_key,
                    name,
                    __version__,
                    mode,
                    "failed",
                    error,
                    started,
                    lines,
                )
            raise
        self.store.record_task(
            context.run_id,
            self.source_key,
            name,
            __version__,
            mode,
            "succeeded",
            None,
            started,
            lines,
        )

    def close(self) -> None:
        for part in (self._source, self._store):
            if part is not None:
                # One part failing to close must not leave the other open.
                with contextlib.suppress(Exception):
                    part.close()


def default_target(home: Any) -> str:
    return f"sqlite:///{home / 'metadata.db'}"


def _known_rows(catalog: Any) -> int | None:
    counts = [t.row_count for t in catalog.tables if t.row_count is not None]
    return sum(counts) if counts else None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
