"""Benchmark the streaming rename transformation local→local against ``cp``, with peak memory.

The executor runs in a child process so its peak RSS (``ru_maxrss``) is its own.
Usage: python bench/bench_transform.py [--size-mb 1024]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = b"Alice Example,34,senior data engineer at a very large company\n"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from orchestrator.executor import Context
from executors.staging.executor import StagingExecutor
params, home = json.loads(sys.argv[1]), Path(sys.argv[2])
ex = StagingExecutor(**params)
t0 = time.perf_counter()
metrics = ex.transfer(Context(run_id="b", run_date="d", routine_name="bench", step="s", task="transfer", home=home))
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "bytes": metrics.execution_metadata["bytes"],
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def generate(path: Path, size: int) -> None:
    block = ROW * ((1 << 20) // len(ROW))
    with open(path, "wb") as f:
        f.write(b"column1,column2,column3\n")
        while f.tell() < size:
            f.write(block)


def time_cp(source: Path, target: Path) -> float:
    """Wall time of ``cp``; run before and after the executor so page-cache warmth is shared fairly."""
    t0 = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    wall = time.perf_counter() - t0
    target.unlink()
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_transform_"))
    try:
        (work / "landing").mkdir()
        source = work / "landing" / "big.csv"
        generate(source, args.size_mb << 20)
        size = source.stat().st_size
        cp_walls = [time_cp(source, work / "cp.csv")]
        params = {"parent_directory": str(work / "landing"), "dump_directory": str(work / "dump"),
                  "transform": f"{ROOT}/routines/test_routine/transforms.py:rename_columns",
                  "transform_args": {"mapper": {"column1": "name", "column2": "age", "column3": "job"}}}
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(params), str(work / "home")], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        result = json.loads(out)
        cp_wall = min(cp_walls + [time_cp(source, work / "cp.csv")])
        assert (work / "dump" / "big.csv").read_bytes()[:13] == b"name,age,job\n"
        mb = size / 1e6
        print(f"rename transform local→local, {mb:.0f} MB file:")
        print(f"  orchestrator staging  {mb / result['wall']:8.0f} MB/s   wall {result['wall']:6.2f} s"
              f"   peak RSS {result['maxrss_kib'] / 1024:6.1f} MiB")
        print(f"  cp (best of 2)        {mb / cp_wall:8.0f} MB/s   wall {cp_wall:6.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
