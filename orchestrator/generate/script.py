"""``--target script``: one executable file (a zipapp) that runs the routine on a machine with
Python and nothing else of ours.

Inside: ``__main__.py`` (standard library only) and ``payload.zip`` (the orchestrator, every
dependency pinned to the version installed here, the routine and its files, ``app.json``). Compiled
dependencies (rpds-py for jsonschema, PyYAML's and wrapt's speedups) are bundled as built for this
machine, not fetched at run time: cron boxes and containers often have no package index, and the
files that run are the files that were tested. The script therefore runs on the same OS, CPU
architecture and Python minor version (it says so and exits 2 elsewhere; generate it there).
The payload is unpacked once into a per-user cache, where later runs start like an installed
package.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from .archive import Archive
from .packaging import packages
from .targets import Job

MAIN_TEMPLATE = Path(__file__).with_name("pyz_main.py")
# pyz_main.py stays a real, importable module with an empty APP in it; generating swaps this exact
# expression for the app's facts. The launcher() assert catches the template drifting from it.
PLACEHOLDER = 'json.loads("{}")'


def payload(job: Job) -> tuple[Archive, dict[str, Any]]:
    """The payload archive and the facts about it the launcher needs."""
    ours, texts, deps = packages()
    archive = Archive()
    job.say(f"bundling {ours.pin} and {len(deps)} dependencies: " + ", ".join(d.pin for d in deps))
    archive.add_packages([ours, *deps], prefix="site/")
    for relative, text in texts.items():
        archive.add_bytes(f"site/{relative}", text.encode())
    entries = job.bundle.entries()
    for relative, path in job.bundle.files.items():
        archive.add_file(f"routine/{relative}", path)
    job.say(f"bundling the routine {job.bundle.routine} and {len(entries) - 1} files it names")
    # The launcher refuses another OS or CPU only when something compiled is bundled: a pure-Python
    # payload runs anywhere with the same Python minor version (its .pyc files are for that
    # version).
    native = sorted(d.name for d in deps if d.native)
    app = {
        "name": job.bundle.name,
        "ref": job.label,
        "routine": job.bundle.routine,
        "files": {rel: {"sha256": e.sha256, "size": e.size} for rel, e in entries.items()},
        "orchestrator": ours.version,
        "requirements": [d.pin for d in deps],
        "native": native,
        "python": "%d.%d" % sys.version_info[:2],
        "platform": sys.platform,
        "machine": os.uname().machine,
    }
    archive.add_bytes("app.json", json.dumps(app, indent=2, sort_keys=True).encode())
    return archive, app


def launcher(app: dict[str, Any]) -> bytes:
    source = MAIN_TEMPLATE.read_text()
    assert PLACEHOLDER in source
    return source.replace(
        # Dumped twice: the inner dumps makes the JSON, the outer turns it into a Python string
        # literal (JSON's string escapes are valid Python ones), so no value can break out of the
        # literal.
        PLACEHOLDER, f"json.loads({json.dumps(json.dumps(app, sort_keys=True))})", 1
    ).encode()


class ScriptTarget:
    name = "script"
    summary = "one executable zipapp: the routine, its files, the orchestrator and its dependencies"
    options: frozenset[str] = frozenset()
    folder = False

    def default_output(self, job: Job) -> str:
        return f"{job.bundle.name}.pyz"

    def plan(self, job: Job) -> list[str]:
        native = [d.pin for d in packages()[2] if d.native]
        return [
            f"bundle the orchestrator and its installed dependencies (compiled, for {sys.platform} "
            f"{os.uname().machine} Python {sys.version_info[0]}.{sys.version_info[1]}: "
            f"{', '.join(native)})",
            f"bundle {job.bundle.routine} and {len(job.bundle.files) - 1} files it names",
            f"write {job.output} (executable; runs {job.label} with python{sys.version_info[0]}."
            f"{sys.version_info[1]})",
        ]

    def build(self, job: Job, into: Path) -> None:
        write_script(job, into)


def write_script(job: Job, into: Path) -> dict[str, Any]:
    archive, app = payload(job)
    inner = archive.to_bytes()
    # The payload's digest names the unpack folder on the target machine: a regenerated script
    # never runs an older unpacked copy.
    app["digest"] = hashlib.sha256(inner).hexdigest()
    job.say(
        f"payload: {len(archive.entries)} files, {len(inner) / 1e6:.1f} MB compressed, "
        f"sha256 {app['digest'][:16]}"
    )
    with open(into, "wb") as out:
        # A zip is read from its end, so a shebang line before it leaves a valid zipapp. The
        # shebang names the minor version because the bundled .pyc and compiled modules only load
        # there.
        out.write(f"#!/usr/bin/env python{app['python']}\n".encode())
        with zipfile.ZipFile(out, "w") as outer:
            main = zipfile.ZipInfo("__main__.py", (1980, 1, 1, 0, 0, 0))
            outer.writestr(main, launcher(app), zipfile.ZIP_DEFLATED)
            # stored, not deflated: the launcher unpacks it by seeking inside it
            outer.writestr(
                zipfile.ZipInfo("payload.zip", (1980, 1, 1, 0, 0, 0)), inner, zipfile.ZIP_STORED
            )
    os.chmod(into, 0o755)
    return app


TARGET = ScriptTarget()
