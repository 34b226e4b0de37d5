"""Staging at scale: files/s and peak RSS of transfer + post_staging (delete) over many small
files, local→local against ``cp -r`` + ``rm -rf`` of the same files, and S3→S3 on a moto server
in its own process.

Each run is a child process; its peak RSS is ``ru_maxrss`` from ``os.wait4`` (that child and
what it waited for), its time the wall clock around it (interpreter start-up included).
``--code OTHER_CHECKOUT`` runs the orchestrator from another source tree (e.g. ``git archive``
of an older commit) in the same interpreter, for before/after figures.

Usage: python bench/bench_staging_scale.py [--files 100000] [--per-folder 1000] [--where /tmp]
       [--s3-objects 100000] [--skip-local] [--skip-s3] [--skip-tools] [--code DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = b"column1,column2,column3\n" + b"Alice,34,engineer\n" * 20

CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from executors.staging.executor import StagingExecutor
from orchestrator.executor import Context
parent, dump, home = sys.argv[2:5]
ex = StagingExecutor(parent_directory=parent, dump_directory=dump, archive_or_delete="delete")
for task in ("transfer", "post_staging"):
    ctx = Context(run_id="scale", run_date="2026-11-30", routine_name="bench", step="stage",
                  task=task, home=Path(home))
    t0 = time.perf_counter()
    metrics = getattr(ex, task)(ctx)
    print(task, round(time.perf_counter() - t0, 2), metrics.execution_metadata, flush=True)
ex.close()
# This process's own high-water mark: ru_maxrss also counts the parent it was forked from.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("VmHWM", int(hwm) / 1024, flush=True)
"""


def run_child(argv: list[str],
              env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and output of one child process.

    The peak is the child's own ``VmHWM`` when it prints one, else ``ru_maxrss``: Linux carries
    the parent's high-water mark across fork and exec into ``ru_maxrss``, so a big parent (the
    S3 seeding's boto3) would show as the child's."""
    t0 = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert child.stdout is not None
    output = child.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {child.returncode}:\n{output[-3000:]}")
    peak = usage.ru_maxrss / 1024
    for line in output.splitlines():
        if line.startswith("VmHWM "):
            peak = float(line.split()[1])
    return wall, usage.ru_utime + usage.ru_stime, peak, output


def land(folder: Path, files: int, per_folder: int) -> None:
    for start in range(0, files, per_folder):
        sub = folder / f"d{start // per_folder:05d}"
        sub.mkdir(parents=True)
        for i in range(start, min(files, start + per_folder)):
            with open(sub / f"f{i:07d}.csv", "wb") as f:
                f.write(BODY)


def count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def report(label: str, files: int, wall: float, cpu: float, rss: float) -> None:
    print(f"  {label:<24} {files / wall:8.0f} files/s   wall {wall:7.1f} s   CPU {cpu:7.1f} s"
          f"   peak RSS {rss:6.1f} MiB", flush=True)


def bench_local(files: int, per_folder: int, where: Path, code: Path, tools: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=where))
    landing, dump = work / "landing", work / "dump"
    print(f"local→local, {files} files of {len(BODY)} bytes in folders of {per_folder} "
          f"(transfer + delete), under {where}:", flush=True)
    tool = (0.0, 0.0)
    try:
        if tools:
            land(landing, files, per_folder)
            os.sync()
            # GNU time reports the peak of what it runs: sh is forked from it, not from us.
            timer = ["/usr/bin/time", "-f", "VmHWM %M"] if os.path.exists("/usr/bin/time") else []
            wall, cpu, rss, out = run_child(
                [*timer, "sh", "-c", f"cp -r '{landing}' '{dump}' && rm -rf '{landing}'"])
            if timer:
                rss = float(out.split()[-1]) / 1024
            assert count_files(dump) == files and not landing.exists()
            report("cp -r + rm -rf", files, wall, cpu, rss)
            tool = (wall, cpu)
            shutil.rmtree(dump)
        land(landing, files, per_folder)
        os.sync()
        wall, cpu, rss, output = run_child([sys.executable, "-c", CHILD, str(code),
                                            str(landing), str(dump), str(work / "home")])
        assert count_files(dump) == files and count_files(landing) == 0, output
        report("orchestrator staging", files, wall, cpu, rss)
        if tools:  # the target: no more time than cp -r + rm -rf (1.0 or less)
            print(f"  {'ratio to cp -r + rm -rf':<24} wall {wall / tool[0]:.2f}x   "
                  f"CPU {cpu / tool[1]:.2f}x", flush=True)
        print("    " + output.strip().replace("\n", "\n    "), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_s3(objects: int, code: Path, where: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_staging import start_moto

    import boto3

    proc, url = start_moto()
    env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    work = Path(tempfile.mkdtemp(prefix="bench_scale_s3_", dir=where))
    try:
        client = boto3.client("s3")
        for bucket in ("landing", "lake"):
            client.create_bucket(Bucket=bucket)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:  # replies dropped at once: a small parent
            for _ in pool.map(lambda i: client.put_object(Bucket="landing", Key=f"in/f{i:07d}.csv",
                                                          Body=BODY) and None, range(objects)):
                pass
        print(f"S3→S3 on a moto server in another process, {objects} objects (transfer + "
              f"delete; seeding took {time.perf_counter() - t0:.0f} s):", flush=True)
        wall, cpu, rss, output = run_child([sys.executable, "-c", CHILD, str(code),
                                            "s3://landing/in/", "s3://lake/raw/",
                                            str(work / "home")], env)
        pages = client.get_paginator("list_objects_v2")
        moved = sum(p.get("KeyCount", 0) for p in pages.paginate(Bucket="lake", Prefix="raw/"))
        left = sum(p.get("KeyCount", 0) for p in pages.paginate(Bucket="landing"))
        assert moved == objects and left == 0, (moved, left, output)
        report("orchestrator staging", objects, wall, cpu, rss)
        print("    " + output.strip().replace("\n", "\n    "), flush=True)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[100_000])
    parser.add_argument("--per-folder", type=int, default=1000)
    parser.add_argument("--where", type=Path, default=Path(tempfile.gettempdir()),
                        help="folder to work in (check its free space and inodes first)")
    parser.add_argument("--s3-objects", type=int, default=100_000)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-tools", action="store_true", help="local: not cp -r + rm -rf")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="source tree whose orchestrator and executors are measured")
    args = parser.parse_args()
    if not args.skip_local:
        for files in args.files:
            bench_local(files, args.per_folder, args.where, args.code.resolve(),
                        not args.skip_tools)
    if not args.skip_s3:
        bench_s3(args.s3_objects, args.code.resolve(), args.where)


if __name__ == "__main__":
    main()
