"""Step Functions compilation and what running on it saves us.

1. Compile time of a 500-step routine (a chain, and a DAG of 50 layers of 10) and the definition's
   size against Step Functions' 1 MB limit; and the largest chain that still fits.
2. A routine of 100 quick Athena queries with the same dependencies (the DAG), run locally against a
   moto server in this process: our CPU seconds and our AWS API calls; against the same routine on
   Step Functions, where the queries are ``athena:startQueryExecution.sync`` states: our calls are
   StartExecution, then nothing until the end (the follower's DescribeExecution polls, optional,
   are counted separately for an execution of the local run's length). moto does not execute
   Athena ``.sync`` states, so the Step Functions side is counted from the definition.

Prints figures; asserts nothing.  python bench/bench_step_functions.py [--queries 100]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ATHENA = {"output_location": "s3://bench-results/", "database": "bench"}


def query(name: str, depends_on: list[str] | None = None) -> dict[str, Any]:
    step = {"name": name, "executor": "athena", "params": ATHENA,
            "tasks": [{"task": "run_query", "args": {"sql": f"SELECT {len(name)} AS n"}}]}
    if depends_on is not None:
        step["depends_on"] = depends_on
    return step


def dag(n: int, width: int = 10) -> dict[str, Any]:
    return {"routine_name": f"dag{n}", "executors": [
        query(f"q{i}", [f"q{i - width}"] if i >= width else []) for i in range(n)]}


def compile_figures() -> None:
    from orchestrator import load_routine
    from orchestrator.stepfunctions.compile import MAX_DEFINITION_BYTES, CompileError, compile_routine

    for label, doc in (("chain of 500", {"routine_name": "chain", "executors": [
            query(f"q{i}") for i in range(500)]}), ("DAG of 500 (50 layers x 10)", dag(500))):
        routine = load_routine(doc)
        best = math.inf
        for _ in range(5):
            started = time.perf_counter()
            result = compile_routine(routine, "routines/r/routine.json", "v1", raw=doc)
            best = min(best, time.perf_counter() - started)
        size = len(json.dumps(result.definition, separators=(",", ":")).encode())
        print(f"{label}: compile {best * 1000:.1f} ms (best of 5), definition {size:,} bytes "
              f"= {size / MAX_DEFINITION_BYTES:.0%} of the 1 MB limit")
    low, high = 500, 20_000
    while high - low > 50:
        middle = (low + high) // 2
        doc = {"routine_name": "big", "executors": [query(f"q{i}") for i in range(middle)]}
        try:
            compile_routine(load_routine(doc), "routines/r/routine.json", "v1", raw=doc)
            low = middle
        except CompileError:
            high = middle
    print(f"largest chain of Athena queries that fits: about {low:,} steps")


def local_run(n: int) -> None:
    import botocore.endpoint
    from moto.server import ThreadedMotoServer

    import logging
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    calls: Counter[str] = Counter()
    original = botocore.endpoint.Endpoint.make_request

    def counting(self: Any, operation_model: Any, request_dict: Any) -> Any:
        calls[operation_model.name] += 1
        return original(self, operation_model, request_dict)

    botocore.endpoint.Endpoint.make_request = counting
    from orchestrator import load_routine
    from orchestrator.engine import RunOptions, plan
    from orchestrator.runs.control import TrackedRun
    from orchestrator.runs.store import SQLiteStore
    from orchestrator.stepfunctions.compile import compile_routine

    with tempfile.TemporaryDirectory() as home:
        os.environ["ORCHESTRATOR_HOME"] = home
        doc = dag(n)
        routine = load_routine(doc)
        tracked = TrackedRun(SQLiteStore(Path(home) / "runs.sqlite"), plan(routine), [],
                             RunOptions(max_parallel=4))
        tracked.claim()
        cpu, wall = time.process_time(), time.perf_counter()
        result = tracked.execute()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"\nlocal run of {n} Athena queries (DAG, --max-parallel 4, moto in this process, so "
              f"CPU includes moto's): {result.status}, {wall:.1f} s wall, {cpu:.2f} CPU s, "
              f"{sum(calls.values())} API calls: {dict(calls)}")
        compiled = compile_routine(routine, "routines/r/routine.json", "v1", raw=doc)
        native = sum(1 for r in compiled.native_tasks.values() if "athena" in r)
        polls = _follower_polls(wall)
        print(f"on Step Functions: {native} of {n} queries native (athena:startQueryExecution.sync), "
              f"{len(compiled.lambda_steps)} steps in our Lambda; our API calls: 1 StartExecution, "
              f"then 0 until the end with --detach (following it: ~{polls} DescribeExecution + "
              f"GetExecutionHistory pairs for a {wall:.1f} s execution); our process-seconds "
              "between start and end: 0 with --detach")
    botocore.endpoint.Endpoint.make_request = original
    server.stop()


def _follower_polls(seconds: float) -> int:
    from orchestrator.cli.step_functions import FIRST_POLL, MAX_POLL

    polls, waited, delay = 1, 0.0, FIRST_POLL
    while waited < seconds:
        waited += delay
        delay = min(MAX_POLL, delay * 2)
        polls += 1
    return polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    compile_figures()
    local_run(args.queries)


if __name__ == "__main__":
    main()
