"""S3 staging at scale with faults: our staging executor against ``aws s3 mv`` and ``s5cmd mv``.

Setup: a moto server in its own process; a fault proxy (bench/faultproxy.py) in its own process in
front of it, answering a share ``--fault-rate`` of the requests (seeded) with one of: an S3 XML
``503 SlowDown``, a TCP reset before forwarding, a TCP reset after moto applied the request (the
reply is lost). For each tool, ``--objects`` small distinct objects are seeded into
``s3://landing/in/`` directly against moto, then the tool moves them to ``s3://raw/out/`` through the
proxy:

- ours:  ``orchestrate run ROUTINE --json`` (staging executor, transfer + post_staging, delete) with
         ``AWS_ENDPOINT_URL`` = proxy; standard retries, 8 retries, 16 threads, server-side copy,
         batched DeleteObjects;
- aws:   ``aws s3 mv s3://landing/in/ s3://raw/out/ --recursive --only-show-errors`` (awscli v1
         defaults: legacy retries, 5 attempts, 10 threads);
- s5cmd: ``s5cmd --log error mv 's3://landing/in/*' s3://raw/out/`` (defaults: 10 retries, 256 workers).

A tool that fails is run once more on what it left (a rerun must finish the work). After each run
the buckets are listed directly against moto, and we report: objects moved with the right size and
ETag, lost (in neither place), in both places (after a successful run: doubled; after a failed one:
left for the rerun), left only in landing, wrong content, unexpected keys; wall time; client CPU
(user+sys of the tool's process tree, from wait4: moto and the proxy are not counted); requests per
object seen by the proxy, by operation, retries included; faults injected.

Usage: python bench/bench_staging_faults.py [--objects 10000] [--fault-rate 0.05] [--seed 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_staging import start_moto

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LANDING, DUMP = ("landing", "in/"), ("raw", "out/")
ROUTINE = {"routine_name": "bench_faults", "executors": [{
    "name": "move", "executor": "staging",
    "params": {"parent_directory": "s3://landing/in/", "dump_directory": "s3://raw/out/",
               "archive_or_delete": "delete"},
    "tasks": ["transfer", "post_staging"]}]}
TOOLS = ("orchestrator staging", "aws s3 mv --recursive", "s5cmd mv")
TIMEOUT = 3600


@dataclasses.dataclass
class Run:
    tool: str
    attempt: int
    rc: int
    wall: float
    cpu: float
    proxy: dict[str, Any]
    check: dict[str, int]
    error: str = ""


# ---------------------------------------------------------------------- servers

def start_proxy(upstream: str, rate: float, seed: int, stats: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "faultproxy.py"), "--upstream", upstream,
                             "--rate", str(rate), "--seed", str(seed), "--stats", str(stats)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()  # type: ignore[union-attr]


def stop_proxy(proc: subprocess.Popen, stats: Path) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return json.loads(stats.read_text())


# ---------------------------------------------------------------------- objects

def s3_client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(max_pool_connections=32))


def reseed(moto: str, objects: int) -> dict[str, tuple[int, str]]:
    """Empty moto, create the buckets, put ``objects`` distinct small objects; return rel → (size, ETag)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST")).close()
    client = s3_client(moto)
    for bucket in (LANDING[0], DUMP[0]):
        client.create_bucket(Bucket=bucket)

    def put(i: int) -> tuple[str, tuple[int, str]]:
        body = f"id,name,job\n{i},Alice,engineer\n".encode() + b"x" * (i % 97)
        etag = client.put_object(Bucket=LANDING[0], Key=f"{LANDING[1]}f{i:05d}.csv", Body=body)["ETag"]
        return f"f{i:05d}.csv", (len(body), etag.strip('"'))

    with ThreadPoolExecutor(32) as pool:
        return dict(pool.map(put, range(objects)))


def listing(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix):]: (o["Size"], o["ETag"].strip('"')) for p in pages for o in p.get("Contents", [])}


