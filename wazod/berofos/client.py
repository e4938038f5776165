"""Async HTTP client for one berofos, speaking libbnfos' protocol.

What it does, as libbnfos does: a setting is ``GET /?cmd=<n>&<param>=<value>``
(value URL-escaped), reading is ``GET /config.txt``; user agent ``libbnfos``;
HTTP authentication "any" like curl's CURLAUTH_ANY (the first request goes
without credentials, the device's challenge picks basic or digest, and the
scheme is then sent up front); 2xx is success and 401 means wrong credentials.

What it does better: every error is a ``DeviceError`` whose message names the
device and the cause (refused, timeout, HTTP status, bad credentials,
not-a-berofos answer) without ever showing the password, and whose
``retryable`` says whether trying again can help (a wrong password cannot).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import DigestAuthMiddleware, hdrs
from yarl import URL

from wazod.berofos.conf import Device
from wazod.berofos.protocol import (
    MAGIC_KEY,
    MAGIC_VALUE,
    SETTINGS,
    USER_AGENT,
    ConfigTxtError,
    parse_config_txt,
    read_settings,
)
from wazod.errors import ConfigError
from wazod.fsutil import atomic_write_json, read_json
from wazod.secrets import mask_text
from wazod.statedir import ensure_private_dir

MAX_CONFIG_TXT = 64 * 1024


class DeviceError(Exception):
    """A device operation failed; the message names the device and is safe to log."""

    retryable = True


class DeviceUnreachable(DeviceError):
    """Connection refused, reset or timed out."""


class DeviceAuthError(DeviceError):
    """HTTP 401: the login of bnfos.conf is wrong or missing. Retrying cannot help."""

    retryable = False


class DeviceProtocolError(DeviceError):
    """An answer that is not what a berofos sends (HTTP error status, no magic line)."""


class DeviceVerifyError(DeviceError):
    """The device accepted a change but reads back another value."""


@dataclass(frozen=True)
class DeviceState:
    """What config.txt says: the relay mode and the setup values Wazo depends on."""

    mode: int | None
    modedef: int | None
    scenario: int | None
    wdog: int | None
    wdogdef: int | None
    confmap_version: str

    @classmethod
    def from_values(cls, values: dict[str, str]) -> DeviceState:
        s = read_settings(values)
        return cls(mode=s["mode"], modedef=s["modedef"], scenario=s["scenario"], wdog=s["wdog"],
                   wdogdef=s["wdogdef"], confmap_version=values.get(MAGIC_KEY, ""))


def _encode_basic(user: str, password: str) -> str:
    encode = getattr(aiohttp, "encode_basic_auth", None)  # aiohttp >= 3.13; BasicAuth is deprecated there
    return encode(user, password) if encode else aiohttp.BasicAuth(user, password).encode()


# The scheme each device (host, port) has shown: a device that once offered digest never gets the
# password in basic (clear text) afterwards, even if something answering at its address asks for
# basic. Kept in memory and, once ``remember_schemes_in`` names it, in a 0600 file of the state
# directory, so the daemon and every ``wazod berofos`` process share what one of them learnt.
_PINNED: dict[tuple[str, int], str] = {}
_PIN_FILE: Path | None = None


def remember_schemes_in(path: str | os.PathLike) -> None:
    """Load the schemes learnt before from ``path`` and keep it up to date from now on."""
    global _PIN_FILE
    path = Path(path)
    try:
        ensure_private_dir(path.parent)
    except (ConfigError, OSError):
        return  # a state directory the rest of wazod refuses loudly: schemes kept in memory only
    _PIN_FILE = path
    saved = read_json(_PIN_FILE, {})
    if isinstance(saved, dict):
        for address, scheme in saved.items():
            host, _, port = str(address).rpartition(":")
            if scheme in ("basic", "digest") and port.isdigit():
                _PINNED.setdefault((host, int(port)), scheme)


def _pin(key: tuple[str, int], scheme: str) -> None:
    if _PINNED.get(key) == scheme:
        return
    _PINNED[key] = scheme
    if _PIN_FILE is not None:
        with contextlib.suppress(OSError):
            atomic_write_json(_PIN_FILE, {f"{h}:{p}": s for (h, p), s in sorted(_PINNED.items())}, mode=0o600)


def forget_auth_scheme(host: str, port: int) -> None:
    """Drop what was learnt of a device's scheme (the device was really reconfigured, or a test ended)."""
    if _PINNED.pop((host, port), None) is not None and _PIN_FILE is not None:
        with contextlib.suppress(OSError):
            atomic_write_json(_PIN_FILE, {f"{h}:{p}": s for (h, p), s in sorted(_PINNED.items())}, mode=0o600)


