"""The CLI's side of the home config and the catalog: ``config``, ``publish``, ``routines``.

Only argparse is imported here; the work is imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

EXAMPLES = {
    "config": """examples:
  orchestrate config show                       effective values and where each comes from
  orchestrate config set catalog s3://acme-routines/catalog/
  orchestrate config set docker.run_options '["--network", "host"]'
  orchestrate config unset artifacts

keys: catalog, artifacts, docker.base_image, docker.registry, docker.run_options; each has an
environment override (ORCHESTRATOR_CATALOG, ORCHESTRATOR_ARTIFACTS, ORCHESTRATOR_DOCKER_BASE_IMAGE,
ORCHESTRATOR_DOCKER_REGISTRY, ORCHESTRATOR_DOCKER_RUN_OPTIONS). The file is
$ORCHESTRATOR_HOME/config.json (default ~/.orchestrator/config.json).""",
    "publish": """example:
  orchestrate publish routines/daily.yaml                 -> daily@1, then daily@2, ...
  orchestrate publish routines/daily.yaml --version 2026.11 --include lookups/
  orchestrate run daily@latest --param run_date=2026-11-21

The routine is validated, then stored with every file it names (transform and python executor
files, py_exec folders, sql_file files) under their SHA-256. A version is never overwritten.""",
    "routines": """examples:
  orchestrate routines              every routine in the catalog with its versions
  orchestrate routines daily        one routine's versions: when, by which orchestrator""",
}


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, routine: argparse.ArgumentParser
) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    config = sub.add_parser(
        "config",
        parents=[common],
        help="show or edit the home config (catalog, artifacts, docker)",
        epilog=EXAMPLES["config"],
        formatter_class=raw,
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser(
        "show", parents=[common], help="the effective config and where each value comes from"
    )
    setter = actions.add_parser(
        "set", parents=[common], help="write KEY VALUE into the config file"
    )
    setter.add_argument("key", metavar="KEY")
    setter.add_argument("value", metavar="VALUE")
    actions.add_parser(
        "unset", parents=[common], help="remove KEY from the config file"
    ).add_argument("key", metavar="KEY")
    publish = sub.add_parser(
        "publish",
        parents=[common, routine],
        help="store a routine and its files in the catalog",
        epilog=EXAMPLES["publish"],
        formatter_class=raw,
    )
    publish.add_argument(
        "--version",
        dest="publish_version",
        metavar="X",
        help="the version to publish as (default: the next integer); never overwritten",
    )
    publish.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="also ship this file or folder (relative to the routine), e.g. data the code reads",
    )
    listing = sub.add_parser(
        "routines",
        parents=[common],
        help="list the routines and versions in the catalog",
        epilog=EXAMPLES["routines"],
        formatter_class=raw,
    )
    listing.add_argument(
        "name", nargs="?", metavar="NAME", help="only this routine, with details per version"
    )


def say_for(args: argparse.Namespace) -> Callable[[str], None]:
    """``--verbose`` says each step on stderr."""
    if getattr(args, "verbose", False):
        return lambda message: print(message, file=sys.stderr)
    return lambda _: None


def cmd_config(args: argparse.Namespace) -> int:
    from ..home_config import KEYS, load_config, set_value

    if args.action in ("set", "unset"):
        file = set_value(args.key, args.value if args.action == "set" else None)
        if not args.quiet:
            print(
                f"{file}: {args.key} {'set' if args.action == 'set' else 'removed'}",
                file=sys.stderr,
            )
        return 0
    config = load_config()
    rows = [config.settings[key.name] for key in KEYS]
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(config.file),
                    "settings": {s.key: {"value": s.value, "source": s.source} for s in rows},
                },
                indent=2,
            )
        )
        return 0
    print(f"# {config.file}")
    width = max(len(s.key) for s in rows)
    for setting in rows:
        value = (
            "-"
            if setting.value is None
            else json.dumps(setting.value) if not isinstance(setting.value, str) else setting.value
        )
        print(f"{setting.key:<{width}}  {value}  ({setting.source})")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from ..routine.load import parse_param_overrides
    from ..registry import Registry
    from .bundle import collect
    from .catalog import Catalog

    say = say_for(args)
    registry = Registry()
    catalog = Catalog.from_config(registry=registry)
    say(f"validating {args.routine}")
    bundle = collect(args.routine, parse_param_overrides(args.param), registry, tuple(args.include))
    say(f"{len(bundle.files)} files under {bundle.root}")
    manifest = catalog.publish(bundle, args.publish_version, say)
    ref = f"{manifest.name}@{manifest.version}"
    if args.json:
        print(
            json.dumps(
                {
                    "routine": manifest.name,
                    "version": manifest.version,
                    "ref": ref,
                    "catalog": catalog.routines.url,
                    "files": {k: v.sha256 for k, v in manifest.files.items()},
                },
                indent=2,
            )
        )
    elif not args.quiet:
        print(ref)
    return 0


def cmd_routines(args: argparse.Namespace) -> int:
    from .catalog import Catalog
    from .refs import RoutineRef

    catalog = Catalog.from_config()
    if args.name:
        rows = []
        for version in catalog.versions(args.name):
            manifest, _ = catalog.manifest(RoutineRef(args.name, version))
            rows.append(
                {
                    "version": version,
                    "published": manifest.published,
                    "orchestrator": manifest.orchestrator,
                    "files": len(manifest.files),
                    "routine": manifest.routine,
                }
            )
        if args.json:
            print(json.dumps({"routine": args.name, "versions": rows}, indent=2))
        else:
            for row in rows:
                print(
                    f"{args.name}@{row['version']}  {row['published']}  "
                    f"orchestrator {row['orchestrator']}  "
                    f"{row['files']} files"
                )
        return 0
    listing = {name: catalog.versions(name) for name in catalog.names()}
    if args.json:
        print(json.dumps({"catalog": catalog.routines.url, "routines": listing}, indent=2))
    else:
        for name, versions in listing.items():
            print(
                f"{name}  latest {versions[-1] if versions else '-'}  "
                f"versions: {', '.join(versions)}"
            )
    return 0


COMMANDS = {"config": cmd_config, "publish": cmd_publish, "routines": cmd_routines}