def check(moto: str, seeded: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Where every seeded object ended up, listed directly against moto (not through the proxy)."""
    client = s3_client(moto)
    landing, dump = listing(client, *LANDING), listing(client, *DUMP)
    return {
        "moved": sum(1 for k, v in seeded.items() if k not in landing and dump.get(k) == v),
        "lost": sum(1 for k in seeded if k not in landing and k not in dump),
        "both": sum(1 for k in seeded if k in landing and k in dump),
        "landing_only": sum(1 for k in seeded if k in landing and k not in dump),
        "bad_content": sum(1 for k, v in seeded.items() if k in dump and dump[k] != v),
        "unexpected": len((set(landing) | set(dump)) - set(seeded)),
    }


# ---------------------------------------------------------------------- tools

def command(tool: str, proxy: str, routine: Path) -> list[str]:
    if tool == TOOLS[0]:
        return [str(BIN / "orchestrate"), "run", str(routine), "--json"]
    if tool == TOOLS[1]:
        return [str(BIN / "aws"), "s3", "mv", "s3://landing/in/", "s3://raw/out/", "--recursive",
                "--only-show-errors", "--endpoint-url", proxy]
    return [str(BIN / "s5cmd"), "--log", "error", "--endpoint-url", proxy, "mv", "s3://landing/in/*", "s3://raw/out/"]


def environment(proxy: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_REGION="us-east-1", AWS_CONFIG_FILE=str(work / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(work / "none"), AWS_ENDPOINT_URL=proxy,
               ORCHESTRATOR_HOME=str(work / "home"), NO_COLOR="1")
    return env


def timed(cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, float, float]:
    """Exit code, wall seconds and CPU seconds (user+sys) of ``cmd`` and the children it waited for."""
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime


def error_of(log: Path) -> str:
    text = log.read_text(errors="replace").strip()
    try:
        doc = json.loads(text)
        return "; ".join(str(t["error"]) for t in doc.get("tasks", []) if t.get("error"))[:300]
    except ValueError:
        return text.splitlines()[-1][:300] if text else ""


def run_tool(tool: str, attempt: int, moto: str, seeded: dict[str, tuple[int, str]], args: argparse.Namespace,
             work: Path) -> Run:
    stats = work / f"proxy-{len(list(work.glob('proxy-*')))}.json"
    proxy_proc, proxy = start_proxy(moto, args.fault_rate, args.seed + attempt - 1, stats)
    log = work / f"{tool.split()[0]}-{attempt}.log"
    try:
        rc, wall, cpu = timed(command(tool, proxy, work / "routine.json"), environment(proxy, work), log)
    finally:
        counts = stop_proxy(proxy_proc, stats)
    return Run(tool, attempt, rc, wall, cpu, counts, check(moto, seeded), "" if rc == 0 else error_of(log))


def bench_tool(tool: str, moto: str, args: argparse.Namespace, work: Path) -> list[Run]:
    shutil.rmtree(work / "home", ignore_errors=True)
    seeded = reseed(moto, args.objects)
    runs = [run_tool(tool, 1, moto, seeded, args, work)]
    if runs[0].rc != 0:
        runs.append(run_tool(tool, 2, moto, seeded, args, work))
    for run in runs:
        print(f"  {run.tool} #{run.attempt}: exit {run.rc}, {run.wall:.1f} s, CPU {run.cpu:.1f} s, {run.check}"
              + (f"\n    error: {run.error}" if run.error else ""), flush=True)
    return runs


# ---------------------------------------------------------------------- report

def report(runs: list[Run], args: argparse.Namespace) -> None:
    n = args.objects
    print(f"\n{n} objects, fault rate {args.fault_rate:g} (503 SlowDown / reset / reset after forwarding), "
          f"seed {args.seed}\n")
    print("| tool | run | exit | wall s | objects/s | client CPU s | moved ok | lost | in both | landing only "
          "| wrong content | unexpected | requests/object | faults injected |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        c, p = r.check, r.proxy
        print(f"| {r.tool} | {r.attempt} | {r.rc} | {r.wall:.1f} | {n / r.wall:.0f} | {r.cpu:.1f} | {c['moved']} "
              f"| {c['lost']} | {c['both']} | {c['landing_only']} | {c['bad_content']} | {c['unexpected']} "
              f"| {p['requests'] / n:.2f} | {p['faults']} ({fault_kinds(p)}) |")
    print("\nRequests per object by operation (retries included):\n")
    for r in runs:
        ops = ", ".join(f"{op} {k / n:.3g}" for op, k in r.proxy["by_operation"].items())
        print(f"- {r.tool} run {r.attempt}: {ops}")


def fault_kinds(stats: dict[str, Any]) -> str:
    return ", ".join(f"{kind} {sum(ops.values())}" for kind, ops in stats["faults_by_kind"].items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tools", default=",".join(t.split()[0] for t in TOOLS),
                        help="comma-separated subset of: orchestrator, aws, s5cmd")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_staging_faults_"))
    (work / "routine.json").write_text(json.dumps(ROUTINE, indent=2))
    moto_proc, moto = start_moto()
    try:
        runs = [r for t in TOOLS if t.split()[0] in args.tools.split(",") for r in bench_tool(t, moto, args, work)]
        report(runs, args)
    finally:
        moto_proc.terminate()
        moto_proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
