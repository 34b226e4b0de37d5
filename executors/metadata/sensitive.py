"""Columns whose name or values look sensitive keep their counts but show no values."""
from __future__ import annotations

import re
from typing import Any, Iterable

# Substrings, so "user_email" and "password_hash" match. "pan" and "dob" only at the end of a name:
# anywhere, they would catch "company", "panel" or "adobe".
SENSITIVE_NAME = re.compile(
    r"(?i)(passw|pwd|secret|token|api_?key|access_?key|private_?key|credential|salt|hash"
    r"|e_?mail|phone|mobile|ssn|social_?sec|tax_?id|passport|iban|card|cc_?num|cvv"
    r"|pan$|account_?num"
    r"|birth|dob$|address|ip_?addr)"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
# "eyJ" is '{"' and a letter in base64url: a JWT starts with its JSON header, {"alg": ...}.
_JWT = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")
# Card numbers are often written in groups: "4111 1111 1111 1111", "4111-1111-...".
_DIGITS = re.compile(r"[ -]")


def sensitive_name(name: str) -> bool:
    return bool(SENSITIVE_NAME.search(name))


def sensitive_value(value: Any) -> bool:
    """An e-mail address, a Luhn-valid card number or a JWT."""
    if not isinstance(value, str):
        # Card numbers stored as BIGINT are checked too; floats and other types are not.
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
        if value is None:
            return False
    text = value.strip()
    if _EMAIL.match(text) or _JWT.match(text):
        return True
    digits = _DIGITS.sub("", text)
    # 13 to 19 digits is the span of card number lengths; the Luhn check keeps most other long
    # numbers (ids, amounts in cents) from being taken for cards: 9 in 10 fail it.
    return 13 <= len(digits) <= 19 and digits.isdigit() and _luhn(digits)


def any_sensitive(values: Iterable[Any]) -> bool:
    return any(sensitive_value(v) for v in values)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = int(char) * (2 if index % 2 else 1)
        total += number - 9 if number > 9 else number
    return total % 10 == 0


def redact(profile: Any) -> None:
    """Mark a table profile's sensitive columns (by name or by the values seen)
    and drop their values."""
    for column in profile.columns.values():
        # By value too: a column named "notes" or "contact" may still hold e-mail addresses.
        seen = list(column.sample_values or ()) + [v.get("value") for v in column.top_values or ()]
        if sensitive_name(column.name) or any_sensitive(seen):
            column.sensitive = True
        if column.sensitive:
            # min and max go as well: the smallest e-mail address is an e-mail address.
            column.min_value = column.max_value = column.top_values = column.sample_values = None
