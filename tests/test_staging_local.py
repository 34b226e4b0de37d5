"""The staging executor between local folders: real files, real renames, no mocks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executors.staging.executor import StagingExecutor
from orchestrator.executor import Cancelled, Context
from staging_helpers import CSV, MAPPER, RENAMED, ROUTINE, context, land, run, staging, tree

def test_rename_transform_rewrites_header_and_keeps_body(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV.replace(b"Bob", b"Zoe")})
    ex = staging(tmp_path, transform=f"{ROUTINE}/transforms.py:rename_columns", transform_args={"mapper": MAPPER})
    moved, archived = run(ex, tmp_path)
    assert tree(tmp_path / "dump") == {"a.csv": RENAMED, "b.csv": RENAMED.replace(b"Bob", b"Zoe")}
    assert tree(tmp_path / "archive") == {"a.csv": CSV, "b.csv": CSV.replace(b"Bob", b"Zoe")}
    assert tree(tmp_path / "landing") == {}
    assert moved.total_rows == 2 and moved.execution_metadata["bytes"] == 2 * len(RENAMED)
    assert archived.execution_metadata["archived"] == 2


def test_without_transform_copies_bytes_exactly(tmp_path: Path) -> None:
    payload = os.urandom(3 << 20)
    land(tmp_path / "landing", {"blob.bin": payload})
    run(staging(tmp_path), tmp_path)
    assert tree(tmp_path / "dump") == {"blob.bin": payload}


def test_pattern_matches_basename_and_relative_path(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV, "notes.txt": b"x", "sub/c.csv": CSV})
    run(staging(tmp_path, pattern="*.csv"), tmp_path)
    assert sorted(tree(tmp_path / "dump")) == ["a.csv", "sub/c.csv"]
    assert tree(tmp_path / "landing") == {"notes.txt": b"x"}
    land(tmp_path / "landing", {"sub/d.csv": CSV, "e.csv": CSV})
    run(staging(tmp_path, pattern="sub/*"), tmp_path)
    assert tree(tmp_path / "landing") == {"notes.txt": b"x", "e.csv": CSV}


def test_nested_folders_keep_relative_paths(tmp_path: Path) -> None:
    files = {"2026/11/22/a.csv": CSV, "2026/11/23/a.csv": CSV + b"x\n", "top.csv": CSV}
    land(tmp_path / "landing", files)
    run(staging(tmp_path), tmp_path)
    assert tree(tmp_path / "dump") == files
    assert tree(tmp_path / "archive") == files


def test_delete_removes_landing_and_writes_no_archive(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    _, result = run(staging(tmp_path, archive_or_delete="delete"), tmp_path)
    assert tree(tmp_path / "landing") == {} and tree(tmp_path / "dump") == {"a.csv": CSV}
    assert not (tmp_path / "archive").exists()
    assert result.execution_metadata["deleted"] == 1


def test_default_archive_is_a_sibling_of_landing(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = StagingExecutor(parent_directory=str(tmp_path / "landing"), dump_directory=str(tmp_path / "dump"))
    run(ex, tmp_path)
    assert tree(tmp_path / "landing_archive") == {"a.csv": CSV}


def test_archive_collision_keeps_both_and_identical_is_not_duplicated(tmp_path: Path) -> None:
    land(tmp_path / "archive", {"a.csv": b"older content\n", "b.csv": CSV})
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    _, result = run(staging(tmp_path), tmp_path)
    archived = tree(tmp_path / "archive")
    assert archived["a.csv"] == b"older content\n"
    renamed = [rel for rel in archived if rel.startswith("a.") and rel != "a.csv"]
    assert len(renamed) == 1 and renamed[0].endswith(".csv") and archived[renamed[0]] == CSV
    assert sorted(archived) == sorted(["a.csv", "b.csv", renamed[0]])
    assert tree(tmp_path / "landing") == {}
    assert result.execution_metadata == {"archived": 0, "already_archived": 1, "renamed": 1, "left": 0}


@pytest.mark.parametrize("params, bad", [
    ({"parent_directory": "/d/landing", "dump_directory": "/d/landing/dump"}, "dump_directory"),
    ({"parent_directory": "/d/lake/landing", "dump_directory": "/d/lake"}, "dump_directory"),
    ({"parent_directory": "/d/in", "dump_directory": "/d/out", "archive_directory": "/d/out/"}, "archive_directory"),
    ({"parent_directory": "/d/in", "dump_directory": "/d/x/../in/sub"}, "dump_directory"),
    ({"parent_directory": "s3://b/landing/", "dump_directory": "s3://b/landing/raw"}, "dump_directory"),
    ({"parent_directory": "s3://b/landing", "dump_directory": "s3://b/raw", "archive_directory": "s3://b"},
     "archive_directory"),
    ({"parent_directory": "s3://b/", "dump_directory": "s3://c/raw"}, "archive_directory"),
    ({"parent_directory": "/d/in", "dump_directory": "/d/out", "py_exec_path": "/d/py", "transform": "/d/t.py:f"},
     "transform"),
    ({"parent_directory": "/d/in", "dump_directory": "/d/out", "transform": "/d/t.py"}, "transform"),
    ({"parent_directory": "gs://b/in", "dump_directory": "/d/out"}, "parent_directory"),
], ids=["dump-in-parent", "parent-in-dump", "archive-is-dump", "dotdot", "s3-prefix", "s3-bucket-root-archive",
        "s3-root-no-default-archive", "py-exec-and-transform", "transform-no-function", "unsupported-scheme"])
def test_validate_params_rejects(params: dict, bad: str) -> None:
    assert bad in [key for key, _ in StagingExecutor.validate_params(params)]


@pytest.mark.parametrize("params", [
    {"parent_directory": "/d/landing", "dump_directory": "/d/landing_dump"},
    {"parent_directory": "s3://b/landing/", "dump_directory": "s3://b/landing2/"},
    {"parent_directory": "s3://b/in", "dump_directory": "/d/in"},
    {"parent_directory": "s3://b/", "dump_directory": "s3://c/raw", "archive_or_delete": "delete"},
], ids=["name-prefix-sibling", "s3-sibling", "s3-vs-local", "bucket-root-delete"])
def test_validate_params_accepts(params: dict) -> None:
    assert list(StagingExecutor.validate_params(params)) == []


def test_constructor_and_validation_touch_nothing(tmp_path: Path) -> None:
    ex = staging(tmp_path, dump_directory="s3://bucket/raw/")
    list(StagingExecutor.validate_params(vars(ex)))
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_load_boto3_or_smart_open() -> None:
    code = "import sys, executors.staging, executors.python; print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('boto3', 'botocore', 'smart_open')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_landing_means_nothing_to_stage(tmp_path: Path) -> None:
    moved, after = run(staging(tmp_path), tmp_path)
    assert moved.total_rows == 0 and after.total_rows == 0
    assert not (tmp_path / "dump").exists() and not (tmp_path / "landing").exists()


def test_file_landing_between_transfer_and_post_staging_stays(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path)
    ex.transfer(context(tmp_path))
    land(tmp_path / "landing", {"late.csv": b"late\n"})
    ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(tmp_path / "landing") == {"late.csv": b"late\n"}
    assert tree(tmp_path / "dump") == {"a.csv": CSV}


def test_file_modified_after_transfer_stays_and_next_run_stages_new_version(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    ex = staging(tmp_path)
    ex.transfer(context(tmp_path))
    (tmp_path / "landing" / "a.csv").write_bytes(CSV + b"Carl,1,x\n")
    result = ex.post_staging(context(tmp_path, "post_staging"))
    assert tree(tmp_path / "landing") == {"a.csv": CSV + b"Carl,1,x\n"}
    assert result.execution_metadata["left"] == 1
    run(staging(tmp_path), tmp_path)
    assert tree(tmp_path / "dump")["a.csv"] == CSV + b"Carl,1,x\n"
    assert tree(tmp_path / "landing") == {}


def test_source_changing_during_copy_is_not_published(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    script = tmp_path / "meddle.py"
    script.write_text("import shutil\ndef meddle(source, destination, path):\n"
                      "    open(path, 'ab').write(b'more\\n')\n    shutil.copyfileobj(source, destination)\n")
    ex = staging(tmp_path, transform=f"{script}:meddle",
                 transform_args={"path": str(tmp_path / "landing" / "a.csv")})
    moved, after = run(ex, tmp_path)
    assert moved.total_rows == 0 and moved.execution_metadata["changed"] == 1
    assert tree(tmp_path / "landing") == {"a.csv": CSV + b"more\n"}
    assert tree(tmp_path / "dump") == {}


def test_post_staging_without_transfer_touches_nothing(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    assert staging(tmp_path).post_staging(context(tmp_path, "post_staging")).total_rows == 0
    assert tree(tmp_path / "landing") == {"a.csv": CSV}


def test_no_hidden_or_partial_files_in_dump_and_leftovers_are_removed(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV, "sub/b.csv": CSV})
    leftover = tmp_path / "dump" / "sub" / ".b.csv.orchestrator-partial"
    land(tmp_path / "dump", {"sub/.b.csv.orchestrator-partial": b"half"})
    journal = context(tmp_path).state_dir("staging") / "journal.jsonl"
    journal.write_text(json.dumps({"begin": str(leftover)}) + "\n")
    ex = staging(tmp_path, transform=f"{ROUTINE}/transforms.py:rename_columns", transform_args={"mapper": MAPPER})
    run(ex, tmp_path)
    assert tree(tmp_path / "dump") == {"a.csv": RENAMED, "sub/b.csv": RENAMED}
    assert not journal.exists()


def test_cancel_stops_before_copying(tmp_path: Path) -> None:
    """A cancelled run stops the task before its first copy. (``cancel()`` itself is per attempt:
    a retry after a timeout starts afresh, see test_staging_review.py.)"""
    import threading

    land(tmp_path / "landing", {"a.csv": CSV})
    cancelled = threading.Event()
    cancelled.set()
    ctx = Context(run_id="r1", run_date="2026-11-22", routine_name="test", step="stage", task="transfer",
                  home=tmp_path / "home", cancel_event=cancelled)
    with pytest.raises(Cancelled):
        staging(tmp_path).transfer(ctx)
    assert tree(tmp_path / "dump") == {}


def test_failed_transform_fails_task_and_keeps_landing(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    script = tmp_path / "bad.py"
    script.write_text("def boom(source, destination):\n    destination.write(b'x')\n    raise ValueError('no')\n")
    ex = staging(tmp_path, transform=f"{script}:boom")
    with pytest.raises(RuntimeError, match="not staged"):
        ex.transfer(context(tmp_path))
    assert ex.post_staging(context(tmp_path, "post_staging")).total_rows == 0
    assert tree(tmp_path / "landing") == {"a.csv": CSV} and tree(tmp_path / "dump") == {}


def test_legacy_py_exec_seed_form(tmp_path: Path) -> None:
    """The seed's dict-form routine: py_exec.test(), then main(parent, dump, mapper)."""
    routine = {"routine_name": "legacy", "executors": {"StagingExecutor": {"params": {
        "parent_directory": str(tmp_path / "landing"), "dump_directory": str(tmp_path / "dump"),
        "archive_or_delete": "delete", "py_exec_path": str(ROUTINE / "py_exec"),
        "py_exec_args": {"mapper": MAPPER}}, "tasks": ["transfer", "post_staging"]}}}
    params = routine["executors"]["StagingExecutor"]["params"]
    assert list(StagingExecutor.validate_params(params)) == []
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    moved, deleted = run(StagingExecutor(**params), tmp_path)
    assert tree(tmp_path / "dump") == {"a.csv": RENAMED, "b.csv": RENAMED}
    assert tree(tmp_path / "landing") == {}
    assert moved.total_rows == 2 and deleted.execution_metadata["deleted"] == 2


