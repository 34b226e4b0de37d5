"""``generate --target lambda``: the template passes cfn-lint, grants only what the routine names;
the
handler, imported by a bare Python from the unpacked function.zip, runs the routine against moto."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from generate_helpers import DEMO, bare_python, clean_env, orchestrate

S3_ROUTINE = {
    "routine_name": "s3_ship",
    "params": {"landing": "s3://ship-landing/in/", "raw": "s3://ship-raw/out/"},
    "executors": [
        {
            "name": "stage",
            "executor": "staging",
            "params": {
                "parent_directory": "${params.landing}",
                "dump_directory": "${params.raw}",
                "archive_or_delete": "delete",
                "transform": "lib/transforms.py:rename_columns",
                "transform_args": {"mapper": {"column1": "name", "column2": "n"}},
            },
            "tasks": ["transfer", "post_staging"],
        },
        {
            "name": "query",
            "executor": "athena",
            "depends_on": ["stage"],
            "params": {"database": "lake", "output_location": "s3://ship-results/athena/"},
            "tasks": [{"task": "run_query", "args": {"sql": "SELECT 1"}}],
        },
    ],
}
INVOKE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from orchestrator.aws_lambda.runner import handler

class Context:
    aws_request_id = "request-1"
    def get_remaining_time_in_millis(self):
        return 600_000

try:
    print(json.dumps({"result": handler(json.loads(sys.argv[2]), Context())}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
print(json.dumps({"orchestrator": sys.modules["orchestrator"].__file__}), file=sys.stderr)
"""


def routine_folder(folder: Path, doc: dict[str, Any]) -> Path:
    (folder / "lib").mkdir(parents=True)
    shutil.copyfile(DEMO / "lib" / "transforms.py", folder / "lib" / "transforms.py")
    path = folder / "routine.json"
    path.write_text(json.dumps(doc))
    return path


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    policies = template["Resources"]["RoutineFunction"]["Properties"]["Policies"]
    return [s for p in policies if isinstance(p, dict) for s in p["Statement"]]


def resources(found: list[dict[str, Any]], action: str) -> set[str]:
    arns = set()
    for statement in found:
        if action in statement["Action"]:
            for resource in (
                statement["Resource"]
                if isinstance(statement["Resource"], list)
                else [statement["Resource"]]
            ):
                arns.add(resource["Fn::Sub"] if isinstance(resource, dict) else resource)
    return arns


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lambda")
    routine = routine_folder(folder / "routine", S3_ROUTINE)
    out = folder / "out"
    result = orchestrate(
        "generate",
        str(routine),
        "--target",
        "lambda",
        "-o",
        str(out),
        "--s3-trigger",
        "s3://ship-landing/in/",
        "--store",
        "dynamodb://ship-runs",
        home=folder / "home",
    )
    assert result.returncode == 0, result.stderr
    unpacked = folder / "unpacked"
    with zipfile.ZipFile(out / "function.zip") as archive:
        archive.extractall(unpacked)
    return {"folder": folder, "out": out, "unpacked": unpacked, "routine": routine}


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    import sys

    command = Path(sys.executable).with_name("cfn-lint")
    return subprocess.run([str(command), str(template)], capture_output=True, text=True)


def test_the_template_passes_cfn_lint(generated):
    lint = cfn_lint(generated["out"] / "template.yaml")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_template_wires_handler_trigger_dead_letters_and_trust(generated):
    template = yaml.safe_load((generated["out"] / "template.yaml").read_text())
    function = template["Resources"]["RoutineFunction"]["Properties"]
    assert function["Handler"] == "orchestrator.aws_lambda.handler"
    assert function["CodeUri"] == "function.zip"
    variables = function["Environment"]["Variables"]
    assert variables["ORCHESTRATOR_ROUTINE"] == "routines/s3_ship/routine.json"
    assert variables["ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST"] == "/var/task/routines"
    assert (
        variables["ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST"] == ""
        and variables["ORCHESTRATOR_STORE"] == "dynamodb://ship-runs"
    )
    assert function["DeadLetterQueue"]["TargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert template["Resources"]["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    pattern = function["Events"]["ObjectCreated"]["Properties"]["Pattern"]
    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": ["ship-landing"]}, "object": {"key": [{"prefix": "in/"}]}},
    }


