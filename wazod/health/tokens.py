"""Who may read the status endpoint when it listens beyond loopback.

Two kinds of token are accepted in ``X-Auth-Token``:

- a static token, the first line of ``status.token_file`` (compared in
  constant time; the file is re-read when it changes), convenient for the
  other node's HA probe and for a Prometheus server;
- a Wazo token, checked against wazo-auth with ``HEAD /0.1/token/<token>``
  (``?scope=<acl>`` when ``status.wazo_auth_acl`` is set): 204 valid,
  403/404 not. Answers are cached ``status.token_cache`` seconds (refusals
  at most 5 s), keyed by a hash of the token, so a scrape every few seconds
  does not hammer wazo-auth and a revoked token stops working soon.

Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import time
from urllib.parse import quote

import aiohttp

from wazod.logsetup import get_logger

log = get_logger("status-auth")

MAX_TOKEN_LEN = 512
NEGATIVE_CACHE = 5.0
CACHE_LIMIT = 1024
WAZO_AUTH_TIMEOUT = 5.0


def read_static_token(path: str | None) -> str | None:
    """The first line of ``path``, stripped; None when unset, missing, unreadable or empty."""
    if not path:
        return None
    try:
        with open(path) as f:
            token = f.readline().strip()
    except OSError as e:
        log.error("status token file cannot be read", file=path, error=e.strerror)
        return None
    return token or None


def auth_headers(config) -> dict[str, str]:
    """Headers a client of another node's endpoint sends (the HA peer probe): the static token, if any."""
    token = read_static_token(config.status.token_file)
    return {"X-Auth-Token": token} if token else {}


def _ssl_for(verify: bool | str):
    if verify is False:
        return False
    if verify is True:
        return None  # aiohttp's default verification
    if not os.path.exists(verify):
        log.error("wazo_auth_verify CA file is missing; wazo-auth answers cannot be trusted", file=verify)
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=verify)


class TokenChecker:
    def __init__(self):
        self._cache: dict[str, tuple[bool, float]] = {}
        self._static: tuple[str | None, float | None, str | None] = (None, None, None)  # path, mtime, token
        self._session: aiohttp.ClientSession | None = None

    def _static_token(self, path: str | None) -> str | None:
        if not path:
            return None
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = None
        if self._static[:2] != (path, mtime):
            self._static = (path, mtime, read_static_token(path))
        return self._static[2]

    async def valid(self, token: str | None, section) -> bool:
        if not token or len(token) > MAX_TOKEN_LEN or not token.isprintable():
            return False
        static = self._static_token(section.token_file)
        if static and hmac.compare_digest(token.encode(), static.encode()):
            return True
        if not section.wazo_auth_url:
            return False
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached and cached[1] > now:
            return cached[0]
        answer = await self._ask_wazo_auth(token, section)
        if answer is not None:
            ttl = section.token_cache if answer else min(section.token_cache, NEGATIVE_CACHE)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
            if ttl > 0:
                self._cache[key] = (answer, now + ttl)
        return bool(answer)

    async def _ask_wazo_auth(self, token: str, section) -> bool | None:
        """True/False as wazo-auth says; None when it cannot be asked (not cached)."""
        url = f"{section.wazo_auth_url.rstrip('/')}/0.1/token/{quote(token, safe='')}"
        params = {"scope": section.wazo_auth_acl} if section.wazo_auth_acl else None
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAZO_AUTH_TIMEOUT))
        try:
            async with self._session.head(url, params=params, ssl=_ssl_for(section.wazo_auth_verify),
                                          allow_redirects=False) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("wazo-auth cannot be reached to check a token", url=section.wazo_auth_url,
                        error=type(e).__name__)
            return None
        if status in (200, 204):
            return True
        if status in (401, 403, 404):
            return False
        log.warning("wazo-auth answered a token check unexpectedly", url=section.wazo_auth_url, status=status)
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
