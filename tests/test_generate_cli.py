"""The generate command's contract: help with an example, --dry-run, no overwrite without --force,
--verbose steps, targets from the catalog; and every command's help ends with an example."""

from __future__ import annotations

import argparse
import json

import pytest

from generate_helpers import DEMO, demo_copy, orchestrate
from orchestrator.cli.parser import build_parser


def test_help_generate_explains_flags_with_examples(cli):
    result = cli("help", "generate")
    assert result.returncode == 0
    for text in (
        "--target",
        "--output",
        "--force",
        "--dry-run",
        "--schedule",
        "--s3-trigger",
        "--image",
        "orchestrate generate routines/daily.yaml",
        "./daily.pyz --param run_date=",
        "-v means --verbose",
    ):
        assert text in result.stdout, text


def test_every_command_has_an_example_in_its_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        if name != "help":
            assert "example" in (sub.epilog or ""), f"`orchestrate help {name}` has no example"


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "daily.pyz"
    result = orchestrate(
        "generate",
        str(DEMO / "routine.yaml"),
        "-o",
        str(out),
        "--dry-run",
        "--json",
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (
        plan["target"] == "script"
        and plan["output"] == str(out)
        and plan["routine"].startswith("ship_demo@file-")
    )
    assert any("bundle the orchestrator" in step for step in plan["steps"])
    assert not out.exists()


def test_the_script_target_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "ship.pyz"
    out.write_text("precious")
    result = orchestrate(
        "generate", str(DEMO / "routine.yaml"), "-o", str(out), home=tmp_path / "home"
    )
    assert (
        result.returncode == 2
        and result.stderr.strip() == f"{out} exists; pass --force to replace it"
    )
    assert out.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ship.pyz")] == []
    forced = orchestrate(
        "generate",
        str(DEMO / "routine.yaml"),
        "-o",
        str(out),
        "--force",
        "-v",
        home=tmp_path / "home",
    )
    assert forced.returncode == 0, forced.stderr
    assert (
        out.read_bytes().startswith(b"#!")
        and "payload:" in forced.stderr
        and "bundling the routine" in forced.stderr
    )


def test_a_published_version_generates_with_its_catalog_version(tmp_path):
    routine = demo_copy(tmp_path / "demo")
    env = {"ORCHESTRATOR_CATALOG": str(tmp_path / "catalog")}
    home = tmp_path / "home"
    assert orchestrate("publish", str(routine), home=home, env=env).stdout.strip() == "ship_demo@1"
    result = orchestrate(
        "generate",
        "ship_demo@latest",
        "-t",
        "docker",
        "--dry-run",
        "-o",
        str(tmp_path / "ctx"),
        home=home,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "would generate docker for ship_demo@1" in result.stdout
    included = orchestrate("generate", "ship_demo@1", "--include", "x", home=home, env=env)
    assert included.returncode == 2 and "--include applies to routine files" in included.stderr


@pytest.mark.parametrize("target", ["nope"])
def test_an_unknown_target_lists_the_known_ones(tmp_path, target):
    result = orchestrate(
        "generate", str(DEMO / "routine.yaml"), "-t", target, home=tmp_path / "home"
    )
    assert result.returncode == 2 and "known: script, docker, lambda" in result.stderr


def test_lambda_dry_run_says_what_iam_cannot_derive(tmp_path):
    result = orchestrate("generate", str(DEMO / "routine.yaml"), "-t", "lambda", "--dry-run", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: step land: what its code calls cannot be derived; add it with --policy-arn" in result.stdout
    assert "no --store: run records stay in the sandbox's /tmp" in result.stdout
