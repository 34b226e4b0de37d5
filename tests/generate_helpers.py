"""Shared by the generate tests: an interpreter with none of our packages, a clean environment,
and the generate command run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEMO = HERE / "generate_demo"


def bare_python() -> str:
    """The interpreter this venv was made from: with ``-I -S`` it sees no site-packages at all."""
    return getattr(sys, "_base_executable", None) or sys.executable


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what a cron job would have: no PYTHONPATH, no venv, a home of its own."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NO_COLOR": "1", **extra}


def demo_copy(folder: Path) -> Path:
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder / "routine.yaml"


def orchestrate(
    *args: str,
    home: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, ORCHESTRATOR_HOME=str(home), NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(result: dict[str, Any]) -> list[tuple[str, str, str, int | None]]:
    return [
        (t["step"], t["task"], t["status"], (t["metrics"] or {}).get("total_rows"))
        for t in result["tasks"]
    ]


PYTHON_IMAGE = "orchestrator-test/python:3.11"


def docker_answers() -> bool:
    import shutil

    if not shutil.which("docker"):
        return False
    probe = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True
    )
    return probe.returncode == 0


def local_python_image() -> str:
    """A base image made here (no registry is reachable): this machine's /usr/bin/python3.11 with
    its standard library and the shared libraries it loads, and static busybox for /bin/sh, imported
    with ``docker import``. Built once; later calls find it."""
    import glob
    import io
    import tarfile

    if (
        subprocess.run(["docker", "image", "inspect", PYTHON_IMAGE], capture_output=True).returncode
        == 0
    ):
        return PYTHON_IMAGE
    python = Path("/usr/bin/python3.11")
    if not python.exists() or not Path("/bin/busybox").exists():
        raise RuntimeError("needs /usr/bin/python3.11 and /bin/busybox to build the base image")
    libraries = {"/lib64/ld-linux-x86-64.so.2", *glob.glob("/lib/x86_64-linux-gnu/libgcc_s.so.1")}
    for binary in [str(python), *glob.glob("/usr/lib/python3.11/lib-dynload/*.so")]:
        listing = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        libraries.update(
            line.split("=>")[1].split()[0]
            for line in listing.splitlines()
            if "=>" in line and "/" in line.split("=>")[1]
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        applets = subprocess.run(
            ["/bin/busybox", "--list"], capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        tar.add(str(python), "usr/bin/python3.11")
        tar.add(
            "/usr/lib/python3.11",
            "usr/lib/python3.11",
            filter=lambda i: None if "/test/" in f"/{i.name}/" or "__pycache__" in i.name else i,
        )
        for library in sorted(libraries):
            tar.add(os.path.realpath(library), library.lstrip("/"))
        for folder in ("tmp", "etc"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    imported = subprocess.run(
        ["docker", "import", "--change", "ENV PATH=/usr/bin:/bin", "-", PYTHON_IMAGE],
        input=buffer.getvalue(),
        capture_output=True,
    )
    if imported.returncode != 0:
        raise RuntimeError(imported.stderr.decode())
    return PYTHON_IMAGE
