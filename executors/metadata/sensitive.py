"""Columns whose name or values look sensitive keep their counts but show no values."""
from __future__ import annotations

import re
from typing import Any, Iterable

SENSITIVE_NAME = re.compile(
    r"(?i)(passw|pwd|secret|token|api_?key|access_?key|private_?key|credential|salt|hash"
    r"|e_?mail|phone|mobile|ssn|social_?sec|tax_?id|passport|iban|card|cc_?num|cvv|pan$|account_?num"
    r"|birth|dob$|address|ip_?addr)"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_JWT = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")
_DIGITS = re.compile(r"[ -]")


def sensitive_name(name: str) -> bool:
    return bool(SENSITIVE_NAME.search(name))


def sensitive_value(value: Any) -> bool:
    """An e-mail address, a Luhn-valid card number or a JWT."""
    if not isinstance(value, str):
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
        if value is None:
            return False
    text = value.strip()
    if _EMAIL.match(text) or _JWT.match(text):
        return True
    digits = _DIGITS.sub("", text)
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
    """Mark a table profile's sensitive columns (by name or by the values seen) and drop their values."""
    for column in profile.columns.values():
        seen = list(column.sample_values or ()) + [v.get("value") for v in column.top_values or ()]
        if sensitive_name(column.name) or any_sensitive(seen):
            column.sensitive = True
        if column.sensitive:
            column.min_value = column.max_value = column.top_values = column.sample_values = None
