"""A routine from a Lambda event cannot run code of its own: each attack that worked, refused.

The handler is called in-process (see test_aws_lambda.py) with S3 and DynamoDB on a loopback moto
server; the code allowlist is ``tmp/code``, the path allowlist the default ``/tmp/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pytest

from lambda_fixtures import write_file
from orchestrator.aws_lambda.runner import InvalidEvent, RunFailed
from orchestrator.executor import Executor, Location, task
from orchestrator.hookspecs import hookimpl
from test_aws_lambda import (
    lam,
    python_routine,
    staging_routine,
)  # noqa: F401  (lam: the runner fixture)

PAYLOAD = b"import os\ndef run(**kw):\n    open('/tmp/pwned', 'w').write(repr(dict(os.environ)))\n"

REEXPORTS = """
import shutil
import shutil as sh
from shutil import copyfile
from os import path as osp

copy2 = sh.copy2

def own(src, dst):
    shutil.copyfile(src, dst)

if True:
    from shutil import move as relocate
try:
    def tried(src, dst):
        pass
except ImportError:
    tried = copyfile
"""

SWAPPED = """
import shutil

def _swap(function):
    return shutil.copyfile

@_swap
def copy(src, dst):
    raise AssertionError("never the body: the decorator swapped it for shutil.copyfile")
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    write_file(folder / "in" / "a.txt", "a")
    return folder


def nothing_ran(lam: Any, code: Path, expected: Iterable[str] = ("functions.py",)) -> None:
    assert sorted(p.name for p in code.iterdir()) == sorted(expected)
    assert lam.store.list_runs() == []


@pytest.mark.parametrize("dump, code_prefix", [("code/payload", "code"), ("www", "www/code")])
def test_s3_data_cannot_be_staged_where_code_is_imported_from(
    lam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dump: str, code_prefix: str
) -> None:
    """A later event's python step would import what this one staged into the code allowlist:
    the dump may neither lie inside a code prefix nor contain one (``www/code/transforms.py``)."""
    lam.s3.create_bucket(Bucket="attacker")
    lam.s3.put_object(Bucket="attacker", Key="payload/code/transforms.py", Body=PAYLOAD)
    code = Path(lam.functions).parent
    (tmp_path / "www" / "code").mkdir(parents=True)
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST", f"{code},{tmp_path / 'www' / 'code'}")
    routine = staging_routine(
        parent_directory="s3://attacker/payload/",
        dump_directory=str(tmp_path / dump),
        archive_or_delete="delete",
    )
    with pytest.raises(InvalidEvent) as refused:
        lam.call({"routine": routine})
    message = str(refused.value)
    assert message.startswith("inline routine: executors[0].params.dump_directory: "), message
    assert f"overlaps {tmp_path / code_prefix} in ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST" in message
    nothing_ran(lam, code)
    assert not list(tmp_path.rglob("transforms.py"))
    assert [o["Key"] for o in lam.s3.list_objects_v2(Bucket="attacker")["Contents"]] == [
        "payload/code/transforms.py"
    ]


