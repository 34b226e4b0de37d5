"""Property-based fuzz of routine files through the real CLI (issue 7): whatever a routine file
holds, ``orchestrate validate`` and ``orchestrate run`` exit 0, 1 or 2, never print a traceback,
and exit 2 only before any side effect (the landing folder and everything else untouched).

The CLI runs in-process (``main()``) for speed; each example gets a fresh folder with a landing
folder of real files, a Python file of harmless functions, and its own orchestrator home.
``ORCHESTRATOR_FUZZ_EXAMPLES=5000`` hunts longer than the suite's 100 examples.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.cli.app import main

FUNCTIONS = """
from orchestrator import TaskMetrics

def noop(**kwargs):
    return None

def metrics(**kwargs):
    return TaskMetrics(total_rows=len(kwargs), execution_metadata={"keys": sorted(kwargs)})

def boom(**kwargs):
    raise ValueError("boom: " + repr(kwargs)[:200])
"""
LANDING = {"a.csv": b"id,name\n1,x\n", "sub/b.csv": b"id\n2\n", "c.txt": b"\xff\xfe not text"}

# ------------------------------------------------------------------ values a routine might hold

TRICKY_TEXT = st.sampled_from(
    [
        "",
        ".",
        "..",
        "../..",
        "/",
        "a/b",
        "a\\b",
        "\x00",
        "\ud800",
        "\udcff",
        "é",
        "日本",
        " ",
        "\n",
        "${",
        "$${x}",
        "${params.x}",
        "${env.HOME}",
        "${env.DB_PASSWORD}",
        "${run.id}",
        "${run.date}",
        "${run.nope}",
        "${nope}",
        "${}",
        "${params.${env.X}}",
        "x" * 129,
        "y" * 300,
        "s3://",
        "s3://bucket",
        "s3://bucket/key/",
        "ftp://x",
        "file:///tmp",
        "NaN",
        "Infinity",
        "-1",
        "1e999",
        "true",
        "null",
        "*",
        "**/*.csv",
    ]
)
TEXT = st.one_of(TRICKY_TEXT, st.text(max_size=30))
NUMBER = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([0, 0.001, 0.5, 1, 100, 101, 10**20, 604800, 604801, 86400, 86401, -0.0]),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def often(
    strategy: st.SearchStrategy[Any], rarely: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``strategy`` seven times in eight, ``rarely`` otherwise."""
    return st.sampled_from([False] * 7 + [True]).flatmap(lambda odd: rarely if odd else strategy)


CALL = st.fixed_dictionaries(
    {
        "task": st.just("call"),
        "args": st.fixed_dictionaries(
            {"function": st.sampled_from(["noop", "metrics", "boom"])},
            optional={
                "kwargs": st.dictionaries(
                    st.sampled_from(["a", "b"]),
                    st.sampled_from([1, "x", "${params.day}", "${run.id}", None]),
                    max_size=2,
                )
            },
        ),
    },
    optional={
        "retries": st.integers(0, 2),
        "retry_delay": st.sampled_from([0, 0.001]),
        "timeout": st.sampled_from([30, 600.5]),
    },
)
STAGING_PARAMS = st.fixed_dictionaries(
    {
        "parent_directory": st.sampled_from(["landing", "landing/sub"]),
        "dump_directory": st.sampled_from(["dump", "dump/${run.date}", "out/${params.day}"]),
    },
    optional={
        "archive_or_delete": st.sampled_from(["archive", "delete"]),
        "pattern": st.sampled_from(["*", "*.csv"]),
        "archive_directory": st.sampled_from(["archive", "kept"]),
    },
)
STAGING_TASKS = st.lists(
    st.sampled_from(
        ["transfer", "post_staging", {"task": "transfer", "retries": 1, "retry_delay": 0}]
    ),
    min_size=1,
    max_size=2,
)


@st.composite
def valid_routine(draw: st.DrawFn) -> dict[str, Any]:
    """A routine that validates: the base that mutations then break in a few places."""
    entries = []
    for i in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            entry = {
                "name": f"step{i}",
                "executor": "staging",
                "params": draw(STAGING_PARAMS),
                "tasks": draw(STAGING_TASKS),
            }
        else:
            entry = {
                "name": f"step{i}",
                "executor": draw(st.sampled_from(["python", "PythonExecutor"])),
                "params": {"path": "f.py"},
                "tasks": draw(st.lists(CALL, min_size=1, max_size=2)),
            }
        if i and draw(st.booleans()):
            entry["depends_on"] = [f"step{draw(st.integers(0, i - 1))}"]
        entries.append(entry)
    return {
        "routine_name": draw(st.sampled_from(["fuzz", "fuzz.daily", "fuzz-2"])),
        "params": {"day": "2026-11-30", "db_password": "${env.DB_PASSWORD}"},
        "executors": entries,
    }


