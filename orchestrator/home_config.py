"""The home config, ``$ORCHESTRATOR_HOME/config.json``: catalog, artifacts, Docker.

Each key is declared once (type, environment override, help); the file, the overrides and
``orchestrate config show`` all come from that one table. The file is read only by commands that
need it, so a broken config never stops ``orchestrate run FILE``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import UserError

CONFIG_FILE = "config.json"


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _options(value: Any) -> list[str]:
    """Docker run options: a JSON list of strings, or one string split as a shell would."""
    if isinstance(value, str):
        # An environment variable can only hold a string:
        # ORCHESTRATOR_DOCKER_RUN_OPTIONS='--network host' is split as a shell would split it.
        return shlex.split(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(
            "must be a list of strings (or one string, split like a shell command line)"
        )
    return list(value)


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    env: str
    help: str
    parse: Callable[[Any], Any] = _text


KEYS: tuple[Key, ...] = (
    Key(
        "catalog",
        "ORCHESTRATOR_CATALOG",
        "where published routines live: a folder, file://, s3://bucket/prefix/ or https://host/p/",
    ),
    Key(
        "artifacts",
        "ORCHESTRATOR_ARTIFACTS",
        "where content-addressed files live (same forms); default: <catalog>/_artifacts/",
    ),
    Key(
        "docker.base_image",
        "ORCHESTRATOR_DOCKER_BASE_IMAGE",
        "base image of generated Docker targets; default python:<this Python's X.Y>-slim",
    ),
    Key(
        "docker.registry",
        "ORCHESTRATOR_DOCKER_REGISTRY",
        "registry prefix of generated image names (e.g. 1234.dkr.ecr.eu-west-1.amazonaws.com)",
    ),
    Key(
        "docker.run_options",
        "ORCHESTRATOR_DOCKER_RUN_OPTIONS",
        "extra `docker run` options of generated run scripts (list, or one shell-quoted string)",
        _options,
    ),
    Key(
        # No lineage.api_key: the bearer key is a secret, read from OPENLINEAGE_API_KEY only, never
        # written into this file or shown by config show.
        "lineage.url",
        "OPENLINEAGE_URL",
        "OpenLineage HTTP endpoint base that gets every run's "
        "lineage events (e.g. http://marquez:5000); the bearer key comes from OPENLINEAGE_API_KEY",
    ),
    Key(
        "lineage.endpoint", "OPENLINEAGE_ENDPOINT", "path under lineage.url; default api/v1/lineage"
    ),
    Key(
        "lineage.file",
        "ORCHESTRATOR_LINEAGE_FILE",
        "a file that gets every run's lineage events, "
        "one JSON per line (instead of lineage.url)",
    ),
    Key(
        "lineage.namespace",
        "OPENLINEAGE_NAMESPACE",
        "OpenLineage namespace of the jobs; " "default orchestrator",
    ),
)
BY_NAME = {key.name: key for key in KEYS}


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str
    value: Any
    source: str  # "env ORCHESTRATOR_X", the file's path, "default" or "unset"


@dataclasses.dataclass(frozen=True)
class HomeConfig:
    file: Path
    settings: dict[str, Setting]

    def get(self, name: str) -> Any:
        return self.settings[name].value

    def require(self, name: str, why: str) -> Any:
        value = self.get(name)
        if value is None:
            key = BY_NAME[name]
            raise UserError(
                f"no {name} is configured, which {why}: set {key.env} or run "
                f"`orchestrate config set {name} VALUE` (file {self.file})"
            )
        return value


def config_file(env: Mapping[str, str] = os.environ) -> Path:
    home = env.get("ORCHESTRATOR_HOME") or str(Path.home() / ".orchestrator")
    return Path(home).expanduser() / CONFIG_FILE


def load_config(env: Mapping[str, str] = os.environ) -> HomeConfig:
    """The effective config: environment over file over defaults; every value checked."""
    file = config_file(env)
    flat = _flatten(read_file(file), file)
    settings: dict[str, Setting] = {}
    for key in KEYS:
        # An empty variable counts as unset, so 'ORCHESTRATOR_CATALOG= orchestrate ...' falls back
        # to the file instead of configuring an empty catalog.
        if env.get(key.env):
            settings[key.name] = Setting(
                key.name,
                _parse(key, env[key.env], f"environment variable {key.env}"),
                f"env {key.env}",
            )
        elif key.name in flat:
            settings[key.name] = Setting(
                key.name, _parse(key, flat[key.name], f"{file}: {key.name}"), str(file)
            )
        else:
            settings[key.name] = Setting(key.name, None, "unset")
    catalog, artifacts = settings["catalog"], settings["artifacts"]
    # Derived from the effective catalog, wherever that came from (file or environment).
    if artifacts.value is None and catalog.value is not None:
        settings["artifacts"] = Setting(
            "artifacts", join_url(catalog.value, "_artifacts/"), "default (beside the catalog)"
        )
    return HomeConfig(file, settings)


def _parse(key: Key, value: Any, where: str) -> Any:
    try:
        return key.parse(value)
    except ValueError as exc:
        raise UserError(f"{where} {exc}; got {json.dumps(value)}") from None


def read_file(file: Path) -> dict[str, Any]:
    """The file's JSON object; no file is an empty config."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserError(f"{file}: cannot read the config: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            "fix it or remove the file"
        ) from None
    if not isinstance(doc, dict):
        raise UserError(
            f'{file}: the config must be a JSON object, like {{"catalog": "s3://bucket/routines/"}}'
        )
    return doc


