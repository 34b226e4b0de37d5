"""`orchestrate generate`: the size of each target's artifacts, and the script target's start-up
(`--version` and a 1-task routine) against the installed `orchestrate`, side by side.

    python bench/bench_generate.py [--repeat 11]

"cold" means a new process each time (the OS file cache is warm, as on a cron box running the same
script daily); "first run" is the one-off unpacking of the payload into the cache, measured with an
emptied cache each time.
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

ROUTINE = {
    "routine_name": "one_task",
    "executors": [
        {
            "name": "hello",
            "executor": "python",
            "params": {"path": "steps.py"},
            "tasks": [{"task": "call", "args": {"function": "hello"}}],
        }
    ],
}


def measure(
    commands: dict[str, tuple[list[str], dict[str, str]]], repeat: int
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU (user + system) seconds of each command as a new process. The commands
    run
    round-robin, so a change in the machine's load hits all of them alike."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, (cmd, env) in commands.items():
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed: {result.stderr.decode()[-500:]}")
            samples[name].append(
                (wall, after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
            )
    return {
        name: (statistics.median(w for w, _ in found), statistics.median(c for _, c in found))
        for name, found in samples.items()
    }


def regular_install(work: Path) -> Path:
    """This checkout installed as a regular (not editable) package, bytecode compiled, dependencies
    from the current environment: what a user who ran ``pip install`` has."""
    target = work / "wheel-site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(Path(__file__).resolve().parents[1]),
        ],
        check=True,
        capture_output=True,
    )
    return target


def folder_size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    try:
        run(work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, repeat: int) -> None:
    (work / "routine").mkdir()
    routine = work / "routine" / "one_task.json"
    routine.write_text(json.dumps(ROUTINE))
    (work / "routine" / "steps.py").write_text("def hello():\n    return None\n")
    env = dict(
        os.environ,
        ORCHESTRATOR_HOME=str(work / "home"),
        NO_COLOR="1",
        XDG_CACHE_HOME=str(work / "cache"),
    )
    env.pop(
        "PYTHONDONTWRITEBYTECODE", None
    )  # an installed package has its bytecode; so does the script
    orchestrate = shutil.which("orchestrate") or str(Path(sys.executable).with_name("orchestrate"))
    outputs = {
        "script": work / "one_task.pyz",
        "docker": work / "docker",
        "lambda": work / "lambda",
    }
    print("artifact sizes (orchestrate generate one_task.json --target T):")
    for target, out in outputs.items():
        start = time.perf_counter()
        subprocess.run(
            [orchestrate, "generate", str(routine), "-t", target, "-o", str(out)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        took = time.perf_counter() - start
        files = sorted(out.iterdir()) if out.is_dir() else [out]
        sizes = ", ".join(
            f"{f.name} {f.stat().st_size / 1e6:.1f} MB" for f in files if f.stat().st_size > 10_000
        )
        print(
            f"  {target:7} {folder_size(out) / 1e6:6.1f} MB  ({sizes}; generated in {took:.1f} s)"
        )
    pyz = outputs["script"]
    subprocess.run(
        [sys.executable, str(pyz), "--version"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    unpacked = next((work / "cache" / "orchestrator" / "pyz").iterdir())
    print(f"  script unpacked into the cache: {folder_size(unpacked) / 1e6:.1f} MB")

    bare = getattr(sys, "_base_executable", sys.executable)
    isolated_env = {
        "HOME": str(work),
        "PATH": "/usr/bin:/bin",
        "XDG_CACHE_HOME": str(work / "cache"),
        "ORCHESTRATOR_HOME": str(work / "home"),
        "NO_COLOR": "1",
    }
    wheel_env = {**env, "PYTHONPATH": str(regular_install(work))}
    console = [
        sys.executable,
        "-c",
        "import sys; from orchestrator.cli import main; sys.exit(main())",
    ]
    print(
        f"\nstart-up, median of {repeat} round-robin runs (python {sys.version.split()[0]}): "
        "wall ms, CPU ms, ratio to the installed orchestrate"
    )
    for label, args in (
        ("--version", ["--version"]),
        ("1-task run", ["run", str(routine), "--quiet"]),
    ):
        script_args = [a for a in args if a not in ("run", str(routine))]
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "installed orchestrate": ([orchestrate, *args], env),
            "installed, not editable": ([*console, *args], wheel_env),
            "script, python app.pyz": ([sys.executable, str(pyz), *script_args], env),
            "script, bare python -I -S": ([bare, "-I", "-S", str(pyz), *script_args], isolated_env),
        }
        for cmd, cmd_env in commands.values():  # bytecode written, cache unpacked: the steady state
            subprocess.run(cmd, env=cmd_env, capture_output=True)
        found = measure(commands, repeat)
        base_wall, base_cpu = found["installed orchestrate"]
        for name, (wall, cpu) in found.items():
            print(
                f"  {label:11} {name:26} {wall * 1000:7.1f} {cpu * 1000:7.1f}   "
                f"wall {wall / base_wall:.2f}x, "
                f"CPU {cpu / base_cpu:.2f}x"
            )

    def empty_cache() -> None:
        shutil.rmtree(work / "cache", ignore_errors=True)

    firsts = []
    for _ in range(3):
        empty_cache()
        firsts.append(
            measure({"first": ([sys.executable, str(pyz), "--version"], env)}, 1)["first"]
        )
    print(
        f"  first run of the script (unpacks the payload): "
        f"wall {statistics.median(w for w, _ in firsts) * 1000:.0f}"
        f" ms, CPU {statistics.median(c for _, c in firsts) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
