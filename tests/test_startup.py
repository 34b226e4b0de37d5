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


def test_a_run_whose_task_logs_nothing_imports_no_logging(plugin_site, write_routine,
                                                          monkeypatch):
    from importlib.metadata import entry_points

    monkeypatch.setenv("PYTHONPATH", str(plugin_site))
    # The built-in plugins log from their modules; until the plugin index is warm (a run or two
    # after an install) a run imports them all.
    others = {ep.name for ep in entry_points(group="orchestrator")} - {"testkit"}
    monkeypatch.setenv("ORCHESTRATOR_BLOCK_PLUGINS", ",".join(sorted(others)))
    quiet = write_routine({"routine_name": "quiet", "executors": [
        {"name": "hello", "executor": "echo", "tasks": ["noop"]}]})
    imported_by("run", str(quiet))  # the first run after an install reads the plugins' metadata
    modules = imported_by("run", str(quiet))
    assert "orchestrator.runs.recorder" in modules, "the run did not get as far as recording"
    assert "logging" not in modules and "traceback" not in modules


LATE_LOGGING = '''
def work():
    import logging  # first imported here, halfway through the run

    logging.getLogger("some.library").warning("library warning")
    logging.getLogger("orchestrator.mine").info("my info line")
'''


def test_logging_first_imported_by_a_task_reaches_the_run_log_and_the_terminal(
        cli, write_routine, tmp_path):
    code = tmp_path / "late.py"
    code.write_text(LATE_LOGGING)
    path = write_routine({"routine_name": "late", "executors": [
        {"name": "work", "executor": "python", "params": {"path": str(code), "in_process": True},
         "tasks": [{"task": "call", "args": {"function": "work"}}]}]})
    ran = cli("run", str(path), "--json")
    assert ran.returncode == 0, ran.stderr
    # The terminal shows the orchestrator's loggers (cli.log_setup), not a library's.
    assert "INFO orchestrator.mine: my info line" in ran.stderr
    assert "library warning" not in ran.stderr
    logs = cli("logs", json.loads(ran.stdout)["run_id"]).stdout
    assert "WARNING work.call: library warning" in " ".join(logs.split()), logs
    assert "INFO work.call: my info line" in " ".join(logs.split()), logs


def test_argparse_skips_gettext_only_where_no_catalog_could_translate(tmp_path, monkeypatch):
    import argparse
    import gettext

    from orchestrator.cli.parser import untranslated_argparse

    monkeypatch.setattr(argparse, "_", gettext.gettext)
    monkeypatch.setattr(argparse, "ngettext", gettext.ngettext)
    monkeypatch.setattr(gettext, "bindtextdomain", lambda domain, folder=None: str(tmp_path))
    catalog = tmp_path / "xx_YY" / "LC_MESSAGES" / f"{gettext.textdomain()}.mo"
    catalog.parent.mkdir(parents=True)
    catalog.write_bytes(b"")
    untranslated_argparse.__wrapped__()
    assert argparse._ is gettext.gettext, "a catalog exists: argparse must keep asking gettext"
    catalog.unlink()
    untranslated_argparse.__wrapped__()
    assert argparse._ is not gettext.gettext
    assert argparse._("usage: ") == gettext.gettext("usage: ") == "usage: "
    for count in (0, 1, 2):
        assert argparse.ngettext("one", "many", count) == gettext.ngettext("one", "many", count)
