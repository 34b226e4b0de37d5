"""Benchmark the staging executor: many small files local→local (delete and archive), and S3→S3
against aws-cli and s5cmd.

The moto server runs in a separate process so its CPU is not counted as ours; the CLIs' CPU is
their children's rusage. Each figure is the best of ``--repeat`` runs (the machine is shared).
Usage: python bench/bench_staging.py [--files 1000] [--repeat 3] [--skip-s3] [--skip-tools]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.staging.executor import StagingExecutor  # noqa: E402
from orchestrator.executor import Context  # noqa: E402

BIN = Path(sys.executable).parent
BODY = b"column1,column2,column3\n" + b"Alice,34,engineer\n" * 20


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(label: str, files: int, fn: Callable[[], None], who: int, prepare: Callable[[], None],
            repeat: int) -> None:
    """Best wall and best CPU of ``repeat`` runs of ``fn``, each after ``prepare``."""
    walls, cpus = [], []
    for _ in range(repeat):
        prepare()
        cpu0, t0 = cpu(who), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu(who) - cpu0)
    wall, used = min(walls), min(cpus)
    print(f"  {label:<28} {files / wall:9.0f} files/s   wall {wall:6.2f} s   client CPU {used:6.2f} s",
          flush=True)


PHASES: dict[str, list[float]] = {}  # task → CPU seconds (this process) of each run


def stage(parent: str, dump: str, home: Path, mode: str = "delete",
          archive: str | None = None) -> None:
    ex = StagingExecutor(parent_directory=parent, dump_directory=dump, archive_or_delete=mode,
                         archive_directory=archive)
    for task in ("transfer", "post_staging"):
        ctx = Context(run_id="bench", run_date="2026-11-22", routine_name="bench", step="stage",
                      task=task, home=home)
        cpu0 = time.process_time()
        getattr(ex, task)(ctx)
        PHASES.setdefault(task, []).append(time.process_time() - cpu0)
    ex.close()


def bench_local(files: int, work: Path, repeat: int) -> None:
    landing = work / "landing"

    def prepare() -> None:
        shutil.rmtree(work, ignore_errors=True)
        landing.mkdir(parents=True)
        for i in range(files):
            (landing / f"f{i:05d}.csv").write_bytes(BODY)

    print(f"local→local, {files} files of {len(BODY)} bytes (transfer + post_staging):")
    for mode in ("delete", "archive"):
        archive = str(work / "archive") if mode == "archive" else None
        PHASES.clear()
        measure(f"orchestrator staging, {mode}", files,
                lambda: stage(str(landing), str(work / "dump"), work / "home", mode, archive),
                resource.RUSAGE_SELF, prepare, repeat)
        assert len(list((work / "dump").iterdir())) == files and not any(landing.iterdir())
        print("    CPU per task, best: " + ", ".join(f"{task} {min(times) * 1000:.0f} ms"
                                                   for task, times in PHASES.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/moto-api/").close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto server did not start")


def reseed(url: str, files: int) -> None:
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    client = boto3.client("s3")
    for bucket in ("landing", "lake"):
        client.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket="landing", Key=f"in/f{i:05d}.csv", Body=BODY), range(files)))


def count(prefix: str) -> int:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix=prefix)
    return sum(len(p.get("Contents", [])) for p in pages)


def bench_s3(files: int, work: Path, repeat: int, tools: bool) -> None:
    proc, url = start_moto()
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    cli = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    runs: list[tuple[str, Callable[[], None], int]] = [
        ("orchestrator staging", lambda: stage("s3://landing/in/", "s3://lake/ours/", work / "home"),
         resource.RUSAGE_SELF),
        ("aws s3 mv --recursive", lambda: subprocess.run(
            [str(BIN / "aws"), "s3", "mv", "--recursive", "--only-show-errors", "--endpoint-url", url,
             "s3://landing/in/", "s3://lake/aws/"], **cli), resource.RUSAGE_CHILDREN),
        ("s5cmd mv", lambda: subprocess.run(
            [str(BIN / "s5cmd"), "--endpoint-url", url, "mv", "s3://landing/in/*", "s3://lake/s5cmd/"], **cli),
         resource.RUSAGE_CHILDREN),
    ]
    print(f"S3→S3 on a moto server in another process, {files} objects (move):")
    try:
        for label, fn, who in runs if tools else runs[:1]:
            measure(label, files, fn, who, lambda: reseed(url, files), repeat)
            assert count("") == files, f"{label}: {count('')} objects in the lake"
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-tools", action="store_true",
                        help="S3: only ours, not aws-cli and s5cmd")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_staging_"))
    try:
        bench_local(args.files, work / "local", args.repeat)
        if not args.skip_s3:
            bench_s3(args.files, work / "s3", args.repeat, not args.skip_tools)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