def test_legacy_py_exec_without_args_calls_only_test(tmp_path: Path) -> None:
    """The seed calls main() only when py_exec_args is given: without it, test() runs and nothing moves."""
    code = tmp_path / "py_exec"
    code.mkdir()
    (code / "py_exec.py").write_text(
        "import pathlib\n"
        f"MARK = pathlib.Path({str(tmp_path / 'tested')!r})\n"
        "def test():\n    MARK.write_text('yes')\n"
        "def main(parent, dump):\n    raise AssertionError('main must not run without py_exec_args')\n")
    land(tmp_path / "landing", {"a.csv": CSV})
    moved, deleted = run(staging(tmp_path, py_exec_path=str(code), archive_or_delete="delete"), tmp_path)
    assert (tmp_path / "tested").read_text() == "yes"
    assert moved.total_rows == 0 and deleted.total_rows == 0
    assert tree(tmp_path / "landing") == {"a.csv": CSV} and tree(tmp_path / "dump") == {}


def test_test_routine_runs_twice_through_the_cli(tmp_path: Path) -> None:
    """End to end: the shipped routine, run twice in a row, stages each sample once and archives it."""
    import shutil

    routine = tmp_path / "routine"
    shutil.copytree(ROUTINE, routine, ignore=shutil.ignore_patterns("work", "__pycache__"))
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    cli = Path(sys.executable).with_name("orchestrate")
    for _ in range(2):
        done = subprocess.run([str(cli), str(routine / "routine_config.json")], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    samples = tree(routine / "samples")
    assert tree(routine / "work" / "archive") == samples
    assert tree(routine / "work" / "landing") == {}
    assert tree(routine / "work" / "dump") == {
        rel: data.replace(b"column1,column2,column3", b"name,age,job", 1) for rel, data in samples.items()}


def test_a_missing_landing_folder_is_a_warning_or_with_require_files_a_failure(tmp_path: Path) -> None:
    from executors.staging.transfer import StagingError
    from orchestrator.cli.render import metrics_text

    metrics = staging(tmp_path, parent_directory=str(tmp_path / "nosuchdir")).transfer(context(tmp_path))
    assert metrics.total_rows == 0 and "does not exist" in metrics.execution_metadata["warning"]
    assert metrics_text(metrics.to_dict()).startswith("warning: landing ")  # the summary says it
    with pytest.raises(StagingError, match="require_files"):
        staging(tmp_path, parent_directory=str(tmp_path / "nosuchdir"), require_files=True).transfer(context(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StagingError, match="no file matching"):
        staging(tmp_path, parent_directory=str(tmp_path / "empty"), require_files=True).transfer(context(tmp_path))
    land(tmp_path / "landing", {"a.csv": CSV})
    assert staging(tmp_path, require_files=True).transfer(context(tmp_path)).total_rows == 1
