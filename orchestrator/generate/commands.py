"""The CLI's side of ``orchestrate generate``. Only argparse is imported here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# Every target's own flags: all are read for every target so that check_options can refuse one the
# chosen target would silently ignore.
TARGET_OPTIONS = (
    "schedule",
    "s3_trigger",
    "store",
    "memory",
    "timeout",
    "architecture",
    "policy_arn",
    "image",
)
EXAMPLE = """examples:
  orchestrate generate routines/daily.yaml                       -> ./daily.pyz
  ./daily.pyz --param run_date=2026-11-21                        run it (--dry-run: the plan)
  orchestrate generate daily@3 --target docker -o build/daily    Dockerfile, app.pyz, run.sh
  build/daily/run.sh --param run_date=2026-11-21                 builds the image if needed, runs it
  orchestrate generate daily@latest --target lambda --schedule 'cron(0 6 * * ? *)' \
      --store dynamodb://runs
  orchestrate generate daily@3 --target lambda --s3-trigger s3://landing/orders/ \
      --architecture arm64

targets:
  script   one executable file (zipapp): the routine, its files, the orchestrator, its dependencies
           pinned to what is installed here (compiled ones built for this OS, CPU and Python)
  docker   a build context (Dockerfile pinned to this orchestrator and the routine's files) and
           run.sh, which builds the image if needed and runs the routine in it (same exit code)
  lambda   function.zip (Lambda Python runtime, wheels for its platform) and template.yaml (SAM):
           schedule or S3 trigger, dead-letter queue, least-privilege IAM derived from the routine

The version of a catalog routine goes in NAME@VERSION; -v means --verbose, as everywhere.
An existing output file is never replaced without --force (exit 2 names it)."""


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, routine: argparse.ArgumentParser
) -> None:
    parser = sub.add_parser(
        "generate",
        parents=[common, routine],
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="make a standalone script, a Docker build or a Lambda deployment of a routine",
    )
    parser.add_argument(
        "--target",
        "-t",
        default="script",
        metavar="TARGET",
        help="script (default), docker, lambda, step-functions, or one a plugin adds",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="file (script) or folder (docker, lambda) to write; "
        "default ./NAME.pyz, ./NAME-docker/, "
        "./NAME-lambda/",
    )
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be written; write nothing"
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="also ship this file or folder (relative to the routine); files only",
    )
    lam = parser.add_argument_group("lambda options")
    trigger = lam.add_mutually_exclusive_group()
    trigger.add_argument(
        "--schedule",
        metavar="EXPR",
        help="EventBridge schedule: 'cron(0 6 * * ? *)' or 'rate(1 hour)'",
    )
    trigger.add_argument(
        "--s3-trigger",
        metavar="s3://BUCKET/PREFIX/",
        help="run once per object created under this prefix (EventBridge S3 events)",
    )
    lam.add_argument(
        "--store", metavar="URL", help="run store, e.g. dynamodb://TABLE (granted to the function)"
    )
    lam.add_argument("--memory", type=int, metavar="MB", help="function memory (default 1024)")
    lam.add_argument(
        "--timeout", type=int, metavar="SECONDS", help="function timeout (default 900)"
    )
    lam.add_argument(
        "--architecture", choices=("x86_64", "arm64"), help="function CPU (default: x86_64)"
    )
    lam.add_argument(
        "--policy-arn",
        action="append",
        default=[],
        metavar="ARN",
        help="attach this managed policy too (for what the routine's own code calls)",
    )
    parser.add_argument_group("docker options").add_argument(
        "--image",
        metavar="NAME[:TAG]",
        help="image name (default orchestrator-NAME:VERSION, under docker.registry)",
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..catalog.catalog import Catalog
    from ..catalog.commands import say_for
    from ..catalog.refs import parse_ref
    from ..routine.load import load_routine, parse_param_overrides
    from ..errors import UserError
    from ..registry import Registry
    from .targets import BUILT_IN, Job, check_options, find_target, write_output

    say = say_for(args)
    registry = Registry()
    target = find_target(args.target, registry)
    options = {name: getattr(args, name) for name in TARGET_OPTIONS}
    # Who reads which flag, so the refusal can say which target a stray flag belongs to.
    known = {name: find_target(name, registry).options for name in BUILT_IN}
    known[target.name] = target.options
    check_options(target, options, known)
    params = parse_param_overrides(args.param)
    ref = parse_ref(args.routine)
    if ref is not None:
        if args.include:
            raise UserError(
                "--include applies to routine files; a published version already holds its files"
            )
        bundle = Catalog.from_config(registry=registry).fetch(ref, say)
    else:
        from ..catalog.bundle import collect

        say(f"validating {args.routine} and finding the files it names")
        bundle = collect(args.routine, params, registry, tuple(args.include))
    # Loaded from the copy that will be shipped (a fetched version's cache folder), so its relative
    # paths resolve the way they will where it runs.
    routine = load_routine(bundle.routine_path, params, registry)
    # The default output name comes from the job itself, so the path is filled in just after.
    job = Job(bundle, routine, Path("."), {**options, "param": params}, registry, say)
    job.output = Path(args.output or target.default_output(job))
    steps = target.plan(job)
    if args.dry_run:
        if args.json:
            print(
                json.dumps(
                    {
                        "target": target.name,
                        "routine": job.label,
                        "output": str(job.output),
                        "steps": steps,
                    },
                    indent=2,
                )
            )
        else:
            print(f"would generate {target.name} for {job.label} at {job.output}:")
            for number, step in enumerate(steps, 1):
                print(f"  {number}. {step}")
        return 0
    paths = write_output(target, job, args.force)
    if args.json:
        print(
            json.dumps(
                {
                    "target": target.name,
                    "routine": job.label,
                    "output": str(job.output),
                    "files": [{"path": str(p), "bytes": p.stat().st_size} for p in paths],
                },
                indent=2,
            )
        )
    elif not args.quiet:
        for path in paths:
            print(
                f"{path}  ({path.stat().st_size / 1e6:.1f} MB)"
                if path.stat().st_size > 100_000
                else str(path)
            )
    if not args.quiet and not args.json:
        print(f"generated {target.name} for {job.label}", file=sys.stderr)
    return 0


COMMANDS = {"generate": cmd_generate}
