"""``orchestrate plugins``, ``schema`` and ``doctor``: the executors installed, and whether
they work here."""

from __future__ import annotations

import argparse
import json
import sys

from ..outcome import ExitCode


def cmd_plugins(args: argparse.Namespace) -> int:
    from ..registry import Registry

    registry = Registry()
    rows = [
        {
            "name": i.name,
            "class": i.class_name,
            "distribution": i.distribution,
            "version": i.version,
            "plugin": i.plugin,
            "tasks": i.tasks,
        }
        for i in registry.executors()
    ]
    conflicts = registry.conflicts()
    broken = [plugin._asdict() for plugin in registry.broken()]
    if args.json:
        claims = {k: [i.origin for i in v] for k, v in conflicts.items()}
        print(json.dumps({"executors": rows, "conflicts": claims, "broken": broken}, indent=2))
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for row in rows:
            # A plugin registered directly (tests, embedding) has no distribution: its plugin name
            # stands in.
            origin = f"{row['distribution']} {row['version']}".strip() or row["plugin"]
            tasks = ", ".join(row["tasks"])
            print(f"{row['name']:<{width}}  {row['class']}  ({origin})  tasks: {tasks}")
        # A plugin that failed to import is listed with its reason rather than left out, so a
        # missing executor can be traced to the plugin that should provide it.
        for plugin in registry.broken():
            print(f"{plugin.name:<{width}}  BROKEN  ({plugin.origin})  {plugin.reason}")
    # Conflicts go to stderr even with --json: stdout keeps its one document, and a human still sees
    # them. Two plugins claiming one name make it unclear which a routine would get: exit 2.
    for name, infos in conflicts.items():
        print(
            f"conflict: executor name {name!r} is claimed by "
            + " and ".join(i.origin for i in infos),
            file=sys.stderr,
        )
    return ExitCode.USAGE if conflicts else ExitCode.OK


def cmd_schema(args: argparse.Namespace) -> int:
    from ..registry import Registry
    from ..routine.schema_export import full_schema

    print(json.dumps(full_schema(Registry()), indent=2))
    return ExitCode.OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..catalog.refs import resolve_routine_arg
    from ..doctor import diagnose

    report = diagnose(resolve_routine_arg(args.routine) if args.routine else None)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for item in report:
            print(f"{'PROBLEM' if item['problems'] else 'ok':7} {item['subject']}")
            for problem in item["problems"]:
                print(f"        - {problem}")
        if not args.routine:
            print("Endpoints are probed per step: orchestrate doctor ROUTINE")
    return ExitCode.OK if all(not item["problems"] for item in report) else ExitCode.FAILED
