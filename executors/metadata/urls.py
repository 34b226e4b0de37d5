"""Source and target locations: masking credentials and telling source kinds apart. No I/O."""
from __future__ import annotations

import hashlib
import re

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/]*)(?::[^@/]*)?@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:password|pwd|token|secret|api[_-]?key|access[_-]?key)=)[^&]*"
)


def mask_url(url: str) -> str:
    """``postgresql://bob:s3cret@db/x`` → ``postgresql://bob:****@db/x``; query secrets too."""
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:****@" if m.group(0).count(":") > 1
                           else m.group(0), url)
    return _QUERY_SECRET.sub(r"\1****", masked)


def source_id(masked_url: str) -> str:
    """A stable key for a source across runs: its masked location, hashed to fit any key column."""
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

    return f"{match['scheme']}{match['user']}:{quote(password, safe='')}@{url[match.end():]}"
