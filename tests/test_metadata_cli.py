"""``orchestrate metadata SOURCE``: extract + profile (+ publish) without a routine."""
from __future__ import annotations

import json

from test_metadata_publish import TOKEN, Api  # noqa: F401  (the api fixture's server)
from test_metadata_publish import api  # noqa: F401
from test_metadata_sql import sqlite_source


def test_summary_of_a_sqlite_database(cli, tmp_path):
    proc = cli("metadata", sqlite_source(tmp_path), "--mode", "exact", "--target", f"sqlite:///{tmp_path}/m.db")
    assert proc.returncode == 0, proc.stderr
    assert "main.people  100 rows, 5 columns" in proc.stdout
    assert "score" in proc.stdout and "nulls  20.0%" in proc.stdout and "distinct 80" in proc.stdout
    assert "contact" in proc.stdout and "(sensitive: values hidden)" in proc.stdout


def test_json_is_one_document_and_the_password_never_shows(cli, pg, tmp_path):
    pg.run(f'CREATE TABLE "{pg.name}".t (id int PRIMARY KEY, v text)', f"INSERT INTO \"{pg.name}\".t VALUES (1, 'a')")
    url = pg.url.replace("postgres@", "postgres:hunter2@")  # trust auth: the password is ignored, never shown
    proc = cli("metadata", url, "--include", f"{pg.name}.*", "--target", f"sqlite:///{tmp_path}/m.db", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded" and [t["table_name"] for t in doc["tables"]] == [f"{pg.name}.t"]
    assert "hunter2" not in proc.stdout + proc.stderr
    assert b"hunter2" not in (tmp_path / "m.db").read_bytes()
    home = tmp_path / "orchestrator-home"
    assert not [p for p in home.rglob("*") if p.is_file() and b"hunter2" in p.read_bytes()]


def test_publish_from_the_command_line(cli, tmp_path, api):  # noqa: F811
    proc = cli("metadata", sqlite_source(tmp_path), "--publish", api.url, "--json",
               env={"ORCHESTRATOR_API_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    (page,) = api.accepted()
    assert page["headers"]["Authorization"] == f"Bearer {TOKEN}" and len(page["body"]["columns"]) == 5
    assert TOKEN not in proc.stdout + proc.stderr


def test_bad_sources_exit_2_at_validation_and_1_at_run_time(cli, tmp_path):
    unknown = cli("metadata", "snowflake://acct/db")
    assert unknown.returncode == 2 and "unknown source type 'snowflake://acct/db'" in unknown.stderr
    missing = cli("metadata", str(tmp_path / "nothing-here"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    down = cli("metadata", "mysql+pymysql://root:hunter2@127.0.0.1:1/test")
    assert down.returncode == 1 and "cannot connect to mysql+pymysql://root@127.0.0.1:1/test" in down.stderr
    assert "hunter2" not in down.stderr + down.stdout