@pytest.mark.parametrize(
    "kwargs, key, why",
    [
        (
            {"out": "<code>/evil.py"},
            "kwargs.out",
            "overlaps <code> in ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST",
        ),
        (
            {"out": "file://<code>/evil.py"},
            "kwargs.out",
            "overlaps <code> in ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST",
        ),
        (
            {"out": "/proc/self/environ"},
            "kwargs.out",
            "'/proc/self/environ' is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST",
        ),
        (
            {"out": "OUT", "copy": {"to": ["x", "../../../etc/evil"]}},
            "kwargs.copy.to[1]",
            "'../../../etc/evil' is outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST",
        ),
        ({"out": "HOME/runs.sqlite"}, "kwargs.out", "overlaps the orchestrator home"),
    ],
)
def test_python_kwargs_that_are_paths_are_held_to_the_location_policy(
    lam: Any, tmp_path: Path, orchestrator_home: Path, kwargs: dict[str, Any], key: str, why: str
) -> None:
    """``note(out, **values)`` writes to ``out``: into the code allowlist, it plants code."""
    code = Path(lam.functions).parent
    text = (
        json.dumps(kwargs).replace("<code>", str(code)).replace("OUT", str(lam.out / "note.json"))
    )
    routine = python_routine(
        lam.functions, "note", json.loads(text.replace("HOME", str(orchestrator_home)))
    )
    with pytest.raises(InvalidEvent) as refused:
        lam.call({"routine": routine})
    message = str(refused.value)
    assert message.startswith(f"inline routine: executors[0].tasks[0].args.{key}: "), message
    assert why.replace("<code>", str(code)) in message and "\n" not in message
    nothing_ran(lam, code)
    assert not (lam.out / "note.json").exists()


def test_relative_kwargs_such_as_s3_keys_are_not_paths(lam: Any) -> None:
    out = lam.out / "keys.json"
    summary = lam.call(
        {
            "routine": python_routine(
                lam.functions,
                "note",
                {
                    "out": str(out),
                    "key": "in/orders 2026.csv",
                    "url": "https://example.com/a/b",
                    "n": 3,
                },
            )
        }
    )
    assert summary["status"] == "succeeded"
    assert json.loads(out.read_text()) == {
        "key": "in/orders 2026.csv",
        "url": "https://example.com/a/b",
        "n": 3,
    }


@pytest.mark.parametrize(
    "function, why",
    [
        ("copyfile", "it imports, assigns or redefines them"),
        ("copy2", "it imports, assigns or redefines them"),
        ("relocate", "it imports, assigns or redefines them"),
        ("tried", "it imports, assigns or redefines them"),
        ("osp", "it imports, assigns or redefines them"),
    ],
)
def test_only_functions_the_allowlisted_file_defines_may_be_called(
    lam: Any, data: Path, function: str, why: str
) -> None:
    """``from shutil import copyfile`` in an allowlisted file made ``copyfile`` callable."""
    module = write_file(Path(lam.functions).parent / "reexports.py", REEXPORTS)
    target = data / "b.txt"
    routine = python_routine(
        str(module), function, {"src": str(data / "in" / "a.txt"), "dst": str(target)}
    )
    with pytest.raises(InvalidEvent) as refused:
        lam.call({"routine": routine})
    message = str(refused.value)
    assert message.startswith("inline routine: executors[0].tasks[0].args.function: "), message
    assert f"{module} does not itself define {function}() ({why})" in message
    assert not target.exists() and lam.store.list_runs() == []
    assert (
        lam.call(
            {
                "routine": python_routine(
                    str(module), "own", {"src": str(data / "in" / "a.txt"), "dst": str(target)}
                )
            }
        )["status"]
        == "succeeded"
    )
    assert target.read_text() == "a"


def test_a_staging_transform_must_be_defined_by_its_file(lam: Any, data: Path) -> None:
    module = write_file(Path(lam.functions).parent / "reexports.py", REEXPORTS)
    routine = staging_routine(
        parent_directory=str(data / "in"),
        dump_directory=str(data / "dump"),
        archive_or_delete="delete",
        transform=f"{module}:copyfile",
    )
    with pytest.raises(
        InvalidEvent,
        match=r"executors\[0\].params.transform: .* does not itself define copyfile\(\)",
    ):
        lam.call({"routine": routine})
    assert (data / "in" / "a.txt").is_file() and not (data / "dump").exists()


