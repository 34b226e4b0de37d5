"""Docs as tests: every built-in executor, task and CLI command is in the README."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from orchestrator.cli.parser import build_parser
from orchestrator.plugin_index import PluginIndex
from orchestrator.registry import Registry

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
# Collected before any fixture isolates the home: read the entry points, write no cache there.
BUILT_IN = [info for info in Registry(index=PluginIndex.load(None)).executors()
            if info.distribution == "lake-orchestrator"]


def test_built_in_executors_are_found_through_entry_points():
    assert {"staging", "python"} <= {info.name for info in BUILT_IN}


@pytest.mark.parametrize("info", BUILT_IN, ids=lambda i: i.name)
def test_each_built_in_executor_and_task_is_documented(info):
    assert f"`{info.name}` (`{info.class_name}`)" in README
    for task in info.tasks:
        assert f"`{task}" in README, f"task {info.name}.{task} is missing from the README"
        assert info.cls.tasks()[task].__doc__, f"task {info.name}.{task} has no docstring"


def test_each_cli_command_is_documented_and_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    for name in commands.choices:
        assert f"orchestrate {name}" in README, f"command {name} is missing from the README"
        assert helps.get(name), f"command {name} has no help text"


def readme_block(language: str, containing: str) -> str:
    import re

    for block in re.findall(rf"```{language}\n(.*?)```", README, flags=re.S):
        if containing in block:
            return block
    raise AssertionError(f"no {language} block with {containing!r} in the README")


def test_readme_routine_examples_validate(tmp_path):
    import shutil

    from orchestrator.routine.load import load_routine

    shutil.copytree(Path(__file__).resolve().parents[1] / "routines/test_routine/py_exec", tmp_path / "py_exec")
    seed = tmp_path / "seed.json"
    seed.write_text(readme_block("json", '"StagingExecutor"'))
    assert [s.executor.name for s in load_routine(seed, {}, env={}).steps] == ["staging"]
    listed = tmp_path / "orders.yaml"
    listed.write_text(readme_block("yaml", "orders_daily"))
    routine = load_routine(listed, {"run_date": "2026-11-22"}, env={})
    assert [s.name for s in routine.steps] == ["stage_orders", "orders_table"]
    assert routine.steps[0].params["dump_directory"] == "s3://raw/orders/2026-11-22/"
