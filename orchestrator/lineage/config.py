"""Where lineage events go: the routine's ``lineage:`` block, else the environment
(``OPENLINEAGE_URL``, ``ORCHESTRATOR_LINEAGE_FILE``...), else the home config's ``lineage``
keys. Unconfigured, nothing is emitted and the OpenLineage client is never imported.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ..records import FrozenRecord, frozen_record


# The OpenLineage HTTP API's path, as Marquez serves it and as the client itself defaults to.
DEFAULT_ENDPOINT = "api/v1/lineage"
DEFAULT_NAMESPACE = "orchestrator"
# The OPENLINEAGE_* names are the ones the OpenLineage clients read themselves, so an environment
# already set up for other producers works here unchanged.
ENV = {"url": "OPENLINEAGE_URL", "endpoint": "OPENLINEAGE_ENDPOINT",
       "namespace": "OPENLINEAGE_NAMESPACE", "file": "ORCHESTRATOR_LINEAGE_FILE"}
API_KEY_ENV = "OPENLINEAGE_API_KEY"


@frozen_record
class LineageSettings(FrozenRecord):
    """An HTTP endpoint (``url`` + ``endpoint``, optional bearer ``api_key``) or a ``file`` that
    gets one JSON event per line; ``namespace`` is the jobs' OpenLineage namespace."""

    url: str | None = None
    file: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    # repr=False: settings end up in messages and debug output; the key must not.
    api_key: str | None = dataclasses.field(default=None, repr=False)
    namespace: str = DEFAULT_NAMESPACE
    # Seconds per HTTP request. It also bounds how long the run's end waits for the sender.
    timeout: float = 5.0

    @property
    def target(self) -> str:
        """Where events go, for messages (never the key)."""
        return self.file or f"{(self.url or '').rstrip('/')}/{self.endpoint.lstrip('/')}"


def from_block(block: Any, folder: Path, report: Callable[[str, str], None]) -> Any:
    """The routine's ``lineage:`` block (its shape checked by the schema): settings, False when
    the routine turns lineage off, None when it says nothing. A relative file is in ``folder``."""
    if block is False or block is None:
        return block
    # Any other shape was already reported by the routine's schema.
    if not isinstance(block, dict):
        return None
    if bool(block.get("url")) == bool(block.get("file")):
        report("lineage", "give either url (an OpenLineage HTTP endpoint) or file (JSON lines)")
        return None
    file = block.get("file")
    if isinstance(file, str) and not os.path.isabs(file):
        file = str(folder / file)
    return _settings({**block, "file": file})


def settings_for(routine: Any, env: Mapping[str, str] = os.environ) -> LineageSettings | None:
    """The routine's own settings; else the environment's and the home config's. The home
    config is read only when it exists, and a broken one costs lineage, never the run."""
    if routine.lineage is False or isinstance(routine.lineage, LineageSettings):
        return routine.lineage or None
    # When the environment names a destination, the home config is not read at all; otherwise
    # the home config supplies it, and an endpoint or namespace set in the environment still wins.
    values = {key: env[name] for key, name in ENV.items() if env.get(name)}
    if not (values.get("url") or values.get("file")):
        values = {**_home_values(env), **values}
    if not (values.get("url") or values.get("file")):
        return None
    if values.get("url") and values.get("file"):
        values.pop("url")  # a file set here wins over a shared endpoint: the narrower setting
    return _settings({**values, "api_key": env.get(API_KEY_ENV)})


def _home_values(env: Mapping[str, str]) -> dict[str, Any]:
    home = Path(env.get("ORCHESTRATOR_HOME") or Path.home() / ".orchestrator").expanduser()
    if not (home / "config.json").exists():  # the usual case: the config module is not loaded
        return {}
    from ..errors import UserError
    from ..home_config import load_config

    try:
        config = load_config(env)
    except UserError as exc:
        import logging  # only then: every run reads these settings, few log

        logging.getLogger("orchestrator.lineage").warning("lineage not emitted: %s", exc)
        return {}
    return {key: config.get(f"lineage.{key}") for key in ENV
            if config.get(f"lineage.{key}") is not None}


def _settings(values: Mapping[str, Any]) -> LineageSettings:
    return LineageSettings(url=values.get("url") or None, file=values.get("file") or None,
                           endpoint=values.get("endpoint") or DEFAULT_ENDPOINT,
                           api_key=values.get("api_key") or None,
                           namespace=values.get("namespace") or DEFAULT_NAMESPACE,
                           timeout=float(values.get("timeout") or 5.0))
