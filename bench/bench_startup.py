"""CLI start-up: `orchestrate --version`, `--help`, `plugins` and `validate` against a bare interpreter,
and whether each imported boto3.

    python bench/bench_startup.py [--repeat 11]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROUTINE = REPO / "routines" / "test_routine" / "routine_config.json"
PROBE = "import sys, runpy; sys.argv = ['orchestrate', *{args!r}]\ntry:\n    runpy.run_module('orchestrator.cli', run_name='__main__')\nexcept SystemExit:\n    pass\nprint('boto3' in sys.modules, file=sys.stderr)"


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def imports_boto3(args: list[str]) -> bool:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True)
    return proc.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    orchestrate = shutil.which("orchestrate") or str(Path(sys.executable).with_name("orchestrate"))
    bare = median_seconds([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -c pass: {bare * 1000:.1f} ms (median of {args.repeat})")
    for argv in (["--version"], ["--help"], ["plugins"], ["validate", str(ROUTINE)]):
        took = median_seconds([orchestrate, *argv], args.repeat)
        print(f"orchestrate {' '.join(argv[:1])}: {took * 1000:.1f} ms, +{(took - bare) * 1000:.1f} ms over bare; "
              f"imports boto3: {imports_boto3(argv)}")


if __name__ == "__main__":
    main()
