"""An append-only record of writes in flight, so a rerun after a crash can remove what they left.

A line ``{"begin": target}`` is written *before* a temp file or a multipart upload exists, and
``{"end": target}`` once it is published or cleaned up. What began and never ended is a leftover.
Each line is one ``os.write`` on an ``O_APPEND`` descriptor: it survives the process being killed.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def leftovers(self) -> list[str]:
        """Targets that began and never ended, in the order they began."""
        pending: dict[str, None] = {}
        if not self.path.exists():
            return []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash
            if "begin" in record:
                pending[record["begin"]] = None
            elif "end" in record:
                pending.pop(record["end"], None)
        return list(pending)

    def recover(self, clean: Callable[[str], None]) -> int:
        """Clean every leftover, then start a fresh journal."""
        found = self.leftovers()
        for target in found:
            clean(target)
        self.reset()
        return len(found)

    def reset(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def begin(self, target: str) -> None:
        self._append({"begin": target})

    def end(self, target: str) -> None:
        self._append({"end": target})

    def _append(self, record: dict[str, str]) -> None:
        data = (json.dumps(record) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

