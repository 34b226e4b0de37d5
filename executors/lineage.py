"""What the built-in executors' tasks read and write (``Executor.task_lineage``), named after
OpenLineage's dataset naming: ``s3://bucket`` + key, ``file`` + path, Athena
``awsathena://athena.REGION.amazonaws.com`` + ``catalog.database.table``, Redshift
``redshift://CLUSTER.REGION:5439`` + ``database.schema.table``, Glue
``arn:aws:glue:REGION:ACCOUNT`` + ``table/database/table``. Each function answers from the task's
args and the step's params only, and leaves out what it cannot know.
"""
from __future__ import annotations

import os
from typing import Any, Iterable
from urllib.parse import urlsplit

from orchestrator.executor import Dataset, Lineage
from orchestrator.lineage.sql import SqlTables, tables

# Words in a Glue job argument's name that mark it as written (any other is read). The key is
# matched with '_' around it, so out_ and _out also catch an argument named just --out.
_OUTPUT_WORDS = ("output", "target", "dest", "sink", "write", "out_", "_out")


def staging(task: str, args: dict[str, Any], params: dict[str, Any]) -> Lineage | None:
    """``transfer``: landing -> dump; ``post_staging``: landing -> archive (or nothing, deleted)."""
    landing, dump = params.get("parent_directory"), params.get("dump_directory")
    if not isinstance(landing, str) or not landing:
        return None
    if task == "transfer" and isinstance(dump, str) and dump:
        return Lineage((Dataset.at(landing),), (Dataset.at(dump),))
    if task == "post_staging":
        from .staging.locations import default_archive

        archive = params.get("archive_directory") or default_archive(landing)
        keep = params.get("archive_or_delete", "archive") == "archive" and archive
        return Lineage((Dataset.at(landing),), (Dataset.at(str(archive)),) if keep else ())
    if task == "wait_for_files":
        return Lineage((Dataset.at(landing),))
    return None


def athena(task: str, args: dict[str, Any], params: dict[str, Any]) -> Lineage | None:
    database = str(params.get("database") or "default")
    catalog = str(params.get("catalog") or "AwsDataCatalog")
    namespace = f"awsathena://athena.{_region(params)}.amazonaws.com"

    def table(name: str) -> Dataset:
        parts = name.split(".")
        # OpenLineage names an Athena table catalog.database.table; a shorter name gets its missing
        # leading parts from the step's params.
        full = [catalog, database][:3 - len(parts)] + parts if len(parts) < 3 else parts
        return Dataset(namespace, ".".join(full))

    if task == "run_query" and isinstance(args.get("sql"), str):
        return _from_sql(tables(args["sql"]), table)
    if task == "create_table_as" and isinstance(args.get("sql"), str):
        found = tables(args["sql"])
        return Lineage(tuple(map(table, found.inputs)), (table(str(args.get("table"))),))
    if task in ("create_table", "repair_table") and isinstance(args.get("table"), str):
        return Lineage((), (table(args["table"]),))
    return None


def redshift(task: str, args: dict[str, Any], params: dict[str, Any]) -> Lineage | None:
    where = params.get("cluster_identifier") or params.get("workgroup_name") or "redshift"
    # OpenLineage's Redshift namespace carries a port, which the Data API never tells: 5439 is
    # Redshift's default. dev and public are Redshift's default database and schema.
    namespace = f"redshift://{where}.{_region(params)}:5439"
    database = str(params.get("database") or "dev")

    def table(name: str) -> Dataset:
        parts = name.split(".")
        full = [database, "public"][:3 - len(parts)] + parts if len(parts) < 3 else parts
        return Dataset(namespace, ".".join(full))

    if task == "run_sql" and isinstance(args.get("sql"), str):
        return _from_sql(tables(args["sql"]), table)
    if task == "copy_from_s3" and isinstance(args.get("table"), str):
        source = args.get("s3_path")
        inputs = (Dataset.at(source),) if isinstance(source, str) and source else ()
        return Lineage(inputs, (table(args["table"]),))
    if task == "unload_to_s3" and isinstance(args.get("sql"), str):
        target = args.get("s3_path")
        outputs = (Dataset.at(target),) if isinstance(target, str) and target else ()
        return Lineage(tuple(map(table, tables(args["sql"]).inputs)), outputs)
    if task == "create_table" and isinstance(args.get("table"), str):
        return Lineage((), (table(args["table"]),))
    return None


