"""Masking of secrets wherever text leaves the process (logs, config dumps, tracebacks).

Keys are recognised by name; DSNs and URLs have their password part replaced.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "********"

SECRET_KEY_RE = re.compile(
    r"(pass(word|wd)?|secret|token|community|auth_key|priv_key|private_key|api_key|credential|login)$",
    re.IGNORECASE,
)
# scheme://user:password@host -> scheme://user:********@host
_URL_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")
# key=value pairs in libpq DSNs or argv, e.g. password=xyz
_KV_PASSWORD_RE = re.compile(r"(?P<head>\b(password|passwd|pwd|community|secret)\s*[=:]\s*)(?P<pw>[^\s,;&'\"]+)", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_RE.search(str(key)))


def mask_text(text: str) -> str:
    text = _URL_PASSWORD_RE.sub(lambda m: m["head"] + MASK + m["at"], text)
    return _KV_PASSWORD_RE.sub(lambda m: m["head"] + MASK, text)


def mask(value: Any, key: str | None = None) -> Any:
    """Return a copy of ``value`` with secrets masked, recursing into dicts and lists."""
    if key is not None and is_secret_key(key) and value not in (None, "", [], {}):
        if isinstance(value, dict):
            return mask(value)
        if isinstance(value, (list, tuple)):
            return [mask(v, key) for v in value]
        return MASK
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value
