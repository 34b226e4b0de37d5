"""Least-privilege IAM for the built-in executors, through the ``aws_iam_statements`` hook: what a
deployed routine (``orchestrate generate --target lambda``) needs for each step, derived from the
buckets and prefixes, Athena workgroup, Glue jobs, crawlers and tables, and Redshift targets the
step names — nothing else.

What cannot be derived is said, not guessed: tables an Athena query reads that the routine does not
create, and what a python step's own code calls (attach more with ``--policy-arn``). Redshift
Serverless workgroup ARNs carry an id, not the name, so the workgroup resource is the account's
workgroups in the region.
"""

from __future__ import annotations

from typing import Any, Iterable

from orchestrator.hookspecs import hookimpl

# CloudFormation pseudo parameters: the generator wraps every string holding "${AWS::" in an
# Fn::Sub, so the same statements deploy to any partition, region and account.
ARN = "arn:${AWS::Partition}"
REGIONAL = "${AWS::Region}:${AWS::AccountId}"
READ = ("s3:GetObject",)
# Multipart permissions too: smart-open writes even small objects as multipart uploads, and a
# failed write aborts its upload.
WRITE = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
DELETE = ("s3:DeleteObject",)


def s3(uri: Any, *actions: Iterable[str]) -> list[dict[str, Any]]:
    """Object actions under an ``s3://bucket/prefix``, and listing only that prefix."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return []
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        return []
    flat = sorted({a for group in actions for a in group})
    objects = f"{ARN}:s3:::{bucket}/{prefix}*"
    return [
        {"Effect": "Allow", "Action": flat, "Resource": objects},
        {
            "Effect": "Allow",
            # Listing is a bucket-level action: the s3:prefix condition below keeps it to the step's
            # prefix.
            "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"],
            "Resource": f"{ARN}:s3:::{bucket}",
            **({"Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}} if prefix else {}),
        },
    ]


def glue_catalog(
    database: str | None, table: str | None, actions: list[str]
) -> list[dict[str, Any]]:
    # Glue checks the catalog itself as a resource on every database and table call.
    resources = [f"{ARN}:glue:{REGIONAL}:catalog"]
    if database:
        resources.append(f"{ARN}:glue:{REGIONAL}:database/{database}")
        # Without a named table, every table of the database: what a query reads is not derived.
        resources.append(f"{ARN}:glue:{REGIONAL}:table/{database}/{table or '*'}")
    return [{"Effect": "Allow", "Action": sorted(actions), "Resource": resources}]


def staging(step: Any) -> list[dict[str, Any]]:
    params = step.params
    parent = str(params.get("parent_directory") or "")
    # staging's default archive folder (locations.default_archive), a sibling of the landing one.
    archive = params.get("archive_directory") or (
        parent.rstrip("/") + "_archive/" if parent else None
    )
    found = s3(parent, READ, DELETE) + s3(params.get("dump_directory"), READ, WRITE, DELETE)
    if params.get("archive_or_delete", "archive") == "archive":
        found += s3(archive, READ, WRITE)
    for code in (params.get("transform"), params.get("py_exec_path")):
        # A code reference may end in :function, which is not part of the key; [5:] skips the colon
        # of s3:// itself.
        found += s3(str(code).rpartition(":")[0] if code and ":" in str(code)[5:] else code, READ)
    return found


CATALOG_READ = [
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
]
CATALOG_WRITE = [
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:BatchCreatePartition",
    "glue:CreatePartition",
    "glue:BatchDeletePartition",
]


def athena(step: Any) -> list[dict[str, Any]]:
    params = step.params
    workgroup = params.get("workgroup", "primary")
    database = params.get("database", "default")
    found: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": [
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                # GetWorkGroup is the probe of AthenaExecutor.check (doctor).
                "athena:GetWorkGroup",
                "athena:StartQueryExecution",
                "athena:StopQueryExecution",
            ],
            "Resource": f"{ARN}:athena:{REGIONAL}:workgroup/{workgroup}",
        }
    ]
    found += s3(params.get("output_location"), READ, WRITE)
    databases = {database}
    writes = False
    for call in step.tasks:
        table = str(call.args.get("table") or "")
        if "." in table:
            databases.add(table.split(".")[0])
        # DDL writes the catalog; a run_query's SQL is not parsed for it, so only these tasks ask.
        if call.task in ("create_table", "create_table_as", "repair_table", "drop_table"):
            writes = True
        found += s3(
            call.args.get("location"), READ, WRITE if call.task == "create_table_as" else ()
        )
        found += s3(call.args.get("sql_file"), READ)
    for name in sorted(databases):
        found += glue_catalog(name, None, CATALOG_READ + (CATALOG_WRITE if writes else []))
    return found


def glue(step: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for call in step.tasks:
        args = call.args
        if call.task == "run_job":
            found.append(
                {
                    "Effect": "Allow",
                    "Action": [
                        # GetJobRuns finds a run whose start reply was lost (by its token argument);
                        # BatchStopJobRun is how cancel and timeouts stop a run.
                        "glue:BatchStopJobRun",
                        "glue:GetJobRun",
                        "glue:GetJobRuns",
                        "glue:StartJobRun",
                    ],
                    "Resource": f"{ARN}:glue:{REGIONAL}:job/{args['job_name']}",
                }
            )
            if args.get("follow_logs", True):
                group = (args.get("log_group") or "/aws-glue/jobs").rstrip("/")
                found.append(
                    {
                        "Effect": "Allow",
                        "Action": ["logs:GetLogEvents", "logs:FilterLogEvents"],
                        "Resource": f"{ARN}:logs:{REGIONAL}:log-group:{group}/*",
                    }
                )
        elif call.task == "run_crawler":
            found.append(
                {
                    "Effect": "Allow",
                    "Action": [
                        "glue:GetCrawler",
                        "glue:ListCrawls",
                        "glue:StartCrawler",
                        "glue:StopCrawler",
                    ],
                    "Resource": f"{ARN}:glue:{REGIONAL}:crawler/{args['crawler_name']}",
                }
            )
        elif call.task == "create_database":
            found += glue_catalog(
                args["database"], None, ["glue:CreateDatabase", "glue:GetDatabase"]
            )
        elif call.task in ("create_table", "update_table"):
            found += glue_catalog(
                args["database"],
                args["table"],
                ["glue:CreateTable", "glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"],
            )
    return found


def redshift(step: Any) -> list[dict[str, Any]]:
    params = step.params
    cluster, workgroup = params.get("cluster_identifier"), params.get("workgroup_name")
    target = (
        f"{ARN}:redshift:{REGIONAL}:cluster:{cluster}"
        if cluster
        else f"{ARN}:redshift-serverless:{REGIONAL}:workgroup/*"
    )
    found: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["redshift-data:BatchExecuteStatement", "redshift-data:ExecuteStatement"],
            "Resource": target,
        },
        # statements are only the caller's own: these actions take no resource
        {
            "Effect": "Allow",
            "Action": [
                "redshift-data:CancelStatement",
                "redshift-data:DescribeStatement",
                "redshift-data:GetStatementResult",
            ],
            "Resource": "*",
        },
    ]
    if params.get("secret_arn"):
        found.append(
            {
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": params["secret_arn"],
            }
        )
    elif cluster and params.get("db_user"):
        # DbUser means temporary credentials: the Data API gets them as the caller, for that user
        # and database only.
        found.append(
            {
                "Effect": "Allow",
                "Action": ["redshift:GetClusterCredentials"],
                "Resource": [
                    f"{ARN}:redshift:{REGIONAL}:dbuser:{cluster}/{params['db_user']}",
                    f"{ARN}:redshift:{REGIONAL}:dbname:{cluster}/{params['database']}",
                ],
            }
        )
    elif workgroup:
        found.append(
            {
                "Effect": "Allow",
                "Action": ["redshift-serverless:GetCredentials"],
                "Resource": target,
            }
        )
    return found


def ecs(step: Any) -> list[dict[str, Any]]:
    """Run tasks of the one task definition family on the one cluster, and watch or stop them."""
    params = step.params
    # A cluster given as an ARN becomes its name; a task definition (family, family:revision or
    # ARN) becomes its family, so any revision of it may run.
    cluster = str(params.get("cluster") or "").rpartition("/")[2] or "*"
    family = str(params.get("task_definition") or "").rpartition("/")[2].partition(":")[0] or "*"
    cluster_arn = f"{ARN}:ecs:{REGIONAL}:cluster/{cluster}"
    return [
        {
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": f"{ARN}:ecs:{REGIONAL}:task-definition/{family}:*",
            # RunTask's resource is the task definition; the cluster can only be pinned by this
            # condition.
            "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
        },
        {
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": f"{ARN}:ecs:{REGIONAL}:task/{cluster}/*",
        },
        {"Note": "its task definition's roles need iam:PassRole to ecs-tasks.amazonaws.com: "
                 "a state machine's role has it; elsewhere add it with --policy-arn"},
    ]


def python(step: Any) -> list[dict[str, Any]]:
    note = {"Note": "what its code calls cannot be derived; add it with --policy-arn"}
    return [*s3(step.params.get("path"), READ), note]


BUILT_IN = {
    "staging": staging,
    "athena": athena,
    "glue": glue,
    "redshift": redshift,
    "python": python,
    "ecs": ecs,
}


@hookimpl
def aws_iam_statements(step: Any) -> list[dict[str, Any]] | None:
    derive = BUILT_IN.get(step.executor.name)
    # A third-party executor may reuse a built-in name: only our own classes get these statements;
    # others answer through their own hook implementation.
    if derive is None or step.executor.cls.__module__.split(".")[0] != "executors":
        return None
    return derive(step)