def _flatten(doc: dict[str, Any], file: Path, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in doc.items():
        dotted = f"{prefix}{name}"
        # Only objects that group known keys ('docker', 'lineage') are descended into; anything
        # else unknown is refused with the closest name, so a typo never silently does nothing.
        if isinstance(value, dict) and any(k.name.startswith(dotted + ".") for k in KEYS):
            flat.update(_flatten(value, file, dotted + "."))
        elif dotted in BY_NAME:
            flat[dotted] = value
        elif any(k.name.startswith(dotted + ".") for k in KEYS):
            inner = ", ".join(
                k.name.removeprefix(dotted + ".") for k in KEYS if k.name.startswith(dotted + ".")
            )
            raise UserError(
                f"{file}: {dotted} must be an object with {inner}; got {json.dumps(value)}"
            )
        else:
            raise UserError(f"{file}: unknown key {dotted!r}; {_known(dotted)}")
    return flat


def _known(name: str) -> str:
    import difflib  # only a mistake pays for it: a run reads this module for its lineage keys

    close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(BY_NAME)}"


def set_value(name: str, value: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """Write ``name`` (``None`` removes it) into the config file, atomically; the rest is kept."""
    if name not in BY_NAME:
        raise UserError(f"unknown config key {name!r}; {_known(name)}")
    file = config_file(env)
    doc = read_file(file)
    for other, current in _flatten(doc, file).items():
        if other != name:  # the rest of the file must stay valid; the key being set may fix itself
            _parse(BY_NAME[other], current, f"{file}: {other}")
    if value is not None:
        parsed = _parse(BY_NAME[name], _maybe_json(value), f"config key {name}")
        doc = _with(doc, name.split("."), parsed)
    else:
        doc = _without(doc, name.split("."))
    file.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed over the file: a crash never leaves half a config, and the pid
    # keeps two concurrent writers from sharing one temporary file (the last rename wins).
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, file)
    return file


def _maybe_json(value: str) -> Any:
    """``config set docker.run_options '["--network", "host"]'`` stores a list; text stays text."""
    # Only a list is parsed: a value such as '123' or 'true' stays the text it was typed as.
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


def _with(doc: dict[str, Any], parts: list[str], value: Any) -> dict[str, Any]:
    result = dict(doc)
    if len(parts) == 1:
        result[parts[0]] = value
    else:
        inner = result.get(parts[0])
        result[parts[0]] = _with(inner if isinstance(inner, dict) else {}, parts[1:], value)
    return result


def _without(doc: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    result = dict(doc)
    if len(parts) == 1:
        result.pop(parts[0], None)
    elif isinstance(result.get(parts[0]), dict):
        result[parts[0]] = _without(result[parts[0]], parts[1:])
        # An emptied group goes too, rather than leaving "docker": {} behind.
        if not result[parts[0]]:
            del result[parts[0]]
    return result


def join_url(base: str, tail: str) -> str:
    """``base`` (a folder, file://, s3:// or http(s):// location) with ``tail`` appended."""
    return base.rstrip("/") + "/" + tail.lstrip("/")
