"""Helpers for the health and status tests: a daemon Context on a temporary
state directory, test certificates, a copy of a harmless binary under a
telephony-like name, chronyd instances that never touch the clock, and a
small wazo-auth stand-in.

Owned by the health engineer; other tests may use them.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .util import free_port, kill_process_group, register_cleanup, unregister_cleanup, wait_for


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    """config.yml in ``tmp_path`` with ``node.state_dir`` and a missing ha.conf filled in."""
    data = dict(data)
    node = {"name": "pbx-test", "state_dir": str(tmp_path / "state"),
            "uuid_file": str(tmp_path / "no-uuid.sh"), **data.pop("node", {})}
    ha = {"ha_conf": str(tmp_path / "ha.conf"), "node_type": "master", "remote_address": "127.0.0.2",
          **data.pop("ha", {})}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"node": node, "ha": ha, **data}))
    return path


def quiet_health(**enabled: dict) -> dict:
    """A ``health`` section with every check off except those given (their settings)."""
    section: dict[str, Any] = {name: {"enabled": False}
                               for name in ("disk", "process", "ntp", "certificate", "postgresql", "logs")}
    for name, settings in enabled.items():
        section[name] = {"enabled": True, **settings}
    return section


def make_context(config_path: Path):
    """A Context like the supervisor's, on the config at ``config_path``."""
    from wazod.config import load_config
    from wazod.context import Context
    from wazod.events import open_emitter
    from wazod.state import StateStore
    from wazod.statusboard import StatusBoard

    loaded = load_config(config_path)
    config = loaded.config
    state = StateStore(config.node.state_dir)
    emitter = open_emitter(config)
    status = StatusBoard(state, config.node_name, config.role)
    return Context(loaded, emitter, state, status)


def events_named(ctx, *names: str) -> list[dict]:
    return [e for e in ctx.emitter.store.after(0, 100000) if e["name"] in names]


# --- certificates -----------------------------------------------------------

def make_certificate(path: Path, *, common_name: str, days: float, san: list[str] | None = None,
                     chain_days: float | None = None) -> Path:
    """A self-signed PEM certificate valid for ``days`` from now (negative: expired).

    ``chain_days``: also append a second (intermediate-like) certificate with
    that validity, to test chains.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def one(cn: str, valid_days: float, names: list[str] | None) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=400))
                   .not_valid_after(now + dt.timedelta(days=valid_days)))
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    pem = one(common_name, days, san)
    if chain_days is not None:
        pem += one("Test Intermediate CA", chain_days, None)
    path.write_bytes(pem)
    return path


def make_tls_server_files(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``ip`` (SAN IP address) and its key, as Wazo's server.crt/.key."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem_key = directory / "server.crt", directory / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pem_key.chmod(0o600)
    return crt, pem_key


# --- processes --------------------------------------------------------------

class NamedProcess:
    """A real process whose name is ``name``: a copy of /bin/sleep under that name."""

    def __init__(self, directory: Path, name: str):
        self.binary = directory / name
        shutil.copy("/bin/sleep", self.binary)
        self.proc: subprocess.Popen | None = None
        self._token = None

    def start(self) -> NamedProcess:
        self.proc = subprocess.Popen([str(self.binary), "600"], start_new_session=True)
        self._token = register_cleanup(self.stop)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc)
            self.proc = None
        unregister_cleanup(self._token)


# --- chronyd ----------------------------------------------------------------

def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chronyd:
    """chronyd with ``-x`` (never touches the system clock), private config, sockets and files.

    ``serve=True`` makes it an NTP server on 127.0.0.1:<port> (local clock,
    stratum 8); ``server_port`` makes it a client of that port.
    """

    def __init__(self, *, serve: bool = False, server_port: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="wzt-chrony-"))
        self.socket = str(self.dir / "chronyd.sock")
        self.port = free_udp_port() if serve else 0
        lines = ["cmdport 0", f"bindcmdaddress {self.socket}", f"pidfile {self.dir / 'chronyd.pid'}",
                 f"port {self.port}"]
        if serve:
            lines += ["local stratum 8", "allow 127.0.0.1", "bindaddress 127.0.0.1"]
        if server_port is not None:
            lines += [f"server 127.0.0.1 port {server_port} iburst minpoll -2 maxpoll -2"]
        (self.dir / "chrony.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self._token = None

    def start(self) -> Chronyd:
        with open(self.dir / "chronyd.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["chronyd", "-x", "-n", "-u", "root", "-f", str(self.dir / "chrony.conf")],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self._token = register_cleanup(self.stop)
        wait_for(lambda: os.path.exists(self.socket), timeout=10, message="chronyd socket not created")
        return self

    def tracking(self) -> str:
        return subprocess.run(["chronyc", "-n", "-h", self.socket, "tracking"], capture_output=True,
                              text=True, timeout=10).stdout

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc, signal.SIGTERM)
            self.proc = None
        unregister_cleanup(self._token)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- wazo-auth stand-in -----------------------------------------------------

class WazoAuthStandIn:
    """Answers ``HEAD /0.1/token/<token>`` as wazo-auth does: 204 for a valid token
    (403 when ``?scope=`` names an ACL the token lacks), 404 for an unknown one.
    Counts the requests it received, to observe caching."""

    def __init__(self, tls: tuple[Path, Path] | None = None):
        self.tokens: dict[str, set[str]] = {}
        self.requests: list[str] = []
        self.port = free_port()
        self.tls = tls  # (certificate, key): serve HTTPS like the real wazo-auth
        self._runner: web.AppRunner | None = None

    def issue(self, acls: set[str] | None = None) -> str:
        token = str(uuid.uuid4())
        self.tokens[token] = set(acls or ())
        return token

    async def _head(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        self.requests.append(token)
        if token not in self.tokens:
            return web.Response(status=404)
        scope = request.query.get("scope")
        if scope and scope not in self.tokens[token]:
            return web.Response(status=403)
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> WazoAuthStandIn:
        import ssl

        app = web.Application()
        app.router.add_route("HEAD", "/0.1/token/{token}", self._head)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
