"""A berofos device on loopback: the HTTP protocol of the real switch, for tests, the demo and the lab.

The real device cannot exist on a CI machine, so every berofos test talks to
this server over real HTTP. It implements what libbnfos relies on:

* settings as ``GET /?cmd=<n>&<param>=<value>`` (cmd 1 ``sz rm p0 p1``, cmd 2
  ``wen wintv as men mhost mfrom mto``, cmd 3 network and password, cmd 4
  ``mode``, cmd 5 ``p&s`` power ports, cmd 6 ``wen`` watchdog); 200 on success,
  400 on an unknown command or value;
* ``GET /config.txt``: the ``bnfos_confmap_magic=0.1`` line, then one
  ``<cmd>_<key>=<value>`` line per key of libbnfos' map; checkbox values are
  rendered ``checked``/empty like the device's web templates, the others 1/0;
* HTTP basic **or** digest authentication (RFC 7616, MD5, qop auth or none),
  401 with a challenge on missing or bad credentials;
* the faults a real site sees: slow answers, the device down (connection
  refused), flaky answers (HTTP 500 or a dropped connection), a reboot into the
  default mode, and a device that answers 200 to a mode change but does not move
  its relays.

Tests drive the faults through the ``BerofosSimulator`` object, or, when it runs
as a separate process (``python -m wazod.berofos.simulator --port P --login
user:pass [--digest]``), through ``GET /_sim/state`` and ``POST /_sim/control``
(JSON), which need no authentication and do not exist on a real device.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import signal
import sys
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from wazod.berofos.protocol import MAGIC_KEY, MAGIC_VALUE

# (cmd, key, rendering) of every line config.txt carries, in libbnfos' map order.
# "flag": 1/0; "check": "checked" or empty (a web form checkbox); "text": as stored.
_CONFIG_LINES: list[tuple[int, str, str]] = [
    (1, "sz", "flag"), (4, "mode", "flag"), (1, "rm", "check"),
    (5, "p0", "flag"), (1, "p0", "check"), (5, "p1", "flag"), (1, "p1", "check"),
    (3, "dn", "text"), (3, "ip", "text"), (3, "nm", "text"), (3, "gw", "text"), (3, "dns", "text"),
    (3, "dhcp", "check"), (3, "port", "text"), (3, "pwd", "check"),
    (2, "mhost", "text"), (2, "mfrom", "text"), (2, "mto", "text"),
    (3, "log", "check"), (3, "loghost", "text"), (3, "logport", "text"),
    (6, "wen", "flag"), (2, "wen", "check"), (6, "wstate", "text"), (2, "wintv", "text"),
    (2, "as", "check"), (2, "men", "check"), (0, "wretv", "text"),
]

# Parameters each settings command accepts: param -> (state key, kind).
_COMMANDS: dict[int, dict[str, tuple[str, str]]] = {
    1: {"sz": ("1_sz", "bool"), "rm": ("1_rm", "bool"), "p0": ("1_p0", "bool"), "p1": ("1_p1", "bool")},
    2: {"wen": ("2_wen", "bool"), "wintv": ("2_wintv", "port"), "as": ("2_as", "bool"), "men": ("2_men", "bool"),
        "mhost": ("2_mhost", "text"), "mfrom": ("2_mfrom", "text"), "mto": ("2_mto", "text")},
    3: {"dn": ("3_dn", "text"), "ip": ("3_ip", "text"), "nm": ("3_nm", "text"), "gw": ("3_gw", "text"),
        "dns": ("3_dns", "text"), "dhcp": ("3_dhcp", "bool"), "port": ("3_port", "port"),
        "pwd": ("3_pwd", "bool"), "apwd": ("apwd", "password"), "syslog": ("3_log", "bool"),
        "slgip": ("3_loghost", "text"), "slgpt": ("3_logport", "port")},
    4: {"mode": ("4_mode", "bool")},
    6: {"wen": ("6_wen", "bool")},
}

_AUTH_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass
class Behaviour:
    """Faults the simulated device shows; change them at any time."""

    delay: float = 0.0  # seconds before every answer (a slow device, or a timeout when large)
    ignore_mode: bool = False  # answer 200 to cmd=4 but leave the relays where they are
    fail_next: int = 0  # the next N requests get HTTP 500
    drop_next: int = 0  # the next N requests see their connection closed without an answer
    flaky_rate: float = 0.0  # probability that any request gets HTTP 500
    config_overrides: dict | None = None  # config.txt key -> raw text sent instead (garbage a broken firmware sends)


@dataclass
class RequestRecord:
    """One request as the device saw it (tests assert on the wire traffic)."""

    path: str
    query: dict[str, str]
    user_agent: str
    auth_scheme: str | None
    status: int


def _initial_state(mode: int, modedef: int, password_set: bool) -> dict[str, Any]:
    return {
        "1_sz": 0, "4_mode": mode, "1_rm": modedef,
        "5_p0": 0, "1_p0": 0, "5_p1": 0, "1_p1": 0,
        "3_dn": "berofos", "3_ip": "127.0.0.1", "3_nm": "255.0.0.0", "3_gw": "0.0.0.0", "3_dns": "0.0.0.0",
        "3_dhcp": 0, "3_port": "80", "3_pwd": 1 if password_set else 0,
        "2_mhost": "", "2_mfrom": "", "2_mto": "",
        "3_log": 0, "3_loghost": "0.0.0.0", "3_logport": "514",
        "6_wen": 0, "2_wen": 0, "6_wstate": "0", "2_wintv": "60",
        "2_as": 0, "2_men": 0, "0_wretv": "0",
    }


class BerofosSimulator:
    """One simulated berofos listening on ``host:port`` (port 0: the kernel picks one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, login: str | None = "admin:secret", *,
                 digest: bool = False, qop: bool = True, realm: str = "berofos", mode: int = 1,
                 modedef: int = 1, behaviour: Behaviour | None = None):
        self.host = host
        self.port = port
        if login is not None and ":" not in login:
            raise ValueError("login must be user:password")
        self.user, _, self._password = (login or "").partition(":")
        self.auth_required = login is not None
        self.digest = digest
        self.qop = qop
        self.realm = realm
        self.state = _initial_state(mode, modedef, self.auth_required)
        self.behaviour = behaviour or Behaviour()
        self.requests: list[RequestRecord] = []
        self._nonces: list[str] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._down_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    # --- state the tests look at ---------------------------------------
    @property
    def mode(self) -> int:
        return int(self.state["4_mode"])

    @mode.setter
    def mode(self, value: int) -> None:
        """Flip the relays by hand (someone pressed the button or used the web page)."""
        self.state["4_mode"] = int(value)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._site is not None

    def mode_changes(self) -> list[RequestRecord]:
        """The cmd=4 requests the device accepted."""
        return [r for r in self.requests if r.query.get("cmd") == "4" and r.status == 200]

    def reboot(self) -> None:
        """The device restarts: relays back to the default mode (modedef), watchdog to its default."""
        self.state["4_mode"] = self.state["1_rm"]
        self.state["6_wen"] = self.state["2_wen"]

    # --- lifecycle --------------------------------------------------------
    async def start(self) -> BerofosSimulator:
        if self._runner is None:
            app = web.Application()
            app.router.add_get("/", self._handle_command)
            app.router.add_get("/config.txt", self._handle_config)
            app.router.add_get("/_sim/state", self._handle_sim_state)
            app.router.add_post("/_sim/control", self._handle_sim_control)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await self._runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        if self.port == 0:
            self.port = self._runner.addresses[-1][1]

    async def go_down(self) -> None:
        """The device disappears from the network: connections are refused until ``come_up``."""
        if self._site is not None:
            site, self._site = self._site, None
            await site.stop()
            server = self._runner.server if self._runner else None
            for proto in list(getattr(server, "connections", []) if server else []):
                with contextlib.suppress(Exception):
                    proto.force_close()

    async def come_up(self, *, reboot: bool = False) -> None:
        if reboot:
            self.reboot()
        if self._site is None:
            await self._listen()

    async def down_for(self, seconds: float, *, reboot: bool = False) -> None:
        """Go down now and come back after ``seconds`` (a power cycle when ``reboot``)."""
        await self.go_down()

        async def later() -> None:
            await asyncio.sleep(seconds)
            await self.come_up(reboot=reboot)

        self._down_task = asyncio.create_task(later())

    async def stop(self) -> None:
        if self._down_task is not None:
            self._down_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._down_task
        await self.go_down()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BerofosSimulator:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- HTTP -------------------------------------------------------------
    async def _faults(self, request: web.Request) -> web.Response | None:
        b = self.behaviour
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.drop_next > 0:
            b.drop_next -= 1
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if b.fail_next > 0:
            b.fail_next -= 1
            return web.Response(status=500, text="Internal error\n")
        if b.flaky_rate and random.random() < b.flaky_rate:  # noqa: S311 - not security
            return web.Response(status=500, text="Internal error\n")
        return None

    def _record(self, request: web.Request, status: int) -> None:
        header = request.headers.get("Authorization", "")
        scheme = header.split(" ", 1)[0].lower() if header else None
        self.requests.append(RequestRecord(request.path, dict(request.query),
                                           request.headers.get("User-Agent", ""), scheme, status))

    def _challenge(self, stale: bool = False) -> str:
        if not self.digest:
            return f'Basic realm="{self.realm}"'
        nonce = secrets.token_hex(16)
        self._nonces = (self._nonces + [nonce])[-64:]
        parts = [f'realm="{self.realm}"', f'nonce="{nonce}"', 'algorithm=MD5', 'opaque="bnfos"']
        if self.qop:
            parts.insert(1, 'qop="auth"')
        if stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)

    def _authorized(self, request: web.Request) -> tuple[bool, bool]:
        """(credentials good, nonce stale). The scheme must be the one the device offers."""
        if not self.auth_required:
            return True, False
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if not self.digest:
            if scheme.lower() != "basic":
                return False, False
            try:
                user, _, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False, False
            return (secrets.compare_digest(user, self.user) and secrets.compare_digest(password, self._password)), False
        if scheme.lower() != "digest":
            return False, False
        params = {m[1].lower(): (m[2] if m[2] is not None else m[3]) for m in _AUTH_PARAM_RE.finditer(rest)}
        try:
            user, nonce, uri, response = params["username"], params["nonce"], params["uri"], params["response"]
        except KeyError:
            return False, False
        if user != self.user or params.get("realm") != self.realm or uri != request.raw_path:
            return False, False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the protocol's hash

        ha1 = md5(f"{self.user}:{self.realm}:{self._password}")
        ha2 = md5(f"{request.method}:{uri}")
        if self.qop:
            if params.get("qop") != "auth" or "nc" not in params or "cnonce" not in params:
                return False, False
            expected = md5(f"{ha1}:{nonce}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        else:
            expected = md5(f"{ha1}:{nonce}:{ha2}")
        if not secrets.compare_digest(expected, response):
            return False, False
        if nonce not in self._nonces:
            return False, True  # right password, nonce we no longer know: ask again with stale=true
        return True, False

    async def _guard(self, request: web.Request) -> web.Response | None:
        """Faults, then authentication; a response to send instead of handling the request, or None."""
        fault = await self._faults(request)
        if fault is not None:
            self._record(request, fault.status)
            return fault
        ok, stale = self._authorized(request)
        if not ok:
            self._record(request, 401)
            return web.Response(status=401, text="401 Unauthorized\n",
                                headers={"WWW-Authenticate": self._challenge(stale)})
        return None

    async def _handle_command(self, request: web.Request) -> web.Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        query = request.query
        if "cmd" not in query:
            self._record(request, 200)
            return web.Response(text="<html><body>berofos</body></html>\n", content_type="text/html")
        status, text = self._apply_command(query)
        self._record(request, status)
        return web.Response(status=status, text=text, content_type="text/html")

    def _apply_command(self, query) -> tuple[int, str]:
        try:
            cmd = int(query["cmd"])
        except ValueError:
            return 400, "bad cmd\n"
        if cmd == 5:
            port, value = query.get("p"), query.get("s")
            if port not in ("0", "1") or value not in ("0", "1"):
                return 400, "bad power port setting\n"
            self.state[f"5_p{port}"] = int(value)
            return 200, "OK\n"
        if cmd == 7:
            return 200, "OK\n"
        params = _COMMANDS.get(cmd)
        if params is None:
            return 400, f"unknown cmd {cmd}\n"
        changes: dict[str, Any] = {}
        for name, value in query.items():
            if name == "cmd":
                continue
            if name not in params:
                return 400, f"unknown parameter {name} for cmd {cmd}\n"
            key, kind = params[name]
            if kind == "bool":
                if value not in ("0", "1"):
                    return 400, f"{name} must be 0 or 1\n"
                changes[key] = int(value)
            elif kind == "port":
                if not value.isdigit() or not 1 <= int(value) <= 65535:
                    return 400, f"{name} must be 1 to 65535\n"
                changes[key] = value
            elif kind == "password":
                if len(value) > 15:
                    return 400, "password longer than 15\n"
                changes[key] = value
            else:
                changes[key] = value
        if not changes:
            return 400, "no parameter\n"
        if "4_mode" in changes and self.behaviour.ignore_mode:
            changes.pop("4_mode")
        if "apwd" in changes:
            self._password = changes.pop("apwd")
        self.state.update(changes)
        return 200, "OK\n"

    def render_config_txt(self) -> str:
        lines = [f"{MAGIC_KEY}={MAGIC_VALUE}"]
        for cmd, key, kind in _CONFIG_LINES:
            value = self.state[f"{cmd}_{key}"]
            if kind == "flag":
                value = "1" if value else "0"
            elif kind == "check":
                value = "checked" if value else ""
            overrides = self.behaviour.config_overrides or {}
            lines.append(f"{cmd}_{key}={overrides.get(f'{cmd}_{key}', value)}")
        return "\n".join(lines) + "\n"

    async def _handle_config(self, request: web.Request) -> web.Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        self._record(request, 200)
        return web.Response(text=self.render_config_txt(), content_type="text/plain")

    # --- control side (simulator only) ---------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "modedef": int(self.state["1_rm"]), "scenario": int(self.state["1_sz"]),
            "wdog": int(self.state["6_wen"]), "wdogdef": int(self.state["2_wen"]), "up": self.is_up,
            "behaviour": asdict(self.behaviour), "requests": len(self.requests),
            "mode_changes": len(self.mode_changes()),
        }

    async def _down_after_answer(self, seconds: float, reboot: bool) -> None:
        await asyncio.sleep(0.05)  # let the control answer leave first
        await self.down_for(seconds, reboot=reboot)

    async def _handle_sim_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def _handle_sim_control(self, request: web.Request) -> web.Response:
        """JSON body: any Behaviour field, ``mode``, ``modedef``, ``reboot: true``, ``down_for: seconds``."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            for name in ("delay", "ignore_mode", "fail_next", "drop_next", "flaky_rate"):
                if name in body:
                    setattr(self.behaviour, name, type(getattr(self.behaviour, name))(body[name]))
            if "mode" in body:
                self.mode = int(body["mode"])
            if "modedef" in body:
                self.state["1_rm"] = int(body["modedef"])
            if body.get("reboot"):
                self.reboot()
        except (ValueError, TypeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        if "down_for" in body:
            # answer first, then disappear
            task = asyncio.create_task(self._down_after_answer(float(body["down_for"]), bool(body.get("reboot"))))
            self._background.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._background.discard)
        return web.json_response(self.snapshot())


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m wazod.berofos.simulator",
                                description="A simulated beroNet berofos switch (HTTP protocol of libbnfos).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one (printed on stdout)")
    p.add_argument("--login", default=os.environ.get("BNFOS_SIM_LOGIN"),
                   help="user:password the device requires (or $BNFOS_SIM_LOGIN); none: no authentication")
    p.add_argument("--digest", action="store_true", help="ask for digest authentication instead of basic")
    p.add_argument("--no-qop", action="store_true", help="digest without qop (RFC 2069 style)")
    p.add_argument("--mode", type=int, choices=(0, 1), default=1, help="initial relay mode (default 1)")
    p.add_argument("--modedef", type=int, choices=(0, 1), default=1, help="default mode after a reboot (default 1)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    p.add_argument("--ignore-mode", action="store_true", help="answer 200 to mode changes without moving the relays")
    p.add_argument("--flaky", type=float, default=0.0, help="probability of an HTTP 500 on each request")
    args = p.parse_args(argv)
    if args.login is not None and ":" not in args.login:
        p.error("--login must be user:password")
    return args


async def _serve(args: argparse.Namespace) -> None:
    sim = BerofosSimulator(args.host, args.port, args.login, digest=args.digest, qop=not args.no_qop,
                           mode=args.mode, modedef=args.modedef,
                           behaviour=Behaviour(delay=args.delay, ignore_mode=args.ignore_mode,
                                               flaky_rate=args.flaky))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    sys.stdout.write(json.dumps({"listening": f"{sim.host}:{sim.port}", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
