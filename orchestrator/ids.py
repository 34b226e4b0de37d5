"""Random ids for runs: UUID4 text, without importing :mod:`uuid`.

``uuid`` imports ``platform`` on the way, about a millisecond of start-up for every command; a
UUID4 is sixteen random bytes with six bits set, written in hex.
"""
from __future__ import annotations

import os


def new_id() -> str:
    """A random UUID (version 4) as text, the same as ``str(uuid.uuid4())``."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