def glue(task: str, args: dict[str, Any], params: dict[str, Any]) -> Lineage | None:
    """``run_job``: its arguments' ``s3://`` values and ``--...table`` names (an argument whose
    name says output/target/destination/sink is written, any other read); catalog tasks: the
    table they define."""
    # Without catalog_id the account is unknown here: lineage makes no AWS call to ask.
    namespace = f"arn:aws:glue:{_region(params)}:{params.get('catalog_id') or 'default'}"
    if task in ("create_table", "update_table"):
        if isinstance(args.get("database"), str) and isinstance(args.get("table"), str):
            return Lineage((), (Dataset(namespace, f"table/{args['database']}/{args['table']}"),))
        return None
    if task != "run_job" or not isinstance(args.get("arguments"), dict):
        return None
    # --Output_Path and output_path are the same argument as far as naming goes.
    arguments = {str(k).lstrip("-").lower(): v for k, v in args["arguments"].items()}
    database = arguments.get("database") or arguments.get("database_name")
    inputs: list[Dataset] = []
    outputs: list[Dataset] = []
    for key, value in arguments.items():
        side = outputs if any(word in f"_{key}_" for word in _OUTPUT_WORDS) else inputs
        if isinstance(value, str) and value.startswith("s3://"):
            side.append(Dataset.at(value))
        elif isinstance(value, str) and "table" in key and value:
            name = value if "." in value or not database else f"{database}.{value}"
            # Glue datasets are named table/DATABASE/TABLE; a table without a known database cannot
            # be named, so it is left out rather than guessed.
            if "." in name:
                side.append(Dataset(namespace, "table/" + name.replace(".", "/", 1)))
    return Lineage(tuple(inputs), tuple(outputs))


def metadata(task: str, args: dict[str, Any], params: dict[str, Any]) -> Lineage | None:
    """The source it catalogs or profiles is read; credentials never appear in the name."""
    source = params.get("source")
    if not isinstance(source, str) or not source or task == "publish":
        return None
    return Lineage((_source_dataset(source),))


def _source_dataset(source: str) -> Dataset:
    if source.startswith("glue://"):
        return Dataset("awsglue", source[len("glue://"):])
    if "://" in source and not source.startswith(("s3://", "file://")):
        url = urlsplit(source)
        # postgresql+psycopg is postgresql: the driver is not part of the dataset's name.
        scheme = url.scheme.split("+")[0]
        if scheme == "sqlite":
            return Dataset("sqlite", url.path.lstrip("/") or ":memory:")
        # Host and port only: a user and password in the URL never reach the name.
        host = url.hostname or "localhost"
        port = f":{url.port}" if url.port else ""
        return Dataset(f"{scheme}://{host}{port}", url.path.lstrip("/"))
    return Dataset.at(source)


def python(result: Any) -> Lineage | None:
    """A python task's function says what it read and wrote by returning
    ``{"lineage": {"inputs": [...], "outputs": [...]}}`` (each ``s3://...``, a path, or
    ``{"namespace": ..., "name": ...}``) beside its other outputs; nothing else is guessed."""
    declared = result.get("lineage") if isinstance(result, dict) else None
    if not isinstance(declared, dict):
        return None
    return Lineage(tuple(_datasets(declared.get("inputs"))),
                   tuple(_datasets(declared.get("outputs"))))


def _datasets(values: Any) -> Iterable[Dataset]:
    for value in values if isinstance(values, list) else ():
        if isinstance(value, str) and value:
            yield Dataset.at(value)
        elif isinstance(value, dict) and isinstance(value.get("namespace"), str) \
                and isinstance(value.get("name"), str):
            yield Dataset(value["namespace"], value["name"])


def _from_sql(found: SqlTables, table: Any) -> Lineage:
    inputs = [*map(table, found.inputs), *map(Dataset.at, found.input_locations)]
    outputs = [*map(table, found.outputs), *map(Dataset.at, found.output_locations)]
    return Lineage(tuple(inputs), tuple(outputs))


def _region(params: dict[str, Any]) -> str:
    region = params.get("region") or os.environ.get("AWS_REGION") \
        or os.environ.get("AWS_DEFAULT_REGION")
    # A placeholder rather than an error: lineage is best effort and must not fail a run.
    return str(region or "unknown-region")
