"""``orchestrate logs [--follow]``: print a run's log lines, and with ``--follow`` keep polling
the store for new ones until the run ends."""

from __future__ import annotations

import json
import time
from typing import Any

FOLLOW_POLL_SECONDS = 0.05  # a container's line shows within ~50 ms of reaching the store


def print_logs(store: Any, run: Any, tail: int | None, follow: bool, as_json: bool) -> None:
    """The run's lines (the last ``tail`` only, if given), then, when following, each new one."""
    from ..runs.control import look_up
    from .views import log_line

    records = store.logs(run.run_id)
    # Taken before the tail is cut: with --tail 0 nothing is printed, and following from seq 0
    # would then print every earlier line after all.
    last = records[-1].seq if records else 0
    # A slice of [-0:] would be every line, so --tail 0 is spelled out as none.
    if tail is not None:
        records = records[-tail:] if tail else []
    while True:
        for record in records:
            # Flushed per line: piped into grep or a file, --follow must show lines as they come.
            print(json.dumps(record.__dict__) if as_json else log_line(record), flush=True)
            last = record.seq
        if not follow or run.finished:
            return
        time.sleep(FOLLOW_POLL_SECONDS)
        # The run is read before its logs: every line written before it finished is in the read
        # below, so the loop's last round, which sees it finished, loses none.
        run = look_up(store, run.run_id)  # read again: has it finished?
        records = store.logs(run.run_id, after=last)
