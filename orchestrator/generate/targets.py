"""What a generate target is, where targets come from, and how their output is written safely.

A target builds into a temporary place; only then are its files moved over the output, so a
failed build leaves nothing half-written, and no existing file is replaced without ``--force``.
Targets are built in (``BUILT_IN``) or come from a plugin's ``generate_targets`` hook.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol

from ..errors import UserError

# Import paths, not imported classes: only the chosen target's module (and what it pulls in, such
# as the template code) is imported.
BUILT_IN = {
    "script": "orchestrator.generate.script:TARGET",
    "docker": "orchestrator.generate.docker:TARGET",
    "lambda": "orchestrator.generate.aws_lambda:TARGET",
    "step-functions": "orchestrator.stepfunctions.target:TARGET",
}
GENERAL_OPTIONS = frozenset({"param", "include"})


@dataclasses.dataclass
class Job:
    """One generate request: the routine with its files, where to write, the target's options."""

    bundle: Any  # orchestrator.catalog.bundle.Bundle
    routine: Any  # the validated orchestrator.routine.load.Routine
    output: Path
    options: dict[str, Any]
    registry: Any
    say: Callable[[str], None] = lambda _: None

    @property
    def version(self) -> str:
        """The catalog version, or a digest of the files for a routine generated from a file."""
        if self.bundle.version:
            return str(self.bundle.version)
        digest = hashlib.sha256()
        for relative, entry in self.bundle.entries().items():
            # Separators, so that no two different file lists feed the digest the same text.
            digest.update(f"{relative}\0{entry.sha256}\n".encode())
        return "file-" + digest.hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.bundle.name}@{self.version}"


class Target(Protocol):
    name: str
    summary: str
    options: frozenset[str]  # generate flags it reads, besides --param and --include
    folder: bool  # writes a folder of files (else one file)

    def default_output(self, job: Job) -> str:
        """The output path when ``-o`` is not given (relative to the working folder)."""

    def plan(self, job: Job) -> list[str]:
        """What ``build`` will do, one line per step (``--dry-run``, ``--verbose``)."""

    def build(self, job: Job, into: Path) -> None:
        """Write the output at ``into`` (a file, or a folder that exists and is empty)."""


def find_target(name: str, registry: Any = None) -> Target:
    if name in BUILT_IN:
        module, _, attr = BUILT_IN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    # Asked only when the name is not built in: a plugin cannot replace a built-in target, and a
    # built-in name loads no plugin. A hook implementation may return None.
    plugged = {
        t.name: t
        for found in (registry.hook("generate_targets")() if registry else [])
        for t in found or ()
    }
    if name in plugged:
        return plugged[name]
    known = ", ".join([*BUILT_IN, *plugged])
    raise UserError(f"--target {name}: unknown target; known: {known}")


def check_options(
    target: Target, given: dict[str, Any], all_targets: dict[str, frozenset[str]]
) -> None:
    """A flag another target reads is a mistake here, not something to ignore silently."""
    for option, value in given.items():
        # None, [] and False are argparse's values for a flag that was not given.
        if value in (None, [], False) or option in GENERAL_OPTIONS or option in target.options:
            continue
        users = sorted(name for name, options in all_targets.items() if option in options)
        flag = "--" + option.replace("_", "-")
        raise UserError(
            f"{flag} does not apply to --target {target.name} (it applies to: {', '.join(users)})"
        )


def write_output(target: Target, job: Job, force: bool) -> list[Path]:
    """Build into a temporary place beside the output, then move the result over it."""
    output = job.output
    output.parent.mkdir(parents=True, exist_ok=True)
    if not target.folder:
        if output.exists() and not force:
            raise UserError(f"{output} exists; pass --force to replace it")
        # Beside the output so that os.replace is a rename on one file system: the output is either
        # the old file or the new one, never a partial write. The handle is closed because build()
        # opens the path itself.
        handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
        os.close(handle)
        try:
            target.build(job, Path(temporary))
            os.replace(temporary, output)
        finally:
            # After a successful replace the temporary name is gone; it is only left over when
            # build failed.
            if os.path.exists(temporary):
                os.unlink(temporary)
        return [output]
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        target.build(job, staging)
        files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
        # Checked after the build and before anything moves: without --force an existing output
        # folder is left exactly as it was. Files of the folder that this build does not write are
        # kept.
        clashes = [output / f for f in files if (output / f).exists()]
        if clashes and not force:
            raise UserError(
                f"{clashes[0]} exists; pass --force to replace it"
                + (f" (and {len(clashes) - 1} more files)" if len(clashes) > 1 else "")
            )
        for relative in files:
            (output / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, output / relative)
        return [output / f for f in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
