"""What start-up avoids importing must still behave as the module it replaces."""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import uuid

import pytest

from orchestrator.cli.parser import build_parser, terminal_columns
from orchestrator.ids import new_id, sha256_hex
from orchestrator.runs import RunRecord
from orchestrator.runs.store import hostname


def test_run_ids_are_uuid4_text():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in list(ids)[:200]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


@pytest.mark.parametrize("data", [b"", b"abc", "routine \u00e9".encode(), bytes(range(256)) * 9])
def test_digests_without_openssl_are_sha256(data):
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_the_host_name_is_the_one_socket_gives():
    assert hostname() == socket.gethostname() == RunRecord(run_id="r", routine="x").host


def test_terminal_width_follows_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "57")
    assert terminal_columns() == 57
    assert max(map(len, build_parser().format_help().splitlines())) <= 55


def test_a_parser_for_one_command_parses_it_as_the_full_parser_does():
    argv = ["run", "r.json", "-p", "a=1", "--max-parallel", "2", "--json"]
    assert vars(build_parser("run").parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["generate", "r.json", "--target", "lambda", "--schedule", "rate(1 hour)", "--image", "x"],
    ["config", "set", "catalog", "s3://b/c/", "--json"],
    ["publish", "r.json", "--version", "2", "--include", "data/"],
    ["routines", "daily"],
    ["metadata", "./landing", "--mode", "exact", "--include", "a.*"],
    ["resume", "3f2c", "--force", "-p", "a=1"],
])
def test_extension_commands_parse_alone_as_in_the_full_parser(argv):
    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))


def test_a_command_alone_keeps_its_example(capsys):
    with pytest.raises(SystemExit):
        build_parser("run").parse_args(["run", "--help"])
    assert "orchestrate run daily@3" in capsys.readouterr().out


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh process has imported once the CLI is done with ``argv``."""
    code = ("import json, sys\nfrom orchestrator.cli.app import main\n"
            f"try:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    return set(json.loads(proc.stderr.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["validate", "--help"], ["config", "show"]])
def test_no_command_pays_for_the_terminal_width_through_shutil(argv, orchestrator_home):
    assert "shutil" not in imported_by(*argv)


def test_an_example_keeps_its_lines(capsys):
    with pytest.raises(SystemExit):
        build_parser("generate").parse_args(["generate", "--help"])
    assert "\n  ./daily.pyz --param run_date=2026-11-21" in capsys.readouterr().out
