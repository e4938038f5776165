"""Who may do what on the endpoint: two credentials, read and admin.

**Read** (``GET``/``HEAD``): asked only when ``status.auth`` applies (``auto``:
when ``listen`` is not a loopback address; ``always``; ``never``). Accepted in
``X-Auth-Token``:

- the static token of ``status.token_file`` (constant-time comparison, re-read
  when the file changes): the other node's HA probe, Prometheus;
- a Wazo token, checked against wazo-auth with ``HEAD /0.1/token/<token>``
  (``?scope=<acl>`` when ``status.wazo_auth_acl`` is set): 204 valid, 403/404
  not; answers cached ``status.token_cache`` seconds (refusals at most 5 s),
  keyed by a hash of the token.

**Admin** (every other method: ``POST /maintenance`` and whatever changes
state): the static token of ``status.admin_token_file``, **always**, whatever
``status.auth`` says, on loopback too: every local user (asterisk, www-data,
AGI scripts) reaches 127.0.0.1. The read token is never enough (a Prometheus
server holding it must not switch maintenance on), nor is a Wazo token. The
admin token is refused altogether while its file could be read or replaced by
another user, or when it equals the read token. It also reads everything.

Without a valid token the answer is a bare 401 whatever the path, so nothing is
revealed, not even which paths exist; a valid read token on a state change gets
403. Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import time
from urllib.parse import quote

import aiohttp
from aiohttp import web

from wazod.config.listen import is_loopback, parse_listen
from wazod.logsetup import get_logger
from wazod.tokenfile import exposure, read_token_file

log = get_logger("status-auth")

MAX_TOKEN_LEN = 512
NEGATIVE_CACHE = 5.0
CACHE_LIMIT = 1024
WAZO_AUTH_TIMEOUT = 5.0
READ_METHODS = frozenset({"GET", "HEAD"})

ANONYMOUS = web.RequestKey("wazod.anonymous", bool)


def auth_required(section) -> bool:
    """Whether read requests need a token (``status.auth``); state changes always do."""
    if section.auth == "always":
        return True
    if section.auth == "never":
        return False
    host, _ = parse_listen(section.listen)
    return not is_loopback(host)


def changes_state(request: web.Request) -> bool:
    """Every method but GET and HEAD is taken as a state change: a route cannot forget to ask for the admin token."""
    return request.method not in READ_METHODS


def _ssl_for(verify: bool | str):
    if verify is False:
        return False
    if verify is True:
        return None  # aiohttp's default verification
    if not os.path.exists(verify):
        log.error("wazo_auth_verify CA file is missing; wazo-auth answers cannot be trusted", file=verify)
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=verify)


def _plausible(token: str | None) -> bool:
    return bool(token) and len(token) <= MAX_TOKEN_LEN and token.isprintable()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class TokenChecker:
    def __init__(self):
        self._cache: dict[str, tuple[bool, float]] = {}
        self._files: dict[str, tuple[tuple | None, str | None]] = {}  # path -> (stat signature, token)
        self._said: set[tuple] = set()  # problems already logged, so a scrape loop does not repeat them
        self._session: aiohttp.ClientSession | None = None

    def _file_token(self, path: str | None, private: bool = False) -> str | None:
        if not path:
            return None
        try:  # re-read when the file is replaced, rewritten or its mode or owner changes
            st = os.stat(path)
            sig = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid)
        except OSError:
            sig = None
        cached = self._files.get(path)
        if cached is None or cached[0] != sig:
            token = read_token_file(path)
            problem = exposure(path) if private and token else None
            if problem:
                self._say("error", "admin token refused: its file " + problem, path, sig)
                token = None
            self._files[path] = (sig, token)
        return self._files[path][1]

    def _say(self, level: str, message: str, path: str, sig) -> None:
        if (message, path, sig) not in self._said:
            self._said.add((message, path, sig))
            getattr(log, level)(message, file=path)

    def admin_token(self, section) -> str | None:
        """The admin token in force, or None (unset, exposed, or equal to the read token)."""
        admin = self._file_token(section.admin_token_file, private=True)
        read = self._file_token(section.token_file)
        if admin and read and _same(admin, read):
            self._say("error", "admin token refused: status.admin_token_file holds the read token of "
                      "status.token_file", section.admin_token_file, None)
            return None
        return admin

    def admin(self, token: str | None, section) -> bool:
        """May this token change state?"""
        if not _plausible(token):
            return False
        admin = self.admin_token(section)
        return bool(admin) and _same(token, admin)

    async def valid(self, token: str | None, section) -> bool:
        """May this token read? (The admin token may.)"""
        if not _plausible(token):
            return False
        static = self._file_token(section.token_file)
        if static and _same(token, static):
            return True
        if self.admin(token, section):
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


def unauthorized() -> web.Response:
    return web.json_response({"error": "unauthorized"}, status=401)


def make_middleware(ctx, tokens: TokenChecker):
    """The aiohttp middleware applying the rules above to every request, registered routes included."""

    @web.middleware
    async def authenticate(request: web.Request, handler):
        section = ctx.config.status
        token = request.headers.get("X-Auth-Token")
        if changes_state(request):
            if tokens.admin(token, section):
                return await handler(request)
            if await tokens.valid(token, section):
                return web.json_response({"error": "forbidden: a change of state needs the admin token "
                                                   "(status.admin_token_file)"}, status=403)
            return unauthorized()
        if not auth_required(section):
            return await handler(request)
        if request.path in section.anonymous_paths and not token:
            request[ANONYMOUS] = True
            return await handler(request)
        if await tokens.valid(token, section):
            return await handler(request)
        return unauthorized()

    return authenticate
