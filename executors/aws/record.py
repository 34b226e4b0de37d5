"""Never twice: what one task call remembers of its remote work, across attempts and resumes.

:class:`RemoteRecord` writes each remote id to a JSON file under the step's state folder the
moment it exists; a retry finds it and re-attaches instead of submitting again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from orchestrator.executor import Context

# Never change it: a derived token must come out the same in every attempt and resume, across
# upgrades too. With the record lost, the derived token is what finds the Glue run an earlier
# attempt started.
TOKEN_NAMESPACE = uuid.UUID("9f2d0c5e-52b4-4c36-9d5a-8a7a1f1e3c01")

_log = logging.getLogger(__name__)


def args_digest(*parts: Any) -> str:
    # Sorted keys: the same arguments in another order are the same call. default=str takes the
    # dates and paths arguments can hold. 16 hex digits tell calls apart; nothing relies on them
    # being unguessable.
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RemoteRecord:
    """A JSON file remembering one unit of remote work of one task call across attempts.

    Keyed by run id, step (the state folder), task name, the call's ordinal within the step and
    the unit's index within the task: the same for attempt 1 and attempt 2, different for the
    second call of the same task. ``generation`` grows each time the remembered work ended badly,
    so the next submission gets a fresh idempotency token.

    A file that cannot be read, or holds something other than a record, counts as no record (with
    a warning): the deterministic token still lets Glue find a run an earlier attempt started.
    ``previous`` is the same unit's record in the run this run resumes, when this run has none yet.
    """

    def __init__(self, folder: Path, key: str, digest: str, run_id: str, scope: str = "",
                 logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self.path = folder / f"{key}.json"
        self.key, self.digest, self.run_id, self.scope = key, digest, run_id, scope
        self.logger = logger or _log
        self.previous: RemoteRecord | None = None
        self.data: dict[str, Any] = self._load()

    @classmethod
    def for_call(cls, context: Context, call_key: str, unit: str,
                 *digest_parts: Any) -> RemoteRecord:
        """The record of ``unit`` of this call; ``previous`` is the resumed run's, when it has one
        and this run has none yet (so a resume re-attaches to the dead run's work)."""
        scope, digest = f"{context.routine_name}/{context.step}", args_digest(*digest_parts)
        key, folder = f"{call_key}.{unit}", context.state_dir("remote", context.run_id)
        record = cls(folder, key, digest, context.run_id, scope=scope, logger=context.logger)
        resumed = context.resumed_from
        if resumed and resumed != context.run_id and not record.data:
            previous = cls(context.state_dir("remote", resumed), key, digest, resumed, scope=scope,
                           logger=context.logger)
            record.previous = previous if previous.data else None
        return record

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # ValueError is the UnicodeDecodeError of a file that is not ours or was torn by a disk
            # fault.
            self.logger.warning("remote record %s cannot be read (%s); treating it as empty",
                                self.path, exc)
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.logger.warning("remote record %s is not valid JSON (%s); treating it as empty",
                                self.path, exc)
            return {}
        problem = _record_problem(data)
        if problem:
            self.logger.warning("remote record %s is malformed (%s); treating it as empty",
                                self.path, problem)
            return {}
        # A record made for other arguments (the routine was edited before a resume) describes other
        # work: re-attaching to it would report that work's result as this call's.
        return data if data.get("digest") == self.digest else {}

    @property
    def remote_id(self) -> str | None:
        return self.data.get("id")

    @property
    def generation(self) -> int:
        return int(self.data.get("generation", 0))

    def token(self) -> str:
        """A deterministic UUID (36 chars): valid for Athena (32–128), Redshift (≤64) and as a
        Glue argument."""
        # The run id keeps a later run of the same routine from getting an earlier run's execution
        # back from the engine's idempotency memory.
        name = f"{self.run_id}/{self.scope}/{self.key}/{self.generation}"
        return str(uuid.uuid5(TOKEN_NAMESPACE, name))

    def save(self, **fields: Any) -> None:
        self.data.update(fields, digest=self.digest, key=self.key, run_id=self.run_id,
                         updated=time.time())
        # Write, then rename over: a crash mid-write leaves the previous record whole instead of a
        # torn file, which would lose the remote id and let the work be submitted twice.
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        os.replace(tmp, self.path)

    def next_generation(self) -> None:
        # The token goes too: resubmitting with the old one would hand back the failed work from the
        # engine's idempotency memory instead of starting it again.
        self.save(id=None, state=None, token=None, generation=self.generation + 1)


# Records are read back after crashes and from older runs; a wrong type would otherwise fail
# far from here (a number passed as an id to a describe call, say).
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, type(None)), "token": (str, type(None)), "state": (str, type(None)),
    "refused": (str, type(None)),
    "digest": (str,), "key": (str,), "run_id": (str,), "token_saved": (int, float, type(None)),
}


def _record_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for field, types in _RECORD_TYPES.items():
        if field in data and not isinstance(data[field], types):
            return f"{field} is {data[field]!r}"
    generation = data.get("generation", 0)
    # bool is an int subclass: a generation of true is a damaged file, not generation 1.
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        return f"generation is {generation!r}"
    return None


def known_ids(*records: RemoteRecord | None) -> frozenset[str]:
    """Remote ids recorded next to these records (the step's other units): never an orphan."""
    ids: set[str] = set()
    for folder in {r.path.parent for r in records if r is not None}:
        for path in folder.glob("*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                # A sibling that cannot be read has no id to protect; its own unit will warn when it
                # loads it.
                continue
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                ids.add(data["id"])
    return frozenset(ids)
