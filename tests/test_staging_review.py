"""Regression tests for the reviewer's findings on the staging and python executors."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from executors.staging import s3store as _s3store
from executors.python import PythonExecutor
from executors.staging.executor import StagingExecutor
from orchestrator.routine.load import load_routine
from orchestrator.errors import RoutineError
from orchestrator.executor import Cancelled
from staging_helpers import CSV, MAPPER, RENAMED, ROUTINE, context, land, run, staging, tree

def py_exec(tmp_path: Path, main_body: str, test: str = "def test():\n    return True\n") -> Path:
    folder = tmp_path / "py"
    folder.mkdir(exist_ok=True)
    (folder / "py_exec.py").write_text(f"import os, shutil\n{test}\ndef main(parent, dump, **kw):\n{main_body}")
    return folder


def problems(tmp_path: Path, doc: dict) -> list[str]:
    path = tmp_path / "routine.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RoutineError) as caught:
        load_routine(path, {}, env={})
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


# 1. legacy py_exec: only files main() really put in the dump may be deleted or archived


def test_legacy_main_that_copies_nothing_deletes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    ex = staging(tmp_path, archive_or_delete="delete", py_exec_path=str(py_exec(tmp_path, "    pass\n")), py_exec_args={})
    moved, deleted = run(ex, tmp_path)
    assert tree(tmp_path / "landing") == {"a.csv": CSV, "b.csv": CSV}
    assert moved.total_rows == 0 and moved.execution_metadata["missing"] == 2
    assert deleted.total_rows == 0
    assert "a.csv not found in the dump after py_exec.main: left for the next run" in caplog.text


def test_legacy_main_that_skips_some_files_keeps_them(tmp_path: Path) -> None:
    """The seed's main copies top-level files only, and this one also skips b.csv and truncates c.csv."""
    body = ("    os.makedirs(dump, exist_ok=True)\n"
            "    for name in os.listdir(parent):\n"
            "        src = os.path.join(parent, name)\n"
            "        if os.path.isfile(src) and name != 'b.csv':\n"
            "            data = b'' if name == 'c.csv' else open(src, 'rb').read()\n"
            "            open(os.path.join(dump, name), 'wb').write(data)\n")
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV, "c.csv": CSV, "empty.csv": b"", "sub/d.csv": CSV})
    ex = staging(tmp_path, py_exec_path=str(py_exec(tmp_path, body)), py_exec_args={})
    moved, archived = run(ex, tmp_path)
    assert tree(tmp_path / "landing") == {"b.csv": CSV, "c.csv": CSV, "sub/d.csv": CSV}
    assert tree(tmp_path / "archive") == {"a.csv": CSV, "empty.csv": b""}
    assert moved.execution_metadata == {"files": 2, "missing": 3, "legacy": True}
    assert archived.execution_metadata["archived"] == 2


def test_legacy_dump_file_left_from_an_earlier_run_is_not_taken_for_a_copy(tmp_path: Path) -> None:
    land(tmp_path / "dump", {"a.csv": b"yesterday's a.csv\n"})
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path, archive_or_delete="delete", py_exec_path=str(py_exec(tmp_path, "    pass\n")), py_exec_args={})
    moved, _ = run(ex, tmp_path)
    assert tree(tmp_path / "landing") == {"a.csv": CSV} and moved.execution_metadata["missing"] == 1


def test_legacy_seed_py_exec_still_stages_everything(tmp_path: Path) -> None:
    land(tmp_path / "dump", {"a.csv": b"an older copy\n"})
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    ex = staging(tmp_path, archive_or_delete="delete", py_exec_path=str(ROUTINE / "py_exec"),
                 py_exec_args={"mapper": MAPPER})
    moved, deleted = run(ex, tmp_path)
    assert tree(tmp_path / "dump") == {"a.csv": RENAMED, "b.csv": RENAMED}
    assert tree(tmp_path / "landing") == {}
    assert moved.execution_metadata == {"files": 2, "missing": 0, "legacy": True}
    assert deleted.execution_metadata["deleted"] == 2


# 2. a symlink is the place it points to


