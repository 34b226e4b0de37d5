"""Start-up and per-task cost in instructions executed (valgrind), which a busy machine does not
blur: the same figures whatever else runs, so before/after comparisons hold on a shared machine.

    python bench/bench_instructions.py [--python OTHER_VENV/bin/python ...]   # needs valgrind

Instructions become milliseconds through one calibration, made on an idle machine from the
figures the start-up issue measured for the code before this change: `python -c pass` 18 ms and
99 M instructions, `orchestrate validate` of a 1-task routine 108 ms and 500 M, so about 0.224 ms
per million instructions above a fixed -4.2 ms (its per-task check: 0.477 M instructions per
tracked task -> 107 us, as measured). System calls (SQLite's fsyncs) are not counted: a run's
whole-process time is some milliseconds above its estimate.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import PLUGIN, RUNNER  # noqa: E402
from bench_startup import install_noop_plugin, noop_routine  # noqa: E402

MS_PER_MILLION, MS_OFFSET = 0.224, -4.2


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions one whole process executes (after a first run that fills caches). Run from
    a neutral folder: ``python -c`` puts the working directory first on ``sys.path``, so from a
    checkout every interpreter would import that checkout's ``orchestrator``."""
    cwd = tempfile.gettempdir()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=cwd)
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                          env=env, capture_output=True, text=True, check=True, cwd=cwd)
    line = next(line for line in proc.stderr.splitlines() if "Collected" in line)
    return int(line.split()[-1])


def estimate(count: int) -> float:
    return MS_OFFSET + MS_PER_MILLION * count / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter to measure")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    site = install_noop_plugin(folder)
    (folder / "bench_noop_plugin.py").write_text(PLUGIN)
    one, thousand = noop_routine(folder, 1), noop_routine(folder, 1000)
    for number, python in enumerate([sys.executable, *args.python]):
        home = folder / f"home-{number}"
        home.mkdir()  # a machine that ran before: the plugin index is cached only in a home
        env = dict(os.environ, ORCHESTRATOR_HOME=str(home),
                   PYTHONMALLOC="malloc", PYTHONPATH=str(site))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("ORCHESTRATOR_STORE", None)
        orchestrate = str(Path(python).with_name("orchestrate"))
        print(f"\n{python}")
        cli = {
            "python -c pass": [python, "-c", "pass"],
            "orchestrate --version": [orchestrate, "--version"],
            "orchestrate validate (1 task)": [orchestrate, "validate", str(one)],
            "orchestrate run (1 task)": [orchestrate, "run", str(one)],
            "orchestrate run (1,000 tasks)": [orchestrate, "run", str(thousand)],
        }
        counts = {label: instructions(cmd, env) for label, cmd in cli.items()}
        for label, count in counts.items():
            print(f"  {label:34} {count / 1e6:7.1f} M instructions ~ {estimate(count):6.1f} ms")
        many, one_task = counts["orchestrate run (1,000 tasks)"], counts["orchestrate run (1 task)"]
        per_task = (many - one_task) / 999
        print(f"  {'CLI, per task':34} {per_task / 1e3:7.1f} k instructions ~ "
              f"{per_task * MS_PER_MILLION / 1e3:6.1f} us")
        api_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the runner registers it
        for track in (False, True):
            runs = [instructions([python, "-c", RUNNER.format(folder=str(folder), routine=str(path),
                                                              track=track)], api_env)
                    for path in (one, thousand)]
            per_task = (runs[1] - runs[0]) / 999
            label = "API, per task, " + ("tracked" if track else "not tracked")
            print(f"  {label:34} {per_task / 1e3:7.1f} k instructions ~ "
                  f"{per_task * MS_PER_MILLION / 1e3:6.1f} us")


if __name__ == "__main__":
    main()
