"""What a container task asks for, checked before anything runs and turned into Docker's terms.

The JSON Schemas here are attached to the task arguments (so unknown keys and wrong types are
reported with their JSON path by the core); the checks below add what a schema cannot say
(a memory size that does not parse, a mount source that does not exist). Nothing here imports
the Docker SDK: validation must stay light.
"""
from __future__ import annotations

import os
import re
import shlex
from typing import Any, Iterator

MOUNT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # "location": the core resolves a relative source against the routine's folder, so the
        # routine runs the same from any working directory.
        "source": {"type": "string", "format": "location",
                   "description": "Host folder or file; relative to the routine's folder"},
        "target": {"type": "string", "description": "Absolute path inside the container"},
        "read_only": {"type": "boolean", "default": False},
    },
    "required": ["source", "target"],
    "additionalProperties": False,
}

RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cpus": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "CPUs (1.5 = one and a half)",
        },
        "memory": {
            "type": ["string", "integer"],
            "description": "Memory limit: bytes or 512m, 2g, 1.5g",
        },
        "gpus": {
            "anyOf": [{"type": "integer", "minimum": 1}, {"enum": ["all"]}],
            "description": 'GPUs to request: a count or "all"',
        },
    },
    "additionalProperties": False,
}

# Binary units, as `docker run --memory 2g` reads them: 2g is 2 GiB.
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "g": 1024 ** 3, "gb": 1024 ** 3, "t": 1024 ** 4, "tb": 1024 ** 4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
MIN_MEMORY = 6 * 1024 ** 2
"""Docker refuses limits below 6 MiB; saying so at validation beats a failure at start."""


def memory_bytes(value: Any) -> int:
    """``"2g"`` → 2147483648; integers are bytes. Raises ``ValueError`` with a fix."""
    # bool is an int: `memory: true` would be read as 1 byte and refused as too small.
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _UNITS:
            raise ValueError(
                f"{value!r} is not a size: write bytes or a number with b, k, m, g or t (512m, 2g)"
            )
        size = int(float(match.group(1)) * _UNITS[unit])
    if size < MIN_MEMORY:
        raise ValueError(f"{value!r} is below Docker's minimum of 6m")
    return size


def run_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Problems of a ``run`` task's args the schema cannot see: (arg path, message)."""
    resources = args.get("resources") or {}
    if isinstance(resources, dict) and "memory" in resources:
        try:
            memory_bytes(resources["memory"])
        except ValueError as exc:
            yield "resources.memory", str(exc)
    yield from mount_problems(args.get("mounts") or [])
    for key in ("command", "entrypoint"):
        value = args.get(key)
        if isinstance(value, list) and not value:
            yield key, "an empty list: leave it out to use the image's default"
    working_dir = args.get("working_dir")
    if isinstance(working_dir, str) and not working_dir.startswith("/"):
        yield "working_dir", f"{working_dir!r} must be an absolute path inside the container"


def mount_problems(mounts: list[Any]) -> Iterator[tuple[str, str]]:
    targets: dict[str, int] = {}
    for i, mount in enumerate(mounts):
        if not isinstance(mount, dict):
            continue
        source, target = mount.get("source"), mount.get("target")
        # A URL (s3://...) passes the location format, but the daemon can only bind host paths.
        if isinstance(source, str) and "://" in source:
            yield f"mounts[{i}].source", f"{source!r}: only local folders and files can be mounted"
        # Checked at validation, so no step runs before a missing source stops the routine: the
        # daemon would refuse it only at create, after the steps before this one have run.
        elif isinstance(source, str) and not os.path.exists(source):
            yield f"mounts[{i}].source", f"{source} does not exist; create it or fix the path"
        if isinstance(target, str):
            if not target.startswith("/"):
                yield f"mounts[{i}].target", (
                    f"{target!r} must be an absolute path inside the container"
                )
            elif target in targets:
                yield f"mounts[{i}].target", (
                    f"{target} is already mounted by mounts[{targets[target]}]"
                )
            # Docker refuses two mounts on one target at create; the message names the first one.
            targets.setdefault(target, i)


def build_problems(args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    context = args.get("context")
    if not isinstance(context, str):
        return
    if "://" in context:
        yield "context", f"{context!r}: the build context must be a local folder"
    elif not os.path.isdir(context):
        yield "context", f"{context} is not a folder; create it or fix the path"
    else:
        dockerfile = os.path.join(context, str(args.get("dockerfile") or "Dockerfile"))
        if not os.path.isfile(dockerfile):
            yield "dockerfile", f"{dockerfile} does not exist in the build context"


def host_config(
    resources: dict[str, Any] | None, mounts: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Resources and bind mounts, by the SDK's keyword names with the Engine API's values (the
    record's digest is made from them, so they stay as earlier versions wrote them)."""
    kwargs: dict[str, Any] = {}
    resources = resources or {}
    if "cpus" in resources:
        # NanoCpus is in billionths of a CPU: the same limit `docker run --cpus 1.5` sets.
        kwargs["nano_cpus"] = int(float(resources["cpus"]) * 1e9)
    if "memory" in resources:
        # no swap beyond the limit: the limit is what the program really gets, and OOM is reported
        kwargs["mem_limit"] = kwargs["memswap_limit"] = memory_bytes(resources["memory"])
    if "gpus" in resources:
        # The device request `docker run --gpus` sends: Count -1 is every GPU, the empty Driver
        # lets the daemon pick the one that serves the "gpu" capability.
        count = -1 if resources["gpus"] == "all" else int(resources["gpus"])
        kwargs["device_requests"] = [{"Driver": "", "Count": count, "DeviceIDs": [],
                                      "Capabilities": [["gpu"]], "Options": {}}]
    if mounts:
        # Mounts, not Binds: a missing source is an error, not an empty folder created as root.
        kwargs["mounts"] = [{"Target": m["target"], "Source": m["source"], "Type": "bind",
                             "ReadOnly": bool(m.get("read_only", False))} for m in mounts]
    return kwargs


# host_config's keys (the SDK's keyword names, which the record's digest is made of) to the Engine
# API's HostConfig fields the create body needs.
HOST_FIELDS = {"network_mode": "NetworkMode", "init": "Init", "nano_cpus": "NanoCpus",
               "mem_limit": "Memory", "memswap_limit": "MemorySwap",
               "device_requests": "DeviceRequests", "mounts": "Mounts"}


def create_body(image: str, config: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """The Engine API's ``/containers/create`` body from the task's settings."""
    body: dict[str, Any] = {"Image": image, "Labels": config.get("labels") or {},
                            "HostConfig": {HOST_FIELDS[key]: value for key, value in host.items()}}
    for key, field in (("command", "Cmd"), ("entrypoint", "Entrypoint")):
        value = config.get(key)
        if value is not None:
            # A string is split as a shell would split it, but no shell runs it: pipes, globs and
            # $VARS reach the program as plain words. Use ["sh", "-c", "..."] for a shell.
            body[field] = shlex.split(value) if isinstance(value, str) else [str(p) for p in value]
    if config.get("environment"):
        body["Env"] = [f"{name}={value}" for name, value in config["environment"].items()]
    for key, field in (("working_dir", "WorkingDir"), ("user", "User")):
        if config.get(key):
            body[field] = config[key]
    return body