def test_the_policy_names_only_what_the_routine_names(generated):
    found = statements(yaml.safe_load((generated["out"] / "template.yaml").read_text()))
    s3 = "arn:${AWS::Partition}:s3:::"
    assert resources(found, "s3:DeleteObject") == {f"{s3}ship-landing/in/*", f"{s3}ship-raw/out/*"}
    assert resources(found, "s3:PutObject") == {f"{s3}ship-raw/out/*", f"{s3}ship-results/athena/*"}
    assert resources(found, "s3:GetObject") == {
        f"{s3}ship-landing/in/*",
        f"{s3}ship-raw/out/*",
        f"{s3}ship-results/athena/*",
    }
    listing = [s for s in found if "s3:ListBucket" in s["Action"]]
    assert {s["Condition"]["StringLike"]["s3:prefix"][0] for s in listing} == {
        "in/*",
        "out/*",
        "athena/*",
    }
    athena = "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/primary"
    assert resources(found, "athena:StartQueryExecution") == {athena}
    assert "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:database/lake" in resources(
        found, "glue:GetTable"
    )
    assert resources(found, "dynamodb:PutItem") == {
        "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/ship-runs",
        "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/ship-runs/index/*",
    }
    assert all(s["Resource"] != "*" for s in found)
    assert all(not a.endswith(":*") and a != "*" for s in found for a in s["Action"])


