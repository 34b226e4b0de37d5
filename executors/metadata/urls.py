"""Source and target locations: masking credentials and telling source kinds apart. No I/O."""
from __future__ import annotations

import hashlib
import re

# Scheme, user, then an optional ":password" before the "@". A password holding "@" or "/" must be
# percent-encoded in a URL anyway (with_password does that).
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/]*)(?::[^@/]*)?@")
# Drivers also take credentials as query parameters (?password=..., ?token=...).
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:password|pwd|token|secret|api[_-]?key|access[_-]?key)=)[^&]*"
)


def mask_url(url: str) -> str:
    """``postgresql://bob:s3cret@db/x`` → ``postgresql://bob:****@db/x``; query secrets too."""
    # A second ":" after the scheme's means a password is there; "user@host" has none to mask and
    # is kept as it is.
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@" if m.group(0).count(":") > 1
                           else m.group(0), url)
    return _QUERY_SECRET.sub(r"\1****", masked)


def source_id(masked_url: str) -> str:
    """A stable key for a source across runs: its masked location, hashed to fit any key column."""
    # From the masked URL: a changed password is still the same source, and no secret goes into a
    # stored key. SHA-1 as a fingerprint, not for security.
    return hashlib.sha1(masked_url.encode()).hexdigest()[:16]


def scheme_of(url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql+psycopg``; a plain path → ``""``."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", head) else ""


def with_password(url: str, password: str | None) -> str:
    """Put a password given apart (a secret param) into a SQLAlchemy URL that has a user."""
    if not password:
        return url
    match = _USERINFO.match(url)
    if not match:
        return url
    from urllib.parse import quote

    # safe='': "@", ":" and "/" in a password would otherwise end the userinfo early.
    return f"{match['scheme']}{match['user']}:{quote(password, safe='')}@{url[match.end():]}"
