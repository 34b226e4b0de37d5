"""One command: a local moto server, seeded buckets and landing files, then ``orchestrate`` on the routine.

    python routines/aws_demo/run_demo.py [--json]

Everything runs on 127.0.0.1 with dummy credentials. moto cannot finish Redshift Data API
statements by itself (they stay STARTED), so this script registers a small in-process shim that
finishes each statement and, for a COPY, reports the data lines under its S3 prefix as rows.
The run is recorded in the usual run store (``$ORCHESTRATOR_HOME``, default ``~/.orchestrator``),
so ``orchestrate show RUN_ID`` works afterwards; the summary at the end says so.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ACCOUNT, REGION = "123456789012", "us-east-1"
PEOPLE = {
    "people_1.csv": "column1,column2,column3\nAlice,34,engineer\nBob,45,plumber\n",
    "people_2.csv": "column1,column2,column3\nCarol,29,engineer\nDan,51,teacher\n",
    "people_3.csv": "column1,column2,column3\nEve,38,teacher\n",
}


def start_moto() -> str:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def finish_redshift_statements() -> None:
    """Shim: statements finish on their first describe; a COPY reports the CSV data lines it would load."""
    from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse
    from moto.s3.models import s3_backends

    def describe_statement(self: Any) -> Any:
        statement = self.redshiftdata_backend.describe_statement(statement_id=self._get_param("Id"))
        if statement.status == "STARTED":
            statement.status, statement.result_rows = "FINISHED", 0
            match = re.search(r"FROM 's3://([^/']+)/([^']*)'", statement.query_string)
            if statement.query_string.startswith("COPY") and match:
                bucket = s3_backends[ACCOUNT]["aws"].buckets[match.group(1)]
                statement.result_rows = sum(max(0, key.value.count(b"\n") - 1) for name, key in bucket.keys.items()
                                            if name.startswith(match.group(2)))
        doc = dict(statement)
        doc.pop("SubStatements", None)
        return 200, {}, json.dumps(doc)

    RedshiftDataAPIServiceResponse.describe_statement = describe_statement


def seed(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    for bucket in ("demo-landing", "demo-raw", "demo-athena-results"):
        s3.create_bucket(Bucket=bucket)
    boto3.client("glue", endpoint_url=endpoint, region_name=REGION).create_job(
        Name="demo_enrich", Role=f"arn:aws:iam::{ACCOUNT}:role/demo-glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://demo-raw/scripts/enrich.py"})
    for name, text in PEOPLE.items():
        s3.put_object(Bucket="demo-landing", Key=f"people/{name}", Body=text.encode())


def main() -> int:
    endpoint = start_moto()
    assert endpoint.startswith("http://127.0.0.1:")
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION=REGION)
    for name in ("AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        os.environ.pop(name, None)
    finish_redshift_statements()
    seed(endpoint)
    orchestrate = str(Path(sys.executable).with_name("orchestrate"))
    run_id = str(uuid.uuid4())
    command = [orchestrate, "run", str(HERE / "routine.yaml"), "--run-id", run_id, *sys.argv[1:]]
    code = subprocess.run(command, env=dict(os.environ)).returncode
    print(summary(run_id, code), file=sys.stderr if "--json" in sys.argv else sys.stdout)
    return code


def summary(run_id: str, code: int) -> str:
    verdict = "succeeded" if code == 0 else f"ended with exit code {code}"
    return "\n".join([
        "",
        f"aws_demo {verdict}: run {run_id}",
        f"  orchestrate show {run_id}     every task, its metrics and errors",
        f"  orchestrate logs {run_id}     the run's log",
        "Note: moto, the local AWS emulator, does not execute SQL: the Athena SELECT returns no rows",
        "here (on AWS it counts people per job), and the Redshift COPY row count comes from this",
        "script's shim, which counts the CSV data lines under the COPY's S3 prefix.",
    ])


if __name__ == "__main__":
    sys.exit(main())