@pytest.mark.parametrize("kind", ["python", "staging"])
def test_a_function_swapped_at_import_time_is_refused_when_imported(
    lam: Any, data: Path, kind: str
) -> None:
    """``ast`` sees ``def copy``; the decorator returns ``shutil.copyfile``; ``__module__`` does."""
    module = write_file(Path(lam.functions).parent / "swapped.py", SWAPPED)
    if kind == "python":
        routine = python_routine(
            str(module),
            "copy",
            {"src": str(data / "in" / "a.txt"), "dst": str(data / "out.txt")},
            retries=2,
            retry_delay=0,
        )
    else:
        routine = staging_routine(
            parent_directory=str(data / "in"),
            dump_directory=str(data / "dump"),
            archive_or_delete="delete",
            transform=f"{module}:copy",
        )
    with pytest.raises(RunFailed) as failed:
        lam.call({"routine": routine})
    task_result = failed.value.summary["tasks"][0]
    assert task_result["status"] == "failed" and task_result["attempts"] == 1, task_result
    assert "copy is shutil.copyfile, not a function this file defines" in task_result["error"]
    assert not (data / "out.txt").exists() and not list(data.rglob("dump/*"))
    assert (data / "in" / "a.txt").read_text() == "a"


def test_packaged_routines_may_still_call_what_their_code_imports(
    lam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "package"
    write_file(package / "reexports.py", REEXPORTS)
    write_file(package / "swapped.py", SWAPPED)
    write_file(package / "a.txt", "a")
    for module, function in (("reexports.py", "copyfile"), ("swapped.py", "copy")):
        write_file(
            package / f"{function}.json",
            json.dumps(
                python_routine(
                    module,
                    function,
                    {"src": str(package / "a.txt"), "dst": str(tmp_path / f"{function}.txt")},
                    name=function,
                )
            ),
        )
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(package))
    for function in ("copyfile", "copy"):
        assert lam.call({"routine": f"{function}.json"})["status"] == "succeeded"
        assert (tmp_path / f"{function}.txt").read_text() == "a"


class Cache(Executor):
    """A third-party executor deriving a location the routine does not name: its cache folder."""

    name = "cache_test"

    def __init__(self, source: Location) -> None:
        self.source = source

    @classmethod
    def places(cls, params: dict[str, Any]) -> Iterable[Any]:
        from orchestrator import Place

        yield Place("cache_directory", str(params["source"]).rstrip("/") + "_cache", derived=True)

    @task
    def warm(self) -> None:
        Path(str(self.source).rstrip("/") + "_cache").mkdir()


class CachePlugin:
    @hookimpl
    def register_executors(self) -> list[type]:
        return [Cache]


def test_the_policy_asks_each_executor_which_locations_it_derives(
    lam: Any, lambda_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any executor's derived location is checked, not only staging's default archive (the core
    names no executor); ``<code>_cache`` lies outside the path allowlist."""
    lambda_registry.register(CachePlugin(), name="cache-test")
    code = Path(lam.functions).parent
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST", str(code))
    monkeypatch.setenv("ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST", str(tmp_path / "elsewhere"))
    routine = {
        "routine_name": "cache",
        "executors": [
            {
                "name": "c",
                "executor": "cache_test",
                "params": {"source": str(code)},
                "tasks": ["warm"],
            }
        ],
    }
    with pytest.raises(
        InvalidEvent,
        match=r"executors\[0\].params.cache_directory \(default\): '.*/code_cache' is "
        "outside ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST",
    ):
        lam.call({"routine": routine})
    assert not (tmp_path / "code_cache").exists() and lam.store.list_runs() == []


def test_the_trust_policy_names_no_executor() -> None:
    """Code, not docs: no string or name in the trust policy, handler or loader is an executor's."""
    import ast

    import orchestrator

    core = Path(orchestrator.__file__).parent
    for module in ("aws_lambda/trust.py", "aws_lambda/runner.py", "routine/load.py"):
        tree = ast.parse((core / module).read_text())
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and ast.get_docstring(node)
        }
        words = [
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
        ]
        words += [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
        for name in ("staging", "StagingExecutor", "_archive", "PythonExecutor", "py_exec"):
            assert not [w for w in words if name in w], f"{module} names {name!r}"