@pytest.mark.parametrize("key", ["dump_directory", "archive_directory"])
def test_symlink_to_the_landing_folder_is_rejected_at_validation(tmp_path: Path, key: str) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "landing")
    params = {"parent_directory": str(tmp_path / "landing"), "dump_directory": str(tmp_path / "dump"),
              "archive_directory": str(tmp_path / "archive"), key: str(tmp_path / "link")}
    assert key in [k for k, _ in StagingExecutor.validate_params(params)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landing", "link"]  # nothing written


def test_landing_reached_through_a_symlinked_parent_is_nested(tmp_path: Path) -> None:
    (tmp_path / "data" / "landing").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    params = {"parent_directory": str(tmp_path / "data" / "landing"),
              "dump_directory": str(tmp_path / "alias" / "landing" / "out"), "archive_or_delete": "delete"}
    assert [k for k, _ in StagingExecutor.validate_params(params)] == ["dump_directory"]


def test_default_archive_stays_next_to_the_named_landing_folder(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "landing").symlink_to(tmp_path / "real")
    ex = staging(tmp_path, archive_directory=None)
    assert ex.archive_directory == str(tmp_path / "landing_archive")


def test_symlink_made_after_validation_stops_the_transfer(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path, archive_or_delete="delete", transform=f"{ROUTINE}/transforms.py:rename_columns",
                 transform_args={"mapper": MAPPER})
    assert list(StagingExecutor.validate_params(vars(ex))) == []
    (tmp_path / "dump").symlink_to(tmp_path / "landing")
    with pytest.raises(RuntimeError, match="same place or nested"):
        ex.transfer(context(tmp_path))
    assert tree(tmp_path / "landing") == {"a.csv": CSV}


# 3. cancel() ends with the attempt it was meant for


def test_retry_after_a_cancelled_attempt_runs(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path, archive_or_delete="delete")
    ex.cancel()  # what the engine does when an attempt times out
    moved, deleted = run(ex, tmp_path)
    assert moved.total_rows == 1 and deleted.execution_metadata["deleted"] == 1
    assert tree(tmp_path / "dump") == {"a.csv": CSV} and tree(tmp_path / "landing") == {}


def test_cancel_during_transfer_stops_the_remaining_files(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    script = tmp_path / "t.py"
    script.write_text("import shutil\ndef t(source, destination, hooks):\n"
                      "    for hook in hooks:\n        hook()\n    shutil.copyfileobj(source, destination)\n")
    hooks: list = []
    ex = staging(tmp_path, transform=f"{script}:t", transform_args={"hooks": hooks})
    hooks.append(ex.cancel)
    with pytest.raises(Cancelled):
        ex.transfer(context(tmp_path))
    assert len(tree(tmp_path / "dump")) == 1


def test_run_cancellation_still_stops_a_transfer(tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        staging(tmp_path).transfer(context(tmp_path, event=event))
    assert tree(tmp_path / "dump") == {}


def test_timeout_then_retry_through_the_engine(tmp_path: Path) -> None:
    """The first attempt hangs until the engine's timeout cancels it; the retry must really run."""
    from orchestrator.api import Orchestrator

    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    (tmp_path / "hang.py").write_text(
        "import os, shutil\nfrom orchestrator.executor import current_context\n"
        "def hang(source, destination, marker):\n"
        "    if not os.path.exists(marker):\n"
        "        open(marker, 'w').close()\n"
        "        current_context().wait(30)\n"
        "        raise RuntimeError('stopped by the timeout')\n"
        "    shutil.copyfileobj(source, destination)\n")
    doc = {"routine_name": "retry", "executors": [{"executor": "staging", "params": {
        "parent_directory": "landing", "dump_directory": "dump", "archive_or_delete": "delete",
        "transform": "hang.py:hang", "transform_args": {"marker": str(tmp_path / "marker")}},
        "tasks": [{"task": "transfer", "timeout": 0.5, "retries": 1, "retry_delay": 0.1}, "post_staging"]}]}
    path = tmp_path / "routine.json"
    path.write_text(json.dumps(doc))
    result = Orchestrator().run(path, track=False)
    statuses = [(t.task, t.status, t.attempts) for t in result.tasks] if hasattr(result, "tasks") else result
    assert tree(tmp_path / "dump") == {"a.csv": CSV, "b.csv": CSV}, statuses
    assert tree(tmp_path / "landing") == {}, statuses


# 4. an in-place rewrite that keeps size and mtime is still a change


@pytest.mark.parametrize("mode", ["archive", "delete"])
def test_in_place_rewrite_with_preserved_mtime_is_not_deleted(tmp_path: Path, mode: str) -> None:
    land(tmp_path / "landing", {"a.csv": b"v1,aaa\n"})
    ex = staging(tmp_path, archive_or_delete=mode)
    ex.transfer(context(tmp_path))
    time.sleep(0.05)  # past the kernel's timestamp granularity
    path = tmp_path / "landing" / "a.csv"
    st = os.stat(path)
    with open(path, "r+b") as f:  # same size, same inode
        f.write(b"v2,bbb\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p / rsync --inplace -t
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_ino == st.st_ino
    result = ex.post_staging(context(tmp_path, "post_staging"))
    assert result.execution_metadata["left"] == 1
    assert not any(n for k, n in result.execution_metadata.items() if k != "left")
    assert tree(tmp_path / "landing") == {"a.csv": b"v2,bbb\n"}
    assert tree(tmp_path / "archive") == {}
    # archive mode copies, so the dump keeps what was staged; delete mode links (a move in two
    # steps), so the dump is the landing file itself and shows the rewrite: nothing is lost,
    # and the next run stages the file again
    staged = b"v1,aaa\n" if mode == "archive" else b"v2,bbb\n"
    assert tree(tmp_path / "dump") == {"a.csv": staged}


# 5. code references are checked at validation, without running the code


CODE_REFERENCES = {
    "transform-missing-file": ({"transform": "nope.py:f"}, "transform", "no such Python file"),
    "transform-missing-function": ({"transform": "code.py:nofn"}, "transform", "defines no top-level nofn()"),
    "transform-syntax-error": ({"transform": "broken.py:f"}, "transform", "is not valid Python"),
    "transform-is-a-folder": ({"transform": "py:f"}, "transform", "is a folder"),
    "transform-on-s3": ({"transform": "s3://b/code.py:f"}, "transform", "local .py file"),
    "py-exec-folder-missing": ({"py_exec_path": "nope"}, "py_exec_path", "no such Python file"),
    "py-exec-file-missing": ({"py_exec_path": "."}, "py_exec_path", "py_exec.py"),
    "py-exec-without-main": ({"py_exec_path": "py", "py_exec_args": {}}, "py_exec_path", "defines no top-level main()"),
}


@pytest.mark.parametrize("params, key, message", CODE_REFERENCES.values(), ids=CODE_REFERENCES.keys())
def test_staging_code_references_are_checked(tmp_path: Path, params: dict, key: str, message: str) -> None:
    (tmp_path / "code.py").write_text("open(__file__ + '.ran', 'w')\ndef f(source, destination):\n    pass\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "py_exec.py").write_text("def test():\n    return True\n")
    doc = {"routine_name": "r", "executors": [{"executor": "staging", "params": {
        "parent_directory": "landing", "dump_directory": "dump", **params}, "tasks": ["transfer"]}]}
    found = problems(tmp_path, doc)
    assert any(line.startswith(f"executors[0].params.{key}: ") and message in line for line in found), found
    assert not list(tmp_path.glob("**/*.ran")) and not (tmp_path / "landing").exists()


def test_code_check_does_not_read_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.py")  # reading it would block validation forever
    params = {"parent_directory": str(tmp_path / "in"), "dump_directory": str(tmp_path / "out"),
              "transform": f"{tmp_path / 'pipe.py'}:f"}
    assert [m for _, m in StagingExecutor.validate_params(params)] == [f"{tmp_path / 'pipe.py'} is not a regular file"]


def test_code_defined_any_top_level_way_is_accepted_and_not_run(tmp_path: Path) -> None:
    (tmp_path / "code.py").write_text(
        "open(__file__ + '.ran', 'w')\n"
        "from shutil import copyfileobj as copy_as_is\n"
        "try:\n    import fast as speedy\nexcept ImportError:\n    speedy = None\n"
        "if True:\n    def conditional(source, destination):\n        pass\n"
        "renamed = copy_as_is\n"
        "class Callable:\n    pass\n")
    for function in ("copy_as_is", "speedy", "conditional", "renamed", "Callable"):
        params = {"parent_directory": str(tmp_path / "in"), "dump_directory": str(tmp_path / "out"),
                  "transform": f"{tmp_path / 'code.py'}:{function}"}
        assert list(StagingExecutor.validate_params(params)) == [], function
    (tmp_path / "star.py").write_text("from shutil import *\n")
    params = {"parent_directory": str(tmp_path / "in"), "dump_directory": str(tmp_path / "out"),
              "transform": f"{tmp_path / 'star.py'}:copyfileobj"}
    assert list(StagingExecutor.validate_params(params)) == []  # unknowable statically: not rejected
    assert not (tmp_path / "code.py.ran").exists()


def test_the_shipped_test_routine_still_validates() -> None:
    load_routine(ROUTINE / "routine_config.json", {}, env={})


def test_python_executor_path_and_function_are_checked(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text("open(__file__ + '.ran', 'w')\ndef prepare():\n    pass\n")
    doc = {"routine_name": "r", "executors": [
        {"name": "a", "executor": "python", "params": {"path": "nope.py"},
         "tasks": [{"task": "call", "args": {"function": "prepare"}}]},
        {"name": "b", "executor": "python", "params": {"path": "jobs.py"},
         "tasks": [{"task": "call", "args": {"function": "nofn"}},
                   {"task": "call", "args": {"function": "prepare"}}]}]}
    found = problems(tmp_path, doc)
    assert len(found) == 2, found
    assert found[0].startswith("executors[0].params.path: no such Python file")
    assert found[1].startswith("executors[1].tasks[0].args.function: ") and "nofn()" in found[1]
    assert not (tmp_path / "jobs.py.ran").exists()
    doc["executors"] = doc["executors"][1:]
    doc["executors"][0]["tasks"] = doc["executors"][0]["tasks"][1:]
    path = tmp_path / "routine.json"
    path.write_text(json.dumps(doc))
    load_routine(path, {}, env={})


def test_python_executor_validation_touches_nothing(tmp_path: Path) -> None:
    assert list(PythonExecutor.validate_params({"path": str(tmp_path / "x.py")}))[0][0] == "path"
    assert list(tmp_path.iterdir()) == []


# 6. local → S3 single PUTs are checked against the MD5 of what was read


@pytest.fixture
def buckets(s3: Any) -> Any:
    for name in ("land", "lake"):
        s3.create_bucket(Bucket=name)
    return s3


def _rewrite_etag(executor: StagingExecutor, operation: str) -> None:
    def lie(parsed: dict, **_: Any) -> None:
        if "ETag" in parsed:
            parsed["ETag"] = '"' + "0" * 32 + '"'

    executor.s3_client().meta.events.register(f"after-call.s3.{operation}", lie)


def test_local_to_s3_put_sends_content_md5(buckets: Any, tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path, dump_directory="s3://lake/raw/", archive_or_delete="delete")
    sent: list = []
    ex.s3_client().meta.events.register(
        "before-call.s3.PutObject", lambda params, **_: sent.append(params["headers"].get("Content-MD5")))
    run(ex, tmp_path)
    import base64
    assert sent == [base64.b64encode(hashlib.md5(CSV).digest()).decode()]
    assert buckets.get_object(Bucket="lake", Key="raw/a.csv")["Body"].read() == CSV


def test_local_to_s3_put_with_a_wrong_etag_is_not_verified(buckets: Any, tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path, dump_directory="s3://lake/raw/", archive_or_delete="delete")
    _rewrite_etag(ex, "PutObject")
    with pytest.raises(RuntimeError, match="not the MD5"):
        ex.transfer(context(tmp_path))
    assert ex.post_staging(context(tmp_path, "post_staging")).total_rows == 0
    assert tree(tmp_path / "landing") == {"a.csv": CSV}


def test_transformed_single_put_checks_the_etag_against_the_bytes_written(buckets: Any, tmp_path: Path) -> None:
    land(tmp_path / "landing", {"a.csv": CSV})
    ex = staging(tmp_path, dump_directory="s3://lake/raw/", archive_or_delete="delete",
                 transform=f"{ROUTINE}/transforms.py:rename_columns", transform_args={"mapper": MAPPER})
    _rewrite_etag(ex, "HeadObject")
    with pytest.raises(RuntimeError, match="not the MD5"):
        ex.transfer(context(tmp_path))
    assert tree(tmp_path / "landing") == {"a.csv": CSV}


def test_large_local_to_s3_is_multipart_and_checked_by_size(buckets: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_s3store, "SINGLE_PUT_LIMIT", 1024)
    payload = os.urandom(4096)
    land(tmp_path / "landing", {"big.bin": payload})
    ex = staging(tmp_path, dump_directory="s3://lake/raw/", archive_or_delete="delete")
    moved, _ = run(ex, tmp_path)
    assert moved.total_rows == 1
    assert buckets.get_object(Bucket="lake", Key="raw/big.bin")["Body"].read() == payload


def test_kms_or_multipart_etags_are_not_md5() -> None:
    md5 = hashlib.md5(b"x").hexdigest()
    assert _s3store._plain_md5_etag({"ETag": f'"{md5}"'}) == md5
    assert _s3store._plain_md5_etag({"ETag": f'"{md5}-2"'}) is None
    assert _s3store._plain_md5_etag({"ETag": f'"{md5}"', "ServerSideEncryption": "aws:kms"}) is None
    assert _s3store._plain_md5_etag({"ETag": f'"{md5}"', "SSECustomerAlgorithm": "AES256"}) is None
    assert _s3store._plain_md5_etag({"ETag": f'"{md5}"', "ServerSideEncryption": "AES256"}) == md5


def test_legacy_main_writing_to_an_s3_dump_is_checked_there(buckets: Any, tmp_path: Path) -> None:
    body = ("    import boto3\n"
            "    boto3.client('s3').put_object(Bucket='lake', Key='raw/a.csv', Body=open(parent + '/a.csv', 'rb'))\n")
    land(tmp_path / "landing", {"a.csv": CSV, "b.csv": CSV})
    ex = staging(tmp_path, dump_directory="s3://lake/raw/", archive_or_delete="delete",
                 py_exec_path=str(py_exec(tmp_path, body)), py_exec_args={})
    moved, deleted = run(ex, tmp_path)
    assert moved.execution_metadata == {"files": 1, "missing": 1, "legacy": True}
    assert tree(tmp_path / "landing") == {"b.csv": CSV}
