"""Detection latency and status-call counts of the shared poller, against a real moto server over HTTP.

For remote work lasting 2 s, 30 s and 300 s (``--quick`` skips 300 s), start an Athena query on a
loopback moto server whose execution reports SUCCEEDED exactly S seconds after it started, and wait
for it with ``executors.aws.polling.wait_for`` and a real boto3 client. Compared with a fixed 1 s poll (also
measured, except for 300 s) and Airflow's Athena operator default of 30 s (computed).

moto's own ``{"progression": "time"}`` transition advances one state per S seconds *counted from
the poll that observed the previous transition*, so the finishing time would depend on the poller
under test; the in-process patch below pins it to start + S instead.

    python bench/bench_polling.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.aws.polling import Backoff, DEFAULT_BACKOFF, wait_for  # noqa: E402


def start_server() -> str:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def pin_duration(seconds: float) -> None:
    """Every execution reports RUNNING until start + ``seconds``, then SUCCEEDED."""
    from moto.athena.responses import AthenaResponse

    original = AthenaResponse.__dict__.get("_bench_original") or AthenaResponse.get_query_execution
    AthenaResponse._bench_original = original

    def get_query_execution(self: Any) -> str:
        doc = json.loads(original(self))
        started = self.athena_backend.executions[self._get_param("QueryExecutionId")].start_time
        doc["QueryExecution"]["Status"]["State"] = "SUCCEEDED" if time.time() >= started + seconds else "RUNNING"
        return json.dumps(doc)

    AthenaResponse.get_query_execution = get_query_execution


def measure(client: Any, seconds: float, backoff: Backoff) -> dict[str, float]:
    pin_duration(seconds)
    query_id = client.start_query_execution(QueryString="SELECT 1", WorkGroup="primary",
                                            ResultConfiguration={"OutputLocation": "s3://bench/"})["QueryExecutionId"]
    started, calls = time.time(), 0

    def poll() -> str:
        nonlocal calls
        calls += 1
        return client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"]

    wait_for(poll, lambda state: state == "SUCCEEDED", None, backoff=backoff)
    return {"calls": calls, "lag_s": round(time.time() - started - seconds, 3)}


def airflow(seconds: float, interval: float = 30.0) -> dict[str, float]:
    polls = math.ceil(seconds / interval)
    return {"calls": polls + 1, "lag_s": round(polls * interval - seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 300 s case")
    args = parser.parse_args()
    endpoint = start_server()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    import boto3

    client = boto3.client("athena", endpoint_url=endpoint)
    fixed = Backoff(first=1.0, ratio=0.0, cap=1.0, jitter=0.0)
    rows = []
    for seconds in (2, 30) if args.quick else (2, 30, 300):
        ours = measure(client, seconds, DEFAULT_BACKOFF)
        one = measure(client, seconds, fixed) if seconds <= 30 else {"calls": seconds + 1, "lag_s": "≤1 (computed)"}
        rows.append({"work_s": seconds, "ours": ours, "fixed_1s": one, "airflow_30s_computed": airflow(seconds)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| work | ours: calls / lag | fixed 1 s: calls / lag | Airflow 30 s (computed): calls / lag |")
    print("|---|---|---|---|")
    for row in rows:
        cells = [f"{row[k]['calls']} / {row[k]['lag_s']} s" for k in ("ours", "fixed_1s", "airflow_30s_computed")]
        print(f"| {row['work_s']} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