def places(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document (the root excluded) that a mutation may hit."""
    found = [at] if at else []
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        found.extend(places(child, (*at, key)))
    return found


HOSTILE = st.one_of(TRICKY_TEXT, NUMBER, JSON_VALUE)
STRAY_KEY = st.one_of(
    TRICKY_TEXT, st.sampled_from(["name", "args", "retries", "timeout", "active", "depends_on"])
)


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any]) -> Any:
    """``doc`` with a few places replaced by a hostile value, removed, or given a stray key;
    sometimes turned into the seed's dict form."""
    doc = copy.deepcopy(doc)  # strategies share the values they sample from
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        *parent_path, key = draw(st.sampled_from(places(doc)))
        parent: Any = doc
        for part in parent_path:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
        if action == "replace":
            parent[key] = draw(HOSTILE)
        elif action == "remove":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(STRAY_KEY)] = draw(HOSTILE)
    executors = doc.get("executors")
    if isinstance(executors, list) and draw(st.sampled_from([False] * 4 + [True])):
        doc["executors"] = {
            str(e.pop("executor", i)) if isinstance(e, dict) else str(i): e
            for i, e in enumerate(executors)
        }
        for entry in doc["executors"].values():
            if isinstance(entry, dict):
                entry.pop("name", None)
    return doc


def as_text(doc: Any, yaml_form: bool) -> str:
    if yaml_form:
        import yaml

        return yaml.safe_dump(doc, allow_unicode=True)
    return json.dumps(doc, ensure_ascii=False)


YAML_TRICKS = st.sampled_from(
    [
        "routine_name: r\nexecutors: &e [{executor: python, params: {path: f.py}, tasks: *e}]\n",
        "routine_name: r\nparams: &p {a: [*p]}\nexecutors: []\n",
        "routine_name: !!binary aGk=\nexecutors: []\n",
        "routine_name: r\nparams: {d: 2026-11-30, t: 12:30:00, o: 0o17, b: 0b101, s: !!set {a}}\n"
        "executors: []\n",
        "--- \nroutine_name: a\n---\nroutine_name: b\n",
        "routine_name: r\nexecutors:\n  - {<<: {executor: python}, tasks: [call]}\n",
        "%YAML 1.1\n---\n!!python/object:os.system ls\n",
        "routine_name: r\nparams: {n: 0x" + "f" * 5000 + "}\nexecutors: []\n",
    ]
)


@st.composite
def routine_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file name and its bytes: a generated routine, any JSON value, a YAML trick or raw noise."""
    kind = draw(st.sampled_from(["routine"] * 12 + ["value", "trick", "text", "bytes"]))
    yaml_form = draw(st.booleans())
    suffix = ".yaml" if yaml_form else ".json"
    if kind == "routine":
        text = as_text(draw(valid_routine().flatmap(mutated)), yaml_form)
        if draw(st.sampled_from([False] * 7 + [True])):  # a small edit anywhere in the text
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.text(max_size=3)) + text[at + draw(st.integers(0, 3)) :]
        data = text.encode("utf-8", "surrogatepass")
    elif kind == "value":
        data = as_text(draw(JSON_VALUE), yaml_form).encode("utf-8", "surrogatepass")
    elif kind == "trick":
        data, suffix = draw(YAML_TRICKS).encode(), ".yaml"
    elif kind == "text":
        data = draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    else:
        data = draw(st.binary(max_size=200))
    return "routine" + suffix, data


# ------------------------------------------------------------------ the property


def snapshot(folder: Path) -> dict[str, tuple[int, float, bytes] | None]:
    """Every path under ``folder`` with its size, mtime and (for files) content."""
    found: dict[str, tuple[int, float, bytes] | None] = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        found[str(path.relative_to(folder))] = (
            (stat.st_size, stat.st_mtime, path.read_bytes()) if path.is_file() else None
        )
    return found


def cli(*argv: str) -> tuple[int, str]:
    """``orchestrate ARGV`` in-process: its exit code and everything it printed."""
    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("orchestrator")
    handlers = list(logger.handlers)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        for handler in logger.handlers[len(handlers) :]:  # the run's console handler: one per run
            logger.removeHandler(handler)
    return code, out.getvalue() + err.getvalue()


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// location a fuzzed routine names fails fast on a closed loopback port: no network."""
    for name, value in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "fuzz",
        "AWS_SECRET_ACCESS_KEY": "fuzz",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "DB_PASSWORD": "fuzz-secret",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ORCHESTRATOR_STORE", raising=False)


EXAMPLES = int(os.environ.get("ORCHESTRATOR_FUZZ_EXAMPLES", "100"))  # more for a longer hunt


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(routine_file())
@example(file=("routine.json", '{"\u00b2": null}'.encode()))  # a key isdigit() calls a digit
def test_any_routine_file_exits_0_1_or_2_without_traceback_or_side_effect_on_2(
    offline_aws: None, monkeypatch: pytest.MonkeyPatch, file: tuple[str, bytes]
) -> None:
    name, data = file
    with tempfile.TemporaryDirectory(prefix="fuzz-") as scratch:
        folder = Path(scratch)
        for relative, content in LANDING.items():
            (folder / "landing" / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / "landing" / relative).write_bytes(content)
        (folder / "f.py").write_text(FUNCTIONS)
        path = folder / name
        path.write_bytes(data)
        monkeypatch.setenv("ORCHESTRATOR_HOME", str(folder / "home"))
        before = snapshot(folder)
        for command in ("validate", "run"):
            code, printed = cli(command, str(path), "--quiet")
            assert code in (0, 1, 2), (command, code, printed)
            assert "Traceback" not in printed and "Logging error" not in printed, (command, printed)
            if code == 2:
                assert snapshot(folder) == before, (
                    f"{command} exited 2 after a side effect:\n{printed}"
                )
            if command == "validate" and code == 2:
                assert cli("run", str(path), "--quiet")[0] == 2, "run refuses what validate refuses"
                break
