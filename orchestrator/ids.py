"""Random ids for runs (UUID4 text) and content digests, without the imports they usually cost.

``uuid`` imports ``platform`` on the way, about a millisecond of start-up for every command; a
UUID4 is sixteen random bytes with six bits set, written in hex. ``hashlib`` loads OpenSSL
(10 M instructions, ~2 ms) to give a SHA-256 that CPython's own module computes just the same.
"""
from __future__ import annotations

import os


def new_id() -> str:
    """A random UUID (version 4) as text, the same as ``str(uuid.uuid4())``."""
    # os.urandom is what uuid.uuid4 uses too: the same randomness, without the import.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def sha256_hex(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()``, without loading OpenSSL where CPython has its own."""
    try:
        # CPython's built-in SHA-256 moved from _sha256 to _sha2 in 3.12; hashlib is the last
        # resort (a Python built without them, or another implementation).
        from _sha256 import sha256  # type: ignore[import-not-found]  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()
