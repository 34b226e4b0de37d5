"""Resume never repeats a task that succeeded, and is refused where it would repeat work.

The routines run through the real CLI in a subprocess; Athena is a moto server on loopback.
A crash is a real SIGKILL of the CLI process at a chosen point (``crash_cli``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from aws_fixtures import AthenaSim, AwsEnv, write_json
from conftest import cli_env
from executors.aws.inflight import InFlight, RemoteOps
from executors.aws.record import RemoteRecord
from executors.aws.work import RemoteWork

OUTPUT = "s3://athena-results/out/"

CRASH_WRAPPER = """
import os, signal, sys
from executors.aws.record import RemoteRecord

original_save = RemoteRecord.save

def save(self, **fields):
    if {when}:
        os.kill(os.getpid(), signal.SIGKILL)
    original_save(self, **fields)

RemoteRecord.save = save
from orchestrator.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def crash_cli(
    plugin_site: Path, home: Path, when: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """The CLI, killed with SIGKILL at the first ``RemoteRecord.save`` where ``when`` holds."""
    code = CRASH_WRAPPER.format(when=when)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=cli_env(plugin_site, home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_json(cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    proc = cli(*args, "--json")
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def athena_routine(tmp: Path, tasks: list[Any]) -> Path:
    return write_json(
        tmp / "routine.json",
        {
            "routine_name": "resume_athena",
            "executors": [
                {
                    "name": "lake",
                    "executor": "athena",
                    "params": {"output_location": OUTPUT, "database": "lake"},
                    "tasks": tasks,
                }
            ],
        },
    )


def query(sql: str) -> dict[str, Any]:
    return {"task": "run_query", "args": {"sql": sql}}


def only_run(cli: Callable[..., Any]) -> dict[str, Any]:
    (run,) = run_json(cli, "runs")
    return run


# ---------------------------------------------------------------------- task granularity


def test_resume_does_not_insert_again_when_the_check_failed(
    aws: AwsEnv, athena_sim: AthenaSim, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    athena_sim.on("SELECT check", state="FAILED", reason="check found 0 rows")
    path = athena_routine(tmp_path, [query("INSERT INTO t SELECT 1"), query("SELECT check")])
    first = run_json(cli, str(path))
    assert [t["status"] for t in first["tasks"]] == ["succeeded", "failed"]
    athena_sim.rules.clear()
    resumed = run_json(cli, "resume", first["run_id"])
    assert resumed["status"] == "succeeded", resumed
    insert, check = resumed["tasks"]
    assert (
        insert["status"] == "skipped"
        and insert["reason"] == f"already succeeded in run {first['run_id']}"
    )
    assert check["status"] == "succeeded"
    assert len(athena_sim.executions("INSERT")) == 1, "the INSERT ran twice"
    assert len(athena_sim.executions("SELECT check")) == 2


def test_resume_after_a_crash_finds_the_query_after_a_skipped_one(
    aws: AwsEnv,
    athena_sim: AthenaSim,
    tmp_path: Path,
    cli: Callable[..., Any],
    plugin_site: Path,
    orchestrator_home: Path,
) -> None:
    """The second call of run_query keeps its record key although the first call is skipped, so
    the resume finds the query the dead run left behind instead of submitting it again."""
    path = athena_routine(
        tmp_path, [query("INSERT INTO a SELECT 1"), query("INSERT INTO b SELECT 2")]
    )
    crashed = crash_cli(
        plugin_site,
        orchestrator_home,
        "fields.get('state') == 'SUCCEEDED' and self.key.startswith('run_query-2.')",
        str(path),
    )
    assert crashed.returncode == -9, crashed.stderr
    assert len(athena_sim.executions("INSERT INTO b")) == 1
    dead = only_run(cli)
    assert dead["status"] == "dead"
    resumed = run_json(cli, "resume", dead["run_id"])
    assert resumed["status"] == "succeeded", resumed
    assert [t["status"] for t in resumed["tasks"]] == ["skipped", "succeeded"]
    assert resumed["tasks"][1]["metrics"]["execution_metadata"]["queries"][0]["reattached"] is True
    assert len(athena_sim.executions("INSERT INTO a")) == 1
    assert len(athena_sim.executions("INSERT INTO b")) == 1, (
        "the INSERT the dead run finished was submitted again"
    )


def staging_routine(tmp: Path, archive: Path) -> Path:
    return write_json(
        tmp / "routine.json",
        {
            "routine_name": "resume_staging",
            "executors": [
                {
                    "name": "stage",
                    "executor": "staging",
                    "params": {
                        "parent_directory": str(tmp / "landing"),
                        "dump_directory": str(tmp / "dump"),
                        "archive_or_delete": "archive",
                        "archive_directory": str(archive),
                    },
                    "tasks": ["transfer", "post_staging"],
                }
            ],
        },
    )


def test_resume_archives_what_the_skipped_transfer_copied(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    landing, archive = tmp_path / "landing", tmp_path / "archive"
    landing.mkdir()
    for i in range(3):
        (landing / f"f{i}.csv").write_text(f"row {i}\n")
    archive.write_text("a file where the archive folder should be")
    path = staging_routine(tmp_path, archive)
    first = run_json(cli, str(path))
    assert [t["status"] for t in first["tasks"]] == ["succeeded", "failed"], first
    dumped = {p.name: p.stat().st_ino for p in (tmp_path / "dump").iterdir()}
    assert sorted(dumped) == ["f0.csv", "f1.csv", "f2.csv"]
    archive.unlink()
    resumed = run_json(cli, "resume", first["run_id"])
    assert resumed["status"] == "succeeded", resumed
    transfer, post = resumed["tasks"]
    assert transfer["status"] == "skipped" and first["run_id"] in transfer["reason"]
    assert post["metrics"]["execution_metadata"]["archived"] == 3, post
    assert sorted(p.name for p in archive.iterdir()) == ["f0.csv", "f1.csv", "f2.csv"]
    assert list(landing.iterdir()) == []
    assert {p.name: p.stat().st_ino for p in (tmp_path / "dump").iterdir()} == dumped, (
        "transfer ran again"
    )


def test_resume_runs_transfer_again_when_its_list_is_missing(
    tmp_path: Path, cli: Callable[..., Any], orchestrator_home: Path
) -> None:
    """A run recorded before transfer kept its list (an older version): transfer runs again."""
    landing, archive = tmp_path / "landing", tmp_path / "archive"
    landing.mkdir()
    (landing / "f.csv").write_text("row\n")
    archive.write_text("not a folder")
    first = run_json(cli, str(staging_routine(tmp_path, archive)))
    for listed in orchestrator_home.glob("state/**/transferred/*.sqlite"):
        listed.unlink()
    archive.unlink()
    resumed = run_json(cli, "resume", first["run_id"])
    assert [t["status"] for t in resumed["tasks"]] == ["succeeded", "succeeded"]
    assert [p.name for p in archive.iterdir()] == ["f.csv"] and not list(landing.iterdir())


# ------------------------------------------------------------ refusals and the stored link


def echo_routine(write_routine: Callable[..., Path], fail: bool) -> Path:
    tasks = [{"task": "say", "args": {"text": "once"}}, {"task": "fail" if fail else "noop"}]
    return write_routine(
        {"routine_name": "twice", "executors": [{"name": "e", "executor": "echo", "tasks": tasks}]}
    )


def test_resuming_a_succeeded_or_already_resumed_run_is_refused_unless_forced(
    cli: Callable[..., Any], write_routine: Callable[..., Path]
) -> None:
    done = run_json(cli, str(echo_routine(write_routine, fail=False)))
    refused = cli("resume", done["run_id"])
    assert refused.returncode == 2 and f"run {done['run_id']} succeeded" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr

    failed = run_json(cli, str(echo_routine(write_routine, fail=True)))
    assert failed["status"] == "failed"
    later = run_json(cli, "resume", failed["run_id"])
    assert later["status"] == "failed" and later["tasks"][0]["status"] == "skipped"
    again = cli("resume", failed["run_id"])
    assert again.returncode == 2, again.stderr
    assert f"already resumed by run {later['run_id']} (failed)" in again.stderr
    assert f"resume run {later['run_id']} instead" in again.stderr

    echo_routine(write_routine, fail=False)
    forced_routine = cli("resume", later["run_id"], "--force", "--json")
    finished = json.loads(forced_routine.stdout)
    assert finished["status"] == "succeeded", forced_routine.stderr
    assert [t["status"] for t in finished["tasks"]] == ["skipped", "succeeded"]
    assert failed["run_id"] in finished["tasks"][0]["reason"], (
        "the skip names the run the task succeeded in"
    )
    refused = cli("resume", failed["run_id"], "--force")
    assert refused.returncode == 0, "--force resumes anyway"
    assert "once" not in refused.stderr, "a task that succeeded is not repeated even when forced"


def test_runs_and_show_name_the_resumed_run(
    cli: Callable[..., Any], write_routine: Callable[..., Path]
) -> None:
    failed = run_json(cli, str(echo_routine(write_routine, fail=True)))
    later = run_json(cli, "resume", failed["run_id"])
    table = cli("runs").stdout.splitlines()
    row = next(line for line in table if line.startswith(later["run_id"]))
    assert "RESUMES" in table[0] and row.rstrip().endswith(failed["run_id"])
    original = next(line for line in table if line.startswith(failed["run_id"]))
    assert original.count(failed["run_id"]) == 1, "the first run resumes nothing"
    listed = {r["run_id"]: r for r in run_json(cli, "runs")}
    assert listed[later["run_id"]]["resumed_from"] == failed["run_id"]
    assert listed[failed["run_id"]]["resumed_from"] is None
    assert f"resumes run {failed['run_id']}" in cli("show", later["run_id"]).stdout


# ------------------------------------------------------------ a crash between token and id
# Real AWS returns the same execution for a repeated Athena ClientRequestToken or Redshift Data API
# ClientToken; moto ignores both (notes/moto.md), so on moto only the orphan look-up prevents a
# second query. The tests check both: the look-up adopts the orphan, and the token is reused.

BETWEEN_TOKEN_AND_ID = "fields.get('state') == 'SUBMITTED'"


@pytest.fixture
def athena_tokens(athena_sim: AthenaSim, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ClientRequestToken of every StartQueryExecution the moto server received."""
    from moto.athena.responses import AthenaResponse

    tokens: list[str] = []
    original = AthenaResponse.start_query_execution

    def start_query_execution(self: Any) -> Any:
        tokens.append(self._get_param("ClientRequestToken"))
        return original(self)

    monkeypatch.setattr(AthenaResponse, "start_query_execution", start_query_execution)
    return tokens


def test_athena_resume_adopts_the_query_submitted_before_the_crash(
    aws: AwsEnv,
    athena_sim: AthenaSim,
    athena_tokens: list[str],
    tmp_path: Path,
    cli: Callable[..., Any],
    plugin_site: Path,
    orchestrator_home: Path,
) -> None:
    path = athena_routine(tmp_path, [query("INSERT INTO t SELECT 1")])
    crashed = crash_cli(plugin_site, orchestrator_home, BETWEEN_TOKEN_AND_ID, str(path))
    assert crashed.returncode == -9, crashed.stderr
    (orphan,) = athena_sim.executions("INSERT")
    dead = only_run(cli)
    resumed = run_json(cli, "resume", dead["run_id"])
    assert resumed["status"] == "succeeded", resumed
    (info,) = resumed["tasks"][0]["metrics"]["execution_metadata"]["queries"]
    assert len(athena_sim.executions("INSERT")) == 1, "the INSERT ran twice"
    assert info["id"] == orphan.id and info["reattached"] is True
    assert len(athena_tokens) == 1
    logs = cli("logs", resumed["run_id"]).stdout
    assert f"{orphan.id} was submitted with token {athena_tokens[0]}" in logs


def test_athena_resume_submits_with_the_dead_runs_token_when_the_look_up_fails(
    aws: AwsEnv,
    athena_sim: AthenaSim,
    athena_tokens: list[str],
    tmp_path: Path,
    cli: Callable[..., Any],
    plugin_site: Path,
    orchestrator_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ListQueryExecutions permission the orphan cannot be found: the resubmission carries
    the dead run's token, with which real Athena returns the query it already started."""
    from moto.athena.responses import AthenaResponse

    monkeypatch.setattr(
        AthenaResponse,
        "list_query_executions",
        lambda self: (
            json.dumps({"__type": "AccessDeniedException", "Message": "not allowed"}),
            {"status": 400},
        ),
    )
    path = athena_routine(tmp_path, [query("INSERT INTO t SELECT 1")])
    assert (
        crash_cli(plugin_site, orchestrator_home, BETWEEN_TOKEN_AND_ID, str(path)).returncode == -9
    )
    resumed = run_json(cli, "resume", only_run(cli)["run_id"])
    assert resumed["status"] == "succeeded", resumed
    assert len(athena_tokens) == 2 and athena_tokens[0] == athena_tokens[1], athena_tokens
    assert "cannot look for work submitted with token" in cli("logs", resumed["run_id"]).stdout


@pytest.fixture
def redshift_names(redshift_sim: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    """ExecuteStatement's StatementName and ClientToken by statement id, and a ListStatements shim
    (moto does not implement it) that filters by name prefix as the Data API does."""
    from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse as Response

    sent: dict[str, dict[str, str]] = {}
    original = Response.execute_statement

    def execute_statement(self: Any) -> Any:
        status, headers, body = original(self)
        sent[json.loads(body)["Id"]] = {
            "name": self._get_param("StatementName"),
            "token": self._get_param("ClientToken"),
        }
        return status, headers, body

    def list_statements(self: Any) -> Any:
        prefix = self._get_param("StatementName") or ""
        statements = [
            {
                "Id": s.id,
                "Status": s.status,
                "StatementName": sent[s.id]["name"],
                "CreatedAt": s.created_at,
                "QueryString": s.query_string,
            }
            for s in redshift_sim.backend.statements.values()
            if s.id in sent and (sent[s.id]["name"] or "").startswith(prefix)
        ]
        return 200, {}, json.dumps({"Statements": statements})

    monkeypatch.setattr(Response, "execute_statement", execute_statement)
    monkeypatch.setattr(Response, "list_statements", list_statements, raising=False)
    return sent


def test_redshift_resume_adopts_the_statement_submitted_before_the_crash(
    aws: AwsEnv,
    redshift_sim: Any,
    redshift_names: dict[str, dict[str, str]],
    tmp_path: Path,
    cli: Callable[..., Any],
    plugin_site: Path,
    orchestrator_home: Path,
) -> None:
    path = write_json(
        tmp_path / "routine.json",
        {
            "routine_name": "resume_redshift",
            "executors": [
                {
                    "name": "dw",
                    "executor": "redshift",
                    "params": {"database": "dev", "workgroup_name": "wg1"},
                    "tasks": [{"task": "run_sql", "args": {"sql": "INSERT INTO t VALUES (1)"}}],
                }
            ],
        },
    )
    crashed = crash_cli(plugin_site, orchestrator_home, BETWEEN_TOKEN_AND_ID, str(path))
    assert crashed.returncode == -9, crashed.stderr
    (orphan,) = redshift_sim.statements("INSERT")
    assert redshift_names[orphan.id]["name"] == f"orchestrator-{redshift_names[orphan.id]['token']}"
    resumed = run_json(cli, "resume", only_run(cli)["run_id"])
    assert resumed["status"] == "succeeded", resumed
    (info,) = resumed["tasks"][0]["metrics"]["execution_metadata"]["statements"]
    assert len(redshift_sim.statements("INSERT")) == 1, "the INSERT ran twice"
    assert info["id"] == orphan.id and info["reattached"] is True


def _dead_run_record(tmp_path: Path) -> Any:
    """The record a run left when it died between saving the token and saving the id."""
    old = RemoteRecord(tmp_path / "old", "run_query-1.q0", "d", "old", "r/s")
    old.path.parent.mkdir()
    old.save(token=old.token(), id=None, token_saved=1000.0)
    new = RemoteRecord(tmp_path / "new", "run_query-1.q0", "d", "new", "r/s")
    new.path.parent.mkdir()
    new.previous = old
    return old, new


@pytest.mark.parametrize(
    "orphan_state, token_reused", [("RUNNING", None), ("FAILED", False), (None, True)]
)
def test_a_found_orphan_is_adopted_unless_it_failed_then_a_fresh_token(
    tmp_path: Path, orphan_state: str | None, token_reused: bool | None
) -> None:
    from orchestrator.executor import Context

    old, new = _dead_run_record(tmp_path)
    states = {"orphan": orphan_state, "q1": "SUCCEEDED"}
    submits: list[str] = []
    looked: list[tuple[str, float]] = []

    def find_orphan(token: str, since: float, known: frozenset) -> str | None:
        looked.append((token, since))
        return "orphan" if orphan_state else None

    def submit(token: str) -> str:
        submits.append(token)
        return "q1"

    ops = RemoteOps(
        engine="athena",
        what="query",
        describe=lambda i: {
            "State": "SUCCEEDED" if i == "orphan" and orphan_state == "RUNNING" else states[i]
        },
        state_of=lambda d: d["State"],
        reason_of=lambda d: None,
        stop=lambda i: None,
    )
    context = Context(
        run_id="new",
        run_date="2024-01-01",
        routine_name="r",
        step="s",
        task="run_query",
        home=tmp_path,
        resumed_from="old",
    )
    result = RemoteWork(ops, new, context, InFlight()).run(submit, find_orphan=find_orphan)
    assert looked == [(old.data["token"], 1000.0)], (
        "the look-up uses the dead run's token and save time"
    )
    if token_reused is None:
        assert result.remote_id == "orphan" and submits == []
    else:
        assert result.remote_id == "q1" and len(submits) == 1
        assert (submits[0] == old.data["token"]) is token_reused


def test_closest_submission_keeps_to_the_window() -> None:
    from executors.aws.work import closest_submission

    since = 10_000.0
    assert (
        closest_submission(
            [("early", since - 3600), ("q0", since - 5), ("orphan", since + 0.2)], since
        )
        == "orphan"
    )
    assert closest_submission([("late", since + 3600)], since) is None
