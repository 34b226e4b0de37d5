"""Routines written to hurt: each is refused in one line with exit 2, before anything is created,
within a small, fixed amount of memory (issue 7, item 6)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main

# nine anchors, each a list of nine uses of the one before: 9**9 strings (issue 7: 613 bytes)
BOMB_LINES = [
    "routine_name: bomb",
    "params:",
    '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"  {n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")),
]
BOMB_PARAMS = "\n".join(BOMB_LINES) + "\n"
ALIAS_BOMB = BOMB_PARAMS + (
    "executors: [{executor: python, params: {path: f.py}, "
    "tasks: [{task: call, args: {function: f}}]}]\n"
)
S3_ALIAS_BOMB = BOMB_PARAMS + (
    "executors: [{executor: staging, params: {parent_directory: 's3://landing/in/', "
    "dump_directory: 's3://dump/out/'}, tasks: [transfer]}]\n"
)
BOMB_MESSAGE = "more than 100,000 values once its YAML aliases are expanded; use fewer aliases"


def limit_memory() -> None:
    """For a child process: 1.5 GB of address space, half of what the bomb took before the fix."""
    resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))


def python_routine(**task: Any) -> dict[str, Any]:
    return {
        "routine_name": "hostile",
        "executors": [
            {
                "name": "work",
                "executor": "python",
                "params": {"path": "f.py"},
                "tasks": [{"task": "call", "args": {"function": "f"}, **task}],
            }
        ],
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "f.py").write_text("def f():\n    pass\n")
    return tmp_path


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(path: Path, capsys: pytest.CaptureFixture[str], command: str = "validate") -> str:
    """The routine is refused by ``command`` with exit 2 and one line naming the file; that line."""
    code, out, err = run_cli(command, str(path), capsys=capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: "), err
    return lines[0]


def test_yaml_alias_bomb_is_refused_within_bounded_memory(folder: Path) -> None:
    """In a child limited to 1.5 GB of address space: before the fix it took 3 GB (MemoryError)."""
    path = folder / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 700

    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        preexec_fn=limit_memory,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == f"{path}: {BOMB_MESSAGE}"


HOSTILE_TEXTS = {
    "not_utf8": (
        "r.json",
        b'{"routine_name": "r\xff", "executors": []}',
        "not UTF-8 text (byte 0xff at line 1)",
    ),
    "json_3000_deep": ("r.json", b"[" * 3000 + b"]" * 3000, "nested deeper than 64 levels"),
    "yaml_3000_deep": (
        "r.yaml",
        b"routine_name: r\nexecutors: " + b"[" * 3000 + b"]" * 3000,
        "nested deeper than 64 levels",
    ),
    "json_65_deep": (
        "r.json",
        json.dumps(
            {"routine_name": "r", "params": {"p": json.loads("[" * 64 + "]" * 64)}, "executors": []}
        ).encode(),
        "params.p" + "[0]" * 62 + ": nested deeper",
    ),
    "json_5000_digits": (
        "r.json",
        b'{"routine_name": "r", "params": {"n": ' + b"9" * 5000 + b"}, \"executors\": []}",
        "a number with more digits than Python reads (4,300); write it as a string",
    ),
    "yaml_5000_digits": (
        "r.yaml",
        b"routine_name: r\nparams: {n: " + b"9" * 5000 + b"}\nexecutors: []\n",
        "a number with more digits than Python reads",
    ),
    "yaml_hex_digits": (
        "r.yaml",
        b"routine_name: r\nparams: {n: 0x" + b"f" * 5000 + b"}\nexecutors: []\n",
        "params.n: an integer of more than 1000 digits; write it as a string",
    ),
    "yaml_binary_tag": (
        "r.yaml",
        b"routine_name: r\nparams: {b: !!binary aGVsbG8=}\nexecutors: []\n",
        "YAML tag 'tag:yaml.org,2002:binary' at line 2 is not allowed",
    ),
    "yaml_set_tag": (
        "r.yaml",
        b"routine_name: r\nparams: !!set {a, b}\nexecutors: []\n",
        "is not allowed",
    ),
    "yaml_recursive_alias": (
        "r.yaml",
        b"routine_name: r\nparams: &p {self: *p}\nexecutors: []\n",
        "an alias inside its own anchor",
    ),
    "two_mebibytes": (
        "r.json",
        b'{"routine_name": "r", "description": "' + b"x" * (2 << 20) + b'"}',
        "larger than 1024 KiB",
    ),
}


@pytest.mark.parametrize("name, text, expected", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS.keys())
def test_hostile_documents_are_one_line_and_exit_2(
    folder: Path, capsys: pytest.CaptureFixture[str], name: str, text: bytes, expected: str
) -> None:
    path = folder / name
    path.write_bytes(text)
    assert expected in refused(path, capsys)


NOT_NUMBERS = {
    "json_nan_timeout": ("r.json", '"timeout": NaN', "tasks[0].timeout: nan is not a number"),
    "json_nan_retry_delay": (
        "r.json",
        '"retry_delay": NaN',
        "tasks[0].retry_delay: nan is not a number",
    ),
    "json_infinity_timeout": (
        "r.json",
        '"timeout": Infinity',
        "tasks[0].timeout: inf is not a number",
    ),
    "yaml_nan_timeout": ("r.yaml", "timeout: .nan", "tasks[0].timeout: nan is not a number"),
    "yaml_inf_retry_delay": (
        "r.yaml",
        "retry_delay: .inf",
        "tasks[0].retry_delay: inf is not a number",
    ),
}


@pytest.mark.parametrize("name, field, expected", NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
def test_nan_and_infinity_are_not_timeouts_or_delays(
    folder: Path, capsys: pytest.CaptureFixture[str], name: str, field: str, expected: str
) -> None:
    path = folder / name
    if name.endswith(".json"):
        path.write_text(
            json.dumps(python_routine()).replace('"function": "f"}', '"function": "f"}, ' + field)
        )
    else:
        path.write_text(
            "routine_name: r\nexecutors:\n- {executor: python, params: {path: f.py}, tasks: "
            f"[{{task: call, args: {{function: f}}, {field}}}]}}\n"
        )
    assert expected in refused(path, capsys)


def test_nan_given_through_a_param_is_not_a_number(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A float typed argument of an executor is held to the same rule as the routine's fields."""
    from inline_executors import inline_registry
    from orchestrator.routine.load import load_routine
    from orchestrator.errors import RoutineError

    path = folder / "r.json"
    path.write_text(
        json.dumps(
            {
                "routine_name": "r",
                "params": {"n": 1},
                "executors": [
                    {
                        "executor": "greeter",
                        "params": {"greeting": "hi", "times": "${params.n}"},
                        "tasks": ["say"],
                    }
                ],
            }
        )
    )
    with pytest.raises(RoutineError, match=r"executors\[0\].params.times: nan is not a number"):
        load_routine(path, {"n": "NaN"}, inline_registry(), env={})