class _AnyAuth:
    """Client middleware choosing basic or digest from the device's 401 challenge (CURLAUTH_ANY).

    Digest is delegated to aiohttp's RFC 7616 implementation; a basic challenge
    switches this device to basic, sent pre-emptively from then on, unless the
    device offered digest before (``_PINNED``): then the basic challenge is
    refused and ``downgrade_refused`` says why.
    """

    def __init__(self, user: str, password: str, key: tuple[str, int] = ("", 0)):
        self.key = key
        self.downgrade_refused = False
        self._basic = _encode_basic(user, password)
        self._digest = DigestAuthMiddleware(user, password)

    @property
    def scheme(self) -> str | None:
        return _PINNED.get(self.key)

    async def __call__(self, request: aiohttp.ClientRequest, handler) -> aiohttp.ClientResponse:
        if self.scheme == "basic":
            request.headers[hdrs.AUTHORIZATION] = self._basic
            return await handler(request)
        response = await self._digest(request, handler)
        if response.status == 401:
            offered = response.headers.get(hdrs.WWW_AUTHENTICATE, "").split(" ", 1)[0].lower()
            if offered == "digest":
                _pin(self.key, "digest")
            elif offered == "basic":
                if self.scheme == "digest":
                    self.downgrade_refused = True
                    return response
                _pin(self.key, "basic")
                response.release()
                request.headers[hdrs.AUTHORIZATION] = self._basic
                return await handler(request)
        elif hdrs.AUTHORIZATION in request.headers:
            _pin(self.key, "digest")
        return response


class BerofosClient:
    """One device; use as ``async with BerofosClient(device, timeout=3) as c``."""

    def __init__(self, device: Device, *, timeout: float = 3.0):
        self.device = device
        self.timeout = timeout
        self._auth = (_AnyAuth(device.user, device.password or "", (device.host, device.port))
                      if device.user is not None else None)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BerofosClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={hdrs.USER_AGENT: USER_AGENT},
            # small embedded web server: one connection per request, as robust as it gets
            connector=aiohttp.TCPConnector(force_close=True),
            middlewares=(self._auth,) if self._auth else (),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def auth_scheme(self) -> str | None:
        """basic or digest once the device has said which; None before (or without a login)."""
        return self._auth.scheme if self._auth else None

    def _url(self, path: str, query: dict[str, str] | None = None) -> URL:
        return URL.build(scheme="http", host=self.device.host, port=self.device.port, path=path, query=query)

    async def _get(self, url: URL, what: str) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("BerofosClient used outside 'async with'")
        dev = self.device
        try:
            async with self._session.get(url, allow_redirects=False) as resp:
                status = resp.status
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(8192):
                    size += len(chunk)
                    if size > MAX_CONFIG_TXT:
                        raise DeviceProtocolError(f"{dev}: answer to {what} larger than {MAX_CONFIG_TXT} bytes")
                    chunks.append(chunk)
                body = b"".join(chunks)
        except TimeoutError:
            raise DeviceUnreachable(f"{dev}: no answer to {what} within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorError as e:
            reason = e.os_error.strerror if e.os_error and e.os_error.strerror else str(e.os_error or e)
            raise DeviceUnreachable(f"{dev}: cannot connect ({reason})") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as e:
            raise DeviceUnreachable(f"{dev}: connection lost during {what} ({type(e).__name__})") from None
        except aiohttp.ClientError as e:
            err = DeviceProtocolError(f"{dev}: {what} failed: {mask_text(str(e))}")
            err.retryable = False
            raise err from None
        if status == 401:
            if self._auth is None:
                raise DeviceAuthError(f"{dev}: the device asks for a login (HTTP 401) but bnfos.conf has none for "
                                      f"[{dev.name}]; add 'login = user:password'")
            if self._auth.downgrade_refused:
                raise DeviceAuthError(f"{dev}: the device asks for basic authentication after it used digest: "
                                      "the password is not sent in clear text (another host at its address?); "
                                      "if the device was really reconfigured, remove it from "
                                      "<state_dir>/berofos-auth.json and restart wazod")
            raise DeviceAuthError(f"{dev}: wrong credentials: the device refused user '{dev.user}' (HTTP 401); "
                                  f"check the login of [{dev.name}] in bnfos.conf")
        if not 200 <= status < 300:
            raise DeviceProtocolError(f"{dev}: HTTP {status} to {what}")
        return status, body

    async def read_values(self) -> dict[str, str]:
        """Every ``key=value`` of /config.txt (after the magic line)."""
        _, body = await self._get(self._url("/config.txt"), "reading config.txt")
        try:
            return parse_config_txt(body.decode("latin-1"))
        except ConfigTxtError as e:
            raise DeviceProtocolError(f"{self.device}: {e}") from None

    async def read_state(self) -> DeviceState:
        values = await self.read_values()
        try:
            state = DeviceState.from_values(values)
        except ConfigTxtError as e:
            raise DeviceProtocolError(f"{self.device}: {e}") from None
        if state.mode is None:
            raise DeviceProtocolError(f"{self.device}: config.txt has no 4_mode line")
        return state

    async def set(self, name: str, value: int | str) -> None:
        """One setting by its bnfos name (mode, modedef, scenario, wdog, wdogdef): GET /?cmd=<n>&<param>=<v>."""
        setting = SETTINGS[name]
        if setting.boolean and str(value) not in ("0", "1"):
            raise ValueError(f"{name} must be 0 or 1, not {value!r}")
        url = self._url("/", {"cmd": str(setting.cmd), setting.param: str(value)})
        await self._get(url, f"setting {name}={value}")


def backoff_delays(retries: int, first: float, maximum: float) -> list[float]:
    """Pauses before each retry: first, 2*first, 4*first... capped at maximum."""
    return [min(first * (2 ** i), maximum) for i in range(retries)]


__all__ = [
    "BerofosClient", "DeviceState", "DeviceError", "DeviceUnreachable", "DeviceAuthError",
    "DeviceProtocolError", "DeviceVerifyError", "backoff_delays", "MAGIC_VALUE",
]
