"""Dependencies for the Lambda Python runtime's platform (Amazon Linux, x86_64 or arm64).

Pure-Python packages are copied as installed here. A package with compiled parts is copied too when
its installed wheel already fits the runtime (same CPU, Python and a glibc no newer than the
runtime's); otherwise its wheel for the runtime is downloaded once with ``pip download`` (pinned to
the installed version) and cached in the orchestrator home.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from ..errors import UserError
from .packaging import Package

RUNTIME_GLIBC = {"3.9": 26, "3.10": 26, "3.11": 26, "3.12": 34, "3.13": 34}
"""Amazon Linux 2 (glibc 2.26) under python3.9-3.11; Amazon Linux 2023 (glibc 2.34) from 3.12."""
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# manylinux_2_28_x86_64 (PEP 600) or the legacy manylinux1/2010/2014_x86_64; _LEGACY gives the
# glibc minor version each legacy name stands for.
_TAG = re.compile(r"^(?:manylinux_(\d+)_(\d+)|manylinux(1|2010|2014))_(\w+)$")
_LEGACY = {"1": 5, "2010": 12, "2014": 17}


@dataclasses.dataclass(frozen=True)
class Runtime:
    python: str  # "3.11"
    architecture: str  # "x86_64" or "arm64"

    @property
    def machine(self) -> str:
        return MACHINES[self.architecture]

    @property
    def glibc(self) -> int:
        # An unknown Python gets the oldest glibc: a wheel that fits it fits every runtime.
        return RUNTIME_GLIBC.get(self.python, 26)

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platforms(self) -> list[str]:
        # Every manylinux level the runtime's glibc can load, down to 2.17 (manylinux2014's PEP 600
        # name); the legacy name too, since older wheels carry only that one.
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc, 16, -1)]
        return tags + [f"manylinux2014_{self.machine}"]


def fits(tags: list[str], runtime: Runtime) -> bool:
    """Does an installed wheel (its WHEEL file's tags) run on the Lambda runtime?"""
    for tag in tags:
        interpreter, abi, platform = tag.split("-")
        # py3-none is pure Python and abi3 is the stable ABI: both load on any CPython 3 of the
        # runtime.
        if interpreter not in (runtime.abi, "py3") or abi not in (runtime.abi, "abi3", "none"):
            continue
        # A wheel may carry several platform tags joined by '.'
        # (manylinux_2_17_x86_64.manylinux2014_x86_64).
        for part in platform.split("."):
            match = _TAG.match(part)
            if not match or match.group(4) != runtime.machine:
                continue
            minor = int(match.group(2)) if match.group(1) else _LEGACY[match.group(3)]
            if minor <= runtime.glibc:
                return True
    return False


def installed_tags(name: str) -> list[str]:
    text = metadata.distribution(name).read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def for_runtime(package: Package, runtime: Runtime, cache: Path, say=lambda _: None) -> Package:
    if not package.native or fits(installed_tags(package.name), runtime):
        return package
    wheel = download(package, runtime, cache, say)
    folder = cache / wheel.stem
    if not folder.is_dir():
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(folder)
    files = tuple(
        (p.relative_to(folder).as_posix(), p)
        for p in sorted(folder.rglob("*"))
        # RECORD is dropped here as for installed packages: it would not list the .pyc files we
        # add.
        if p.is_file() and not p.name == "RECORD"
    )
    return Package(package.name, package.version, files)


def download(package: Package, runtime: Runtime, cache: Path, say=lambda _: None) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.name.replace('-', '_')}-{package.version}-*{runtime.machine}*.whl"
    # A wheel downloaded by an earlier generate is reused: later builds need no package index.
    found = sorted(cache.glob(pattern), key=lambda p: p.name.lower())
    if found:
        return found[0]
    say(f"downloading {package.pin} for Lambda {runtime.abi} {runtime.architecture}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        # One pinned package at a time: the dependency set is what is installed here
        # (packaging.closure), not what pip would resolve for the runtime.
        "--no-deps",
        # Never an sdist: building one here would compile for this machine, not for the runtime.
        "--only-binary=:all:",
        "--python-version",
        runtime.python,
        "--implementation",
        "cp",
        "--abi",
        runtime.abi,
        *(f"--platform={p}" for p in runtime.platforms()),
        "--dest",
        str(cache),
        package.pin,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = [
        p
        for p in cache.glob("*.whl")
        # Wheel file names spell the project with '_' for '-' (and pip may keep the original case).
        if p.name.lower().startswith(package.name.replace("-", "_").lower())
    ]
    if result.returncode != 0 or not found:
        # pip's last line on stderr is its reason ('No matching distribution found ...').
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise UserError(
            f"cannot get {package.pin} for Lambda {runtime.abi} {runtime.architecture} "
            f"(manylinux, glibc <= 2.{runtime.glibc}): {last}"
        )
    return sorted(found)[0]
