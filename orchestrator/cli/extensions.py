"""Commands kept outside ``cli/`` (the home config, the catalog, generate) and the examples every
command's help ends with. Importing this module costs only argparse: the modules of those commands
are imported only when their parser is built, and each command imports its work.
"""

from __future__ import annotations

import argparse
from typing import Any

# Each command's function, as "module:function" (see ``commands``).
COMMANDS = {
    "config": "orchestrator.catalog.commands:cmd_config",
    "publish": "orchestrator.catalog.commands:cmd_publish",
    "routines": "orchestrator.catalog.commands:cmd_routines",
    "generate": "orchestrator.generate.commands:cmd_generate",
}

EXAMPLES = {
    "backfill": "example:\n"
    "  orchestrate backfill routines/daily.yaml --param run_date=2026-11-01..2026-11-07\n"
    "  orchestrate backfill routines/daily.yaml -p run_date=2026-11-01..2026-11-30"
    " --max-parallel 4",
    "report": "example:\n  orchestrate report RUN_ID -o run.html\n"
    "  orchestrate report routines/daily.yaml --history 30",
    "check": "example:\n  orchestrate check                  every routine with an expect: block\n"
    "  orchestrate check routines/daily.yaml",
    "metadata": "example:\n"
    "  orchestrate metadata postgresql+psycopg://postgres@127.0.0.1/test --include 'public.*'\n"
    "  orchestrate metadata ./landing --json",
    "run": "example:\n  orchestrate run routines/daily.yaml --param run_date=2026-11-21\n"
    "  orchestrate run daily@3            a published version, fetched and verified first",
    "validate": "example:\n  orchestrate validate routines/daily.yaml --param run_date=2026-11-21",
    "plan": "example:\n  orchestrate plan daily@latest --json",
    "runs": "example:\n  orchestrate runs --routine daily --status failed --limit 5",
    "show": "example:\n  orchestrate show 3f2c            (a unique prefix is enough)",
    "logs": "example:\n  orchestrate logs 3f2c --follow",
    "wait": "example:\n  orchestrate wait 3f2c --timeout 3600; echo $?",
    "cancel": "example:\n  orchestrate cancel 3f2c",
    "resume": "example:\n  orchestrate resume 3f2c --param password=...",
    "doctor": "example:\n  orchestrate doctor routines/daily.yaml",
    "plugins": "example:\n  orchestrate plugins --json",
    "schema": "example:\n  orchestrate schema > routine.schema.json",
}


def add_parsers(
    sub: Any, common: argparse.ArgumentParser, routine: argparse.ArgumentParser
) -> None:
    """Add this module's commands, and an example to each existing command's help. With ``sub``
    building one command's parser only (``sub.only``), the others' modules are not imported."""
    for name, parser in sub.choices.items():
        # A command that wrote its own epilog keeps it. The examples are laid out by hand (one
        # command per line, aligned notes): the default formatter would rewrap them into one
        # paragraph.
        if name in EXAMPLES and not parser.epilog:
            parser.epilog = EXAMPLES[name]
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
    only = getattr(sub, "only", None)
    if only is None or COMMANDS.get(only, "").startswith("orchestrator.catalog."):
        from ..catalog import commands as catalog_commands

        catalog_commands.add_parsers(sub, common, routine)
    if only is None or COMMANDS.get(only, "").startswith("orchestrator.generate."):
        from ..generate import commands as generate_commands

        generate_commands.add_parsers(sub, common, routine)