UNSAFE_NAMES = {
    "dotdot": "..",
    "dot": ".",
    "hidden": ".state",
    "slash": "a/b",
    "backslash": "a\\b",
    "too_long": "r" * 129,
    "nul": "a\x00b",
}


@pytest.mark.parametrize("name", UNSAFE_NAMES.values(), ids=UNSAFE_NAMES.keys())
def test_routine_name_must_be_one_safe_folder_name(
    folder: Path, orchestrator_home: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    doc = python_routine()
    doc["routine_name"] = name
    path = folder / "r.json"
    path.write_text(json.dumps(doc))
    assert "routine_name: " in refused(path, capsys, "run")
    assert not orchestrator_home.exists(), "nothing is created for a refused routine"


def test_step_names_must_be_safe_folder_names_too(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("..", "s" * 129):
        doc = python_routine()
        doc["executors"][0]["name"] = name
        path = folder / "r.json"
        path.write_text(json.dumps(doc))
        assert "executors[0].name: " in refused(path, capsys)


def test_a_long_valid_name_is_still_accepted(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = python_routine()
    doc["routine_name"] = "r" * 128
    path = folder / "r.json"
    path.write_text(json.dumps(doc))
    assert run_cli("validate", str(path), capsys=capsys)[0] == 0


def test_state_of_a_dotdot_name_stays_inside_the_state_folder(tmp_path: Path) -> None:
    """Defence in depth, for names that do not come from a validated routine (``@track``)."""
    from orchestrator import Context

    for name in ("..", ".", "../..", "x" * 400):
        context = Context(
            run_id="r", run_date="2026-11-30", routine_name=name, step="..", task="t", home=tmp_path
        )
        folder = context.state_dir("..")
        assert folder.resolve().is_relative_to((tmp_path / "state").resolve()), folder
        assert folder.resolve() != (tmp_path / "state").resolve()
        assert all(len(part) <= 128 for part in folder.relative_to(tmp_path).parts)


@pytest.mark.parametrize(
    "dump",
    ["dump/" + "d" * 256 + "/x", "dump/" + "/".join(["d" * 200] * 25)],
    ids=["long_name", "long_path"],
)
def test_over_long_dump_path_fails_at_validation_before_any_folder(
    folder: Path, orchestrator_home: Path, capsys: pytest.CaptureFixture[str], dump: str
) -> None:
    (folder / "landing").mkdir()
    (folder / "landing" / "a.csv").write_text("a\n")
    path = folder / "r.json"
    path.write_text(
        json.dumps(
            {
                "routine_name": "long",
                "executors": [
                    {
                        "executor": "staging",
                        "params": {
                            "parent_directory": "landing",
                            "dump_directory": dump,
                            "archive_or_delete": "delete",
                        },
                        "tasks": ["transfer", "post_staging"],
                    }
                ],
            }
        )
    )
    line = refused(path, capsys, "run")
    assert "executors[0].params.dump_directory: the " in line and "bytes" in line
    assert not (folder / "dump").exists() and not orchestrator_home.exists()
    assert (folder / "landing" / "a.csv").exists()


def test_over_long_s3_prefix_fails_at_validation(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "r.json"
    path.write_text(
        json.dumps(
            {
                "routine_name": "long",
                "executors": [
                    {
                        "executor": "staging",
                        "params": {
                            "parent_directory": "s3://landing/in/",
                            "dump_directory": "s3://dump/" + "k" * 1100 + "/",
                        },
                        "tasks": ["transfer"],
                    }
                ],
            }
        )
    )
    assert "dump_directory: the S3 key is longer than 1024 bytes" in refused(path, capsys)


LAMBDA_CHILD = """
import sys
from orchestrator.aws_lambda.runner import InvalidEvent, handler
try:
    handler({"routine": sys.argv[1]}, None)
except InvalidEvent as refused:
    print(refused)
"""


def test_alias_bomb_from_s3_through_the_lambda_handler(
    lambda_aws: Any, lambda_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler in a child process limited to 1.5 GB, fetching the bomb from the moto server."""
    from lambda_fixtures import FakeContext
    from orchestrator.aws_lambda.runner import InvalidEvent, LambdaRunner

    s3 = lambda_aws.client("s3")
    s3.create_bucket(Bucket="routines")
    s3.put_object(Bucket="routines", Key="bomb.yaml", Body=S3_ALIAS_BOMB.encode())
    s3.put_object(Bucket="routines", Key="big.json", Body=b" " * (2 << 20))
    s3.put_object(
        Bucket="routines", Key="latin1.json", Body='{"routine_name": "café"}'.encode("latin-1")
    )
    monkeypatch.delenv("ORCHESTRATOR_STORE", raising=False)
    child = subprocess.run(
        [sys.executable, "-c", LAMBDA_CHILD, "s3://routines/bomb.yaml"],
        capture_output=True,
        text=True,
        preexec_fn=limit_memory,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip() == f"s3://routines/bomb.yaml: {BOMB_MESSAGE}"
    runner = LambdaRunner(lambda_registry)
    with pytest.raises(
        InvalidEvent, match=r"^routine s3://routines/big.json: larger than 1024 KiB"
    ):
        runner.handle({"routine": "s3://routines/big.json"}, FakeContext(60))
    with pytest.raises(InvalidEvent, match=r"^routine s3://routines/latin1.json: not UTF-8 text"):
        runner.handle({"routine": "s3://routines/latin1.json"}, FakeContext(60))
    deep = "{" + '"a": {' * 3000 + "}" * 3001
    with pytest.raises(InvalidEvent, match=r"^inline routine: nested deeper than 64 levels"):
        runner.handle({"routine": deep}, FakeContext(60))


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"depends_on": 86401}, "executors[1].depends_on: expected a list, got int 86401"),
        ({"depends_on": [1, "step0"]}, "executors[1].depends_on[0]: expected a string, got int 1"),
        ({"name": {"a": 1}}, "executors[1].name: expected a string, got dict {'a': 1}"),
        ({"name": float("inf")}, "executors[1].name: expected a string, got float inf"),
    ],
    ids=["depends_on_int", "depends_on_item_int", "name_dict", "name_infinity"],
)
def test_names_and_dependencies_of_the_wrong_type_are_reported_not_crashed_on(
    folder: Path, capsys: pytest.CaptureFixture[str], entry: dict[str, Any], expected: str
) -> None:
    """Found by the fuzz (tests/test_fuzz_routines.py): the dependency check met the raw values."""
    doc = python_routine()
    doc["executors"][0]["name"] = "step0"
    doc["executors"].append({**python_routine()["executors"][0], "name": "step1", **entry})
    path = folder / "r.json"
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("validate", str(path), capsys=capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{path}: {expected}" in err.splitlines()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("9" * 5000, "--param n: the routine's default is not a string, so give a JSON value"),
        ("[" * 3000, "--param n: the routine's default is not a string, so give a JSON value"),
        ("[" * 65 + "]" * 65, ": params.n" + "[0]" * 64 + ": the value given: nested deeper"),
    ],
    ids=["5000_digits", "3000_deep", "65_deep"],
)
def test_hostile_param_values_are_one_line_and_exit_2(
    folder: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    doc = {**python_routine(), "params": {"n": 1}}
    path = folder / "r.json"
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("validate", str(path), "--param", f"n={value}", capsys=capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected in err and len(err) < 400
