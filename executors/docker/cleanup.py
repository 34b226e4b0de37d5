"""Remove what finished runs left on the daemon: kept failures and stopped containers of other runs.

A stopped container still named ``orchestrator-<token>`` belongs to a run that crashed before it
could record the outcome: ``orchestrate resume`` takes its exit code and logs from it. Removing
it would make the resume run the work again, so only ``include_kept`` failures and containers
of runs that are not this run are removed, and never a running one.
"""
from __future__ import annotations

from typing import Any

from .container import KEPT_PREFIX, LABEL_PREFIX


def remove_finished(api: Any, routine: str, run_id: str, include_kept: bool = True,
                    include_unrecorded: bool = False) -> list[str]:
    """Names of the containers removed."""
    from docker.errors import NotFound

    removed = []
    # The daemon filters: only this routine's containers, and none running, paused or restarting.
    # "created" includes one a crash left between create and start.
    filters = {"label": f"{LABEL_PREFIX}routine={routine}", "status": ["exited", "created", "dead"]}
    for item in api.containers(all=True, filters=filters):
        name = (item.get("Names") or ["?"])[0].lstrip("/")
        labels = item.get("Labels") or {}
        # Never this run's: a parallel step's container is "created" between its create and start
        # calls, and would be removed from under it.
        if labels.get(f"{LABEL_PREFIX}run") == run_id:
            continue
        kept = name.startswith(KEPT_PREFIX)
        if (kept and include_kept) or (not kept and include_unrecorded):
            try:
                api.remove_container(item["Id"], v=True, force=True)
            except NotFound:  # removed meanwhile
                continue
            removed.append(name)
    return removed
