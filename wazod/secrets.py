"""Masking of secrets wherever text leaves the process (logs, config dumps, tracebacks).

Keys are recognised by name; DSNs and URLs have their password part replaced,
read by libpq's own parser where the text is a connection string (``wazod.dsn``).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "********"

SECRET_KEY_RE = re.compile(
    r"(pass(word|wd)?|secret|token|community|auth_key|priv_key|private_key|api_key|credential|login)$",
    re.IGNORECASE,
)
# scheme://user:password@host -> scheme://user:********@host; the password runs to the LAST "@" of the
# authority (u:p@ss@h keeps no part of "p@ss"), masking more rather than less
_URL_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^/\s]*)(?P<at>@)")
# key=value pairs in libpq DSNs, URL queries or argv, e.g. password=xyz, ?sslpassword=x&, password='a b'
_KV_PASSWORD_RE = re.compile(
    r"(?P<head>\b(sslpassword|password|passwd|pwd|community|secret)\s*[=:]\s*)"
    r"(?P<pw>'(?:[^'\\]|\\.)*'?|\"[^\"]*\"?|[^\s&]+)", re.IGNORECASE)


def _dsn_secrets(text: str) -> dict[str, str] | None:
    """The secrets of ``text`` when libpq reads it, whole, as a connection string; else None."""
    if len(text) > 4096 or not ("://" in text or "password" in text.lower()):
        return None
    from wazod import dsn as dsnlib
    from wazod.errors import ConfigError

    try:
        params = dsnlib.parse(text)
    except (ConfigError, ImportError):
        return None
    return dsnlib.split_secrets(params)[1]


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_RE.search(str(key)))


def mask_text(text: str) -> str:
    """``text`` with the secrets of DSNs, URLs and ``key=value`` pairs masked.

    A text that libpq reads as one connection string is judged by libpq's parser: a ``key=value``
    DSN is rebuilt from its keywords with the secrets masked. A URL keeps its form: its user-info
    password (to the last ``@``, more than libpq would take) and query secrets are masked, as in
    free text (an error message quoting a DSN).
    """
    secrets = _dsn_secrets(text)
    if secrets and "://" not in text:
        from wazod import dsn as dsnlib

        return dsnlib.masked(text) or MASK
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
