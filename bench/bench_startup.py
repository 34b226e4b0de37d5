"""CLI start-up, whole processes: `orchestrate --version`, `--help`, `plugins`, `validate` and `run`
of a 1-task routine (a no-op executor from a pip-installed plugin, default SQLite tracking on),
against a bare interpreter; and whether each imported boto3.

    python bench/bench_startup.py [--repeat 21] [--python OTHER_VENV/bin/python ...]

`--python` adds interpreters (another checkout's virtualenv, say) measured in the same run,
interleaved, so that a busy machine slows every variant alike. "warm" is the usual case, the
plugin index cached in the orchestrator home; "cold" removes the cache before each run (the first
run after a `pip install`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOOP_MODULE = '''
from orchestrator import Executor, hookimpl, task


class Noop(Executor):
    """Does nothing: what is left is the orchestrator's own cost."""

    name = "noop"

    @task
    def nothing(self):
        """Returns at once."""
        return None


@hookimpl
def register_executors():
    return [Noop]
'''
NOOP_SETUP = """[metadata]
name = bench-noop
version = 1.0

[options]
py_modules = bench_noop_plugin

[options.entry_points]
orchestrator =
    noop = bench_noop_plugin
"""
PROBE = """import sys, runpy
sys.argv = ['orchestrate', *{args!r}]
try:
    runpy.run_module('orchestrator.cli', run_name='__main__')
except SystemExit:
    pass
print('boto3' in sys.modules, file=sys.stderr)
"""


def install_noop_plugin(folder: Path) -> Path:
    """The no-op executor as a real pip-installed plugin; returns the folder for PYTHONPATH."""
    source, site = folder / "noop-src", folder / "noop-site"
    source.mkdir(parents=True)
    (source / "bench_noop_plugin.py").write_text(NOOP_MODULE)
    (source / "setup.cfg").write_text(NOOP_SETUP)
    (source / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68"]\n'
                                           'build-backend = "setuptools.build_meta"\n')
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",
                    "--no-index", "--no-deps", "--target", str(site), str(source)],
                   check=True, capture_output=True)
    return site


def noop_routine(folder: Path, tasks: int) -> Path:
    path = folder / f"noop-{tasks}.json"
    path.write_text(json.dumps({"routine_name": f"noop_{tasks}", "executors": [
        {"name": "noop", "executor": "noop", "tasks": ["nothing"] * tasks}]}))
    return path


class Variant:
    """One interpreter (and its `orchestrate`), with its own orchestrator home."""

    def __init__(self, python: str, folder: Path, site: Path) -> None:
        self.python = python
        self.orchestrate = str(Path(python).with_name("orchestrate"))
        self.home = folder / f"home-{abs(hash(python)):x}"
        self.home.mkdir()  # a machine that ran before: the plugin index is cached only in a home
        path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        self.env = dict(os.environ, ORCHESTRATOR_HOME=str(self.home), NO_COLOR="1", PYTHONPATH=path)
        self.env.pop("ORCHESTRATOR_STORE", None)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users have it: compiled modules cached
        self.label = str(Path(python).parents[2]) if python != sys.executable else "this checkout"

    def run(self, argv: list[str], cold: bool = False) -> tuple[float, float]:
        """Wall and CPU (user + system) seconds of one whole process."""
        if cold:
            shutil.rmtree(self.home / "cache", ignore_errors=True)
        cmd = [self.python, *argv[1:]] if argv[0] == "python" else [self.orchestrate, *argv]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        took = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"{self.label}: {' '.join(cmd)} failed: {proc.stderr.decode()[-800:]}")
        return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    def imports_boto3(self, argv: list[str]) -> bool:
        proc = subprocess.run([self.python, "-c", PROBE.format(args=argv)], env=self.env,
                              capture_output=True, text=True)
        return proc.stderr.strip().splitlines()[-1] == "True"


def measure(variants: list[Variant], cases: list[tuple[str, list[str], bool]], repeat: int
            ) -> dict[tuple[str, str], tuple[float, float]]:
    """Median (wall, CPU) seconds per (variant, case)."""
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for variant in variants:  # first runs fill caches and create the run store: not counted
        for _, argv, cold in cases:
            variant.run(argv, cold)
    for _ in range(repeat):
        for label, argv, cold in cases:
            for variant in variants:
                times.setdefault((variant.label, label), []).append(variant.run(argv, cold))
    return {key: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
            for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter to measure alongside")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    site = install_noop_plugin(folder)
    one, thousand = noop_routine(folder, 1), noop_routine(folder, 1000)
    variants = [Variant(python, folder, site) for python in [sys.executable, *args.python]]
    cases = [
        ("python -c pass", ["python", "-c", "pass"], False),
        ("orchestrate --version", ["--version"], False),
        ("orchestrate --help", ["--help"], False),
        ("orchestrate plugins", ["plugins"], False),
        ("orchestrate validate (1 task)", ["validate", str(one)], False),
        ("orchestrate validate (1 task), cold", ["validate", str(one)], True),
        ("orchestrate run (1 task)", ["run", str(one)], False),
        ("orchestrate run (1 task), cold", ["run", str(one)], True),
        ("orchestrate run (1,000 tasks)", ["run", str(thousand)], False),
    ]
    medians = measure(variants, cases, args.repeat)
    print(f"whole processes, medians of {args.repeat} (interleaved); no-op executor plugin, "
          "SQLite tracking on; wall ms (CPU ms), and wall over bare python")
    for variant in variants:
        bare = medians[(variant.label, "python -c pass")][0]
        print(f"\n{variant.label} ({variant.python})")
        for label, argv, _ in cases:
            wall, cpu = medians[(variant.label, label)]
            extra = "" if argv[0] == "python" else f"  +{(wall - bare) * 1000:6.1f} ms over bare"
            print(f"  {label:38} {wall * 1000:7.1f} ms ({cpu * 1000:6.1f}){extra}")
        many = medians[(variant.label, "orchestrate run (1,000 tasks)")]
        one_task = medians[(variant.label, "orchestrate run (1 task)")]
        print(f"  {'per task (1,000 - 1) / 999':38} {(many[0] - one_task[0]) / 999 * 1e6:7.1f} us "
              f"({(many[1] - one_task[1]) / 999 * 1e6:5.1f})")
        commands = (["--version"], ["plugins"], ["validate", str(one)])
        probes = {argv[0]: variant.imports_boto3(argv) for argv in commands}
        print("  imports boto3: " + ", ".join(f"{k} {v}" for k, v in probes.items()))


if __name__ == "__main__":
    main()
