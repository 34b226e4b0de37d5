"""Step selection (`--only`, `--from`, shown by `plan`) and `orchestrate backfill` through the CLI."""
from __future__ import annotations

import json

import pytest

CHAIN = {"routine_name": "chain", "params": {"run_date": "2026-11-01", "fail_on": ""}, "executors": [
    {"name": "extract", "executor": "echo", "tasks": [{"task": "say", "args": {"text": "e-${params.run_date}"}}]},
    {"name": "load", "executor": "echo", "depends_on": ["extract"],
     "tasks": [{"task": "say", "args": {"text": "l-${params.run_date}"}}]},
    {"name": "report", "executor": "echo", "depends_on": ["load"], "tasks": ["noop"]},
    {"name": "side", "executor": "echo", "depends_on": ["extract"], "tasks": ["noop"]}]}


def statuses(done) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return {t["step"]: t["status"] for t in json.loads(done.stdout)["tasks"]}


def test_only_runs_the_named_steps(cli, write_routine):
    done = cli(str(write_routine(CHAIN)), "--only", "load,side", "--json")
    assert statuses(done) == {"extract": "skipped", "load": "succeeded", "report": "skipped", "side": "succeeded"}
    assert "not selected (--only load,side)" in [t["reason"] for t in json.loads(done.stdout)["tasks"]]


def test_from_runs_the_step_and_everything_downstream(cli, write_routine):
    done = cli(str(write_routine(CHAIN)), "--from", "load", "--json")
    assert statuses(done) == {"extract": "skipped", "load": "succeeded", "report": "succeeded", "side": "skipped"}


def test_plan_shows_what_runs_and_what_not(cli, write_routine):
    path = str(write_routine(CHAIN))
    shown = cli("plan", path, "--from", "load")
    assert shown.returncode == 0
    lines = [line for line in shown.stdout.splitlines() if line[:1].isdigit()]
    assert "not selected (--from load): will be skipped" in lines[0] and "skipped" not in lines[1]
    selected = {s["step"]: s["selected"] for s in json.loads(cli("plan", path, "--only", "side", "--json").stdout)["steps"]}
    assert selected == {"extract": False, "load": False, "report": False, "side": True}


@pytest.mark.parametrize("flags, says", [
    (["--only", "lode"], "unknown step 'lode'; did you mean 'load'"),
    (["--from", "nope"], "unknown step 'nope'"),
    (["--only", "load", "--from", "load"], "give --only or --from, not both"),
])
def test_a_bad_selection_is_refused_before_anything_runs(cli, write_routine, flags, says):
    path = str(write_routine(CHAIN))
    done = cli(path, *flags)
    assert done.returncode == 2 and says in done.stderr
    assert cli("runs", "--json").stdout.strip() == "[]"


def test_backfill_runs_each_date_once_and_resumes(cli, write_routine):
    path = str(write_routine(CHAIN))
    first = cli("backfill", path, "--param", "run_date=2026-11-01..2026-11-03", "--json")
    assert first.returncode == 0, first.stderr
    rows = json.loads(first.stdout)["dates"]
    assert [(r["date"], r["status"]) for r in rows] == [("2026-11-01", "succeeded"), ("2026-11-02", "succeeded"),
                                                        ("2026-11-03", "succeeded")]
    runs = json.loads(cli("runs", "--json").stdout)
    assert sorted(r["params"]["run_date"] for r in runs) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    again = cli("backfill", path, "--param", "run_date=2026-11-02..2026-11-05", "--max-parallel", "2", "--json")
    assert again.returncode == 0, again.stderr
    rows = {r["date"]: r for r in json.loads(again.stdout)["dates"]}
    assert rows["2026-11-02"]["status"] == rows["2026-11-03"]["status"] == "skipped"
    assert rows["2026-11-04"]["status"] == rows["2026-11-05"]["status"] == "succeeded"
    assert len(json.loads(cli("runs", "--json").stdout)) == 5  # nothing ran twice
    shown = json.loads(cli("show", rows["2026-11-04"]["run_id"], "--json").stdout)
    says = [t["metrics"]["execution_metadata"]["text"] for t in shown["tasks"] if t["metrics"]]
    assert says == ["e-2026-11-04", "l-2026-11-04"]


def test_backfill_reports_failed_dates_and_exits_1(cli, write_routine):
    doc = {**CHAIN, "executors": [{"name": "gate", "executor": "echo",
                                   "tasks": [{"task": "fail", "args": {"message": "${params.run_date}"}}]}]}
    doc["params"] = {"run_date": "2026-11-01"}
    path = str(write_routine(doc))
    done = cli("backfill", path, "--param", "run_date=2026-11-01..2026-11-02")
    assert done.returncode == 1
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["failed", "failed"]


@pytest.mark.parametrize("param, says", [
    ("run_date=2026-11-01", "exactly one --param KEY=FIRST..LAST"),
    ("run_date=2026-11-05..2026-11-01", "the last date is before the first"),
    ("run_date=yesterday..today", "YYYY-MM-DD"),
])
def test_backfill_refuses_bad_ranges(cli, write_routine, param, says):
    done = cli("backfill", str(write_routine(CHAIN)), "--param", param)
    assert done.returncode == 2 and says in done.stderr