def test_glue_and_redshift_resources_are_derived(tmp_path):
    doc = {
        "routine_name": "warehouse",
        "executors": [
            {
                "name": "jobs",
                "executor": "glue",
                "tasks": [
                    {"task": "run_job", "args": {"job_name": "nightly"}},
                    {"task": "run_crawler", "args": {"crawler_name": "raw-crawler"}},
                    {"task": "create_database", "args": {"database": "lake"}},
                ],
            },
            {
                "name": "load",
                "executor": "redshift",
                "params": {"database": "dev", "cluster_identifier": "wh", "db_user": "loader"},
                "tasks": [{"task": "run_sql", "args": {"sql": "SELECT 1"}}],
            },
            {
                "name": "off",
                "executor": "glue",
                "active": False,
                "tasks": [{"task": "run_job", "args": {"job_name": "never"}}],
            },
        ],
    }
    routine = routine_folder(tmp_path / "r", doc)
    result = orchestrate(
        "generate",
        str(routine),
        "-t",
        "lambda",
        "-o",
        str(tmp_path / "out"),
        "--schedule",
        "rate(1 day)",
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    template = yaml.safe_load((tmp_path / "out" / "template.yaml").read_text())
    found = statements(template)
    region = "${AWS::Region}:${AWS::AccountId}"
    assert resources(found, "glue:StartJobRun") == {
        f"arn:${{AWS::Partition}}:glue:{region}:job/nightly"
    }
    assert resources(found, "glue:StartCrawler") == {
        f"arn:${{AWS::Partition}}:glue:{region}:crawler/raw-crawler"
    }
    assert resources(found, "redshift-data:ExecuteStatement") == {
        f"arn:${{AWS::Partition}}:redshift:{region}:cluster:wh"
    }
    assert resources(found, "redshift:GetClusterCredentials") == {
        f"arn:${{AWS::Partition}}:redshift:{region}:dbuser:wh/loader",
        f"arn:${{AWS::Partition}}:redshift:{region}:dbname:wh/dev",
    }
    assert not any(s["Action"][0].startswith("s3:") for s in found)
    assert (
        template["Resources"]["RoutineFunction"]["Properties"]["Events"]["Schedule"]["Properties"][
            "Schedule"
        ]
        == "rate(1 day)"
    )
    lint = cfn_lint(tmp_path / "out" / "template.yaml")
    assert lint.returncode == 0, lint.stdout


def invoke(
    generated: dict[str, Path], event: dict[str, Any], aws_env: dict[str, str]
) -> tuple[dict[str, Any], str]:
    template = yaml.safe_load((generated["out"] / "template.yaml").read_text())
    variables = template["Resources"]["RoutineFunction"]["Properties"]["Environment"]["Variables"]
    env = clean_env(
        generated["folder"] / "sandbox",
        LAMBDA_TASK_ROOT=str(generated["unpacked"]),
        ORCHESTRATOR_HOME=str(generated["folder"] / "sandbox" / "orchestrator"),
        **variables,
        **aws_env,
    )
    result = subprocess.run(
        [bare_python(), "-I", "-S", "-c", INVOKE, str(generated["unpacked"]), json.dumps(event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=generated["unpacked"],
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_the_handler_from_the_unpacked_zip_runs_the_routine_against_moto(generated, lambda_aws):
    from executors.dynamodb_store import DynamoDBStore

    s3 = lambda_aws.client("s3")
    for bucket in ("ship-landing", "ship-raw", "ship-results"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="ship-landing", Key="in/people 1.csv", Body=b"column1,column2\nada,36\n")
    store = DynamoDBStore("ship-runs")
    store.create_table()
    import os

    aws_env = {
        k: os.environ[k]
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        )
    }
    event = {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": "2026-11-21T06:00:00Z",
        "detail": {
            "bucket": {"name": "ship-landing"},
            "object": {"key": "in/people 1.csv", "size": 23},
        },
    }
    answer, stderr = invoke(generated, event, aws_env)
    assert "result" in answer, answer
    assert answer["result"]["status"] == "succeeded"
    assert [(t["step"], t["task"], t["status"]) for t in answer["result"]["tasks"]] == [
        ("stage", "transfer", "succeeded"),
        ("stage", "post_staging", "succeeded"),
        ("query", "run_query", "succeeded"),
    ]
    origin = json.loads(stderr.strip().splitlines()[-1])["orchestrator"]
    assert origin.startswith(str(generated["unpacked"]))
    body = s3.get_object(Bucket="ship-raw", Key="out/people 1.csv")["Body"].read()
    assert body == b"name,n\nada,36\n"
    assert "Contents" not in s3.list_objects_v2(Bucket="ship-landing", Prefix="in/")
    [run] = store.list_runs("s3_ship", None, limit=5)
    assert run.status == "succeeded" and run.params["s3_uri"] == "s3://ship-landing/in/people 1.csv"
    broken = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": "ship-landing"},
    }
    refused, _ = invoke(generated, broken, aws_env)
    assert refused["error"] == "InvalidEvent" and "event.detail.bucket.name" in refused["message"]


def test_generate_refuses_to_overwrite_without_force_and_lists_steps_with_verbose(generated):
    home = generated["folder"] / "home"
    args = (
        "generate",
        str(generated["routine"]),
        "--target",
        "lambda",
        "-o",
        str(generated["out"]),
        "--s3-trigger",
        "s3://ship-landing/in/",
        "--store",
        "dynamodb://ship-runs",
    )
    before = (generated["out"] / "template.yaml").stat().st_mtime_ns
    refused = orchestrate(*args, home=home)
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        f"{generated['out'] / 'function.zip'} exists; pass --force to replace it"
    )
    assert (generated["out"] / "template.yaml").stat().st_mtime_ns == before
    forced = orchestrate(*args, "--force", "--verbose", home=home)
    assert forced.returncode == 0, forced.stderr
    for step in (
        "validating",
        "writing function.zip",
        "bundling lake-orchestrator==",
        "writing template.yaml",
    ):
        assert step in forced.stderr


def test_an_option_of_another_target_is_refused(tmp_path):
    result = orchestrate(
        "generate",
        str(DEMO / "routine.yaml"),
        "--schedule",
        "rate(1 day)",
        "-o",
        str(tmp_path / "x.pyz"),
        home=tmp_path / "home",
    )
    assert (
        result.returncode == 2 and "--schedule does not apply to --target script" in result.stderr
    )
    assert not (tmp_path / "x.pyz").exists()


def test_arm64_gets_wheels_for_its_platform(tmp_path):
    routine = routine_folder(tmp_path / "r", S3_ROUTINE)
    result = orchestrate(
        "generate",
        str(routine),
        "-t",
        "lambda",
        "-o",
        str(tmp_path / "out"),
        "--architecture",
        "arm64",
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "out" / "function.zip") as archive:
        natives = [n for n in archive.namelist() if n.endswith(".so")]
        assert natives and all("x86_64" not in n for n in natives)
        for name in natives:
            header = archive.read(name)[:20]
            assert (
                header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183
            ), name  # EM_AARCH64
    template = yaml.safe_load((tmp_path / "out" / "template.yaml").read_text())
    assert template["Resources"]["RoutineFunction"]["Properties"]["Architectures"] == ["arm64"]
