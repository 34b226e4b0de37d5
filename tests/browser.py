"""Headless Chromium (Debian's ``chromium``) for tests of HTML output: the DOM after scripts ran,
console messages, a screenshot. Offline: a fresh profile, no background networking."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--enable-logging=stderr", "--v=0")
# Chromium logs every console call, uncaught error and blocked load of a page, whatever its level,
# as `...:INFO:CONSOLE:1] "text", source: URL (1)` (older builds: `CONSOLE(1)]`).
_CONSOLE = re.compile(r'CONSOLE[:(]\d+\)?\] "(.*)", source: ')


def chromium_path() -> str:
    """The browser, or a skip (a failure on CI, where .ci/run installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@dataclasses.dataclass
class Page:
    dom: str
    console: list[str]  # everything the page logged: our pages log nothing, so any line is a problem


def render(page: Path, screenshot: Path | None = None, timeout: float = 90) -> Page:
    """Load ``page`` from disk; return its DOM after scripts ran and what it logged."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        base = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"]
        dumped = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                                timeout=timeout)
        if screenshot is not None:
            subprocess.run([*base, f"--screenshot={screenshot}", page.as_uri()], capture_output=True,
                           text=True, timeout=timeout, check=True)
    lines = dumped.stderr.splitlines()
    console = [m.group(1) for line in lines if (m := _CONSOLE.search(line))]
    return Page(dumped.stdout, console)
