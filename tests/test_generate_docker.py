"""``generate --target docker``: the build context and run.sh.

``test_real_docker`` builds and runs the image on the real daemon (``.ci/docker-up``), on a base
image made from this machine's Python since no registry is reachable
(``ORCHESTRATOR_TEST_DOCKER_BASE`` names another). The rest needs no daemon: the context is checked
by doing what the Dockerfile says with the same interpreter (its ENV, RUN and ENTRYPOINT), and
run.sh runs against a ``docker`` command on PATH that records its arguments and answers like the
real one (image present or not, the container's exit code), to check what the daemon test cannot
see cheaply: build once, mounts, env, options, every exit code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from generate_helpers import (
    bare_python,
    clean_env,
    demo_copy,
    docker_answers,
    local_python_image,
    orchestrate,
)

DOCKER_STUB = """#!/bin/sh
printf '%s\\n' "$*" >> "$DOCKER_LOG"
case "$1" in
  image) [ "${STUB_IMAGE_PRESENT:-0}" = 1 ] && exit 0 || exit 1 ;;
  build) exit 0 ;;
  run) exit "${STUB_RUN_EXIT:-0}" ;;
esac
exit 99
"""


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("docker")
    routine = demo_copy(folder / "demo")
    text = routine.read_text().replace(
        "greeting: hello}", "greeting: hello, region: '${env.SHIP_REGION}'}"
    )
    routine.write_text(text)
    home = folder / "home"
    home.mkdir()
    (home / "config.json").write_text(
        json.dumps(
            {
                "docker": {
                    "base_image": "python:3.11-slim@sha256:" + "ab" * 32,
                    "registry": "registry.local:5000",
                    "run_options": ["--network", "host", "--label", "team=data eng"],
                }
            }
        )
    )
    out = folder / "ctx"
    result = orchestrate(
        "generate",
        str(routine),
        "--target",
        "docker",
        "-o",
        str(out),
        "--param",
        f"out={folder / 'data'}",
        home=home,
        env={"SHIP_REGION": "eu-west-1"},
    )
    assert result.returncode == 0, result.stderr
    return {"folder": folder, "out": out, "routine": routine, "home": home}


def test_the_context_is_pinned(context):
    out = context["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "app.pyz",
        "run.sh",
    ]
    dockerfile = (out / "Dockerfile").read_text()
    [base] = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert base == "FROM python:3.11-slim@sha256:" + "ab" * 32
    assert "COPY app.pyz /opt/orchestrator/app.pyz" in dockerfile
    assert 'ENTRYPOINT ["python3.11", "/opt/orchestrator/app.pyz"]' in dockerfile
    import zipfile

    with zipfile.ZipFile(out / "app.pyz") as outer:
        payload = outer.read("payload.zip")
    import hashlib

    assert f'io.orchestrator.payload-sha256="{hashlib.sha256(payload).hexdigest()}"' in dockerfile
    assert os.access(out / "run.sh", os.X_OK)


def dockerfile_steps(dockerfile: str) -> tuple[dict[str, str], list[str], list[str]]:
    text = dockerfile.replace("\\\n", " ")
    env_line = next(line for line in text.splitlines() if line.startswith("ENV "))
    env = dict(item.split("=", 1) for item in shlex.split(env_line[4:]))
    runs = [line[4:] for line in text.splitlines() if line.startswith("RUN ")]
    entrypoint = json.loads(
        next(line for line in text.splitlines() if line.startswith("ENTRYPOINT "))[11:]
    )
    return env, runs, entrypoint


def test_doing_what_the_dockerfile_says_runs_the_routine(context, tmp_path):
    """The image's root is a folder here: COPY, RUN (unpack at build time), then the ENTRYPOINT."""
    root = tmp_path / "image"
    env, runs, entrypoint = dockerfile_steps((context["out"] / "Dockerfile").read_text())
    relocate = lambda text: text.replace(
        "/opt/orchestrator", str(root / "opt/orchestrator")
    ).replace(  # noqa: E731
        "/orchestrator-home", str(root / "orchestrator-home")
    )
    (root / "opt/orchestrator").mkdir(parents=True)
    shutil.copyfile(context["out"] / "app.pyz", root / "opt/orchestrator/app.pyz")
    python_dir = str(Path(bare_python()).parent)
    container_env = clean_env(root / "root", **{k: relocate(v) for k, v in env.items()})
    container_env["PATH"] = f"{python_dir}:/usr/bin:/bin"
    for command in runs:
        built = subprocess.run(
            relocate(command), shell=True, env=container_env, capture_output=True, text=True
        )
        assert built.returncode == 0, built.stderr
    unpacked = list((root / "opt/orchestrator/cache").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / "site" / "orchestrator" / "cli" / "app.py").is_file()
    out = tmp_path / "data"
    ran = subprocess.run(
        [*map(relocate, entrypoint), "--json", "--param", f"out={out}", "--param", "greeting=hej"],
        env={**container_env, "SHIP_REGION": "eu-north-1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "succeeded"
    assert (out / "dump" / "greeting.csv").read_text() == "name,n\nhej,1\n"
    assert list((root / "orchestrator-home").glob("runs.sqlite"))


@pytest.fixture
def stub_docker(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER_STUB)
    (bin_dir / "docker").chmod(0o755)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "DOCKER_LOG": str(tmp_path / "docker.log"),
        "HOME": str(tmp_path / "user"),
        "SHIP_REGION": "eu-west-1",
        "AWS_PROFILE": "dev",
    }


def run_script(
    context, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    Path(env["HOME"]).mkdir(exist_ok=True)
    result = subprocess.run(
        [str(context["out"] / "run.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    log = Path(env["DOCKER_LOG"])
    return result, log.read_text().splitlines() if log.exists() else []


def test_run_sh_builds_the_image_once_then_runs_with_mounts_env_and_options(context, stub_docker):
    result, calls = run_script(context, stub_docker, "--param", "run_date=2026-11-21", "--dry-run")
    assert result.returncode == 0, result.stderr
    image = re.search(
        r"^IMAGE='?([^'\n]+)'?$", (context["out"] / "run.sh").read_text(), re.M
    ).group(1)
    assert image.startswith("registry.local:5000/orchestrator-ship_demo:file-")
    assert calls[0] == f"image inspect {image}"
    assert calls[1] == f"build --quiet --tag {image} {context['out']}"
    run = calls[2]
    home = Path(stub_docker["HOME"]) / ".orchestrator"
    assert run.startswith(
        f"run --rm --interactive --user {os.getuid()}:{os.getgid()} "
        f"--volume {home}:/orchestrator-home"
    )
    for folder in (context["folder"] / "data" / "landing", context["folder"] / "data" / "dump"):
        assert (
            f"--volume {folder}:{folder}" in run and folder.is_dir()
        )  # created first: docker would as root
    for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "ORCHESTRATOR_STORE", "SHIP_REGION"):
        assert f"--env {name} " in run
    assert "--network host --label team=data eng" in run
    assert run.endswith(f"{image} --param run_date=2026-11-21 --dry-run")
    again, calls = run_script(context, {**stub_docker, "STUB_IMAGE_PRESENT": "1"})
    assert again.returncode == 0 and not any(c.startswith("build") for c in calls[3:])


def test_run_sh_passes_the_exit_code_through(context, stub_docker):
    for code in (1, 2, 130):
        result, _ = run_script(
            context, {**stub_docker, "STUB_IMAGE_PRESENT": "1", "STUB_RUN_EXIT": str(code)}
        )
        assert result.returncode == code


def test_run_sh_stops_when_the_build_fails(context, stub_docker, tmp_path):
    failing = DOCKER_STUB.replace("build) exit 0", "build) exit 17")
    Path(stub_docker["PATH"].split(":")[0], "docker").write_text(failing)
    result, calls = run_script(context, stub_docker)
    assert result.returncode == 17 and not any(c.startswith("run ") for c in calls)


@pytest.mark.skipif(
    not docker_answers(), reason="no Docker daemon answers (.ci/docker-up starts one)"
)
def test_real_docker(tmp_path):
    """Build and run on the real daemon; the base image is made here (no registry is reachable)."""
    base = os.environ.get("ORCHESTRATOR_TEST_DOCKER_BASE") or local_python_image()
    routine = demo_copy(tmp_path / "demo")
    home = tmp_path / "home"
    out = tmp_path / "ctx"
    env = {
        "ORCHESTRATOR_DOCKER_BASE_IMAGE": base,
        "ORCHESTRATOR_DOCKER_RUN_OPTIONS": "--network none",
    }
    generated = orchestrate(
        "generate",
        str(routine),
        "-t",
        "docker",
        "-o",
        str(out),
        "--param",
        f"out={tmp_path / 'data'}",
        home=home,
        env=env,
    )
    assert generated.returncode == 0, generated.stderr
    image = re.search(r"^IMAGE='?([^'\n]+)'?$", (out / "run.sh").read_text(), re.M).group(1)
    user_env = dict(os.environ, ORCHESTRATOR_HOME=str(home), HOME=str(tmp_path / "user"))
    try:
        run = subprocess.run(
            [
                str(out / "run.sh"),
                "--json",
                "--param",
                f"out={tmp_path / 'data'}",
                "--param",
                "greeting=hej",
            ],
            capture_output=True,
            text=True,
            env=user_env,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["status"] == "succeeded"
        assert (tmp_path / "data" / "dump" / "greeting.csv").read_text() == "name,n\nhej,1\n"
        assert list(home.glob("runs.sqlite"))  # the run is recorded in the host's home
        failed = subprocess.run(
            [str(out / "run.sh"), "--param", "nonsense"],
            capture_output=True,
            text=True,
            env=user_env,
            timeout=300,
        )
        assert failed.returncode == 2 and "expected KEY=VALUE" in failed.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True)
