"""Helpers for the event-output tests: a node config, an MQTT collector, a real snmptrapd.

Why here: the bus and SNMP tests (and the demo, later) need the same three
things: a wazod config pointing at a scratch state_dir and a test broker, a
subscriber that records what really reached the broker, and Debian's
snmptrapd on a loopback port whose output can be parsed.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .util import free_port, kill_process_group, register_cleanup, unregister_cleanup, wait_for

__all__ = ["write_node_config", "MqttCollector", "Snmptrapd", "Notification", "base_mib_dir"]


def write_node_config(directory: Path, name: str = "pbx1", **sections: Any) -> Path:
    """A config.yml for one node in ``directory`` (state in directory/state, HA disabled)."""
    directory.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "node": {"name": name, "state_dir": str(directory / "state"), "uuid_file": str(directory / "xivo_uuid.sh"),
                 "stop_timeout": 10},
        "ha": {"node_type": "disabled", "remote_address": None, "ha_conf": str(directory / "ha.conf")},
        "logging": {"level": "info"},
    }
    for key, value in sections.items():
        doc.setdefault(key, {}).update(value)
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttCollector:
    """Subscribes to ``topic_filter`` on a real broker and records every message, in order.

    Reconnects by itself (the broker may be restarted by the test) with a
    persistent session, so QoS 1 messages queued by the broker while it was
    away are not missed.
    """

    def __init__(self, host: str, port: int, topic_filter: str = "#", client_id: str | None = None):
        self.host, self.port, self.topic_filter = host, port, topic_filter
        self.client_id = client_id or f"collector-{os.getpid()}-{id(self)}"
        self.messages: list[Received] = []
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> MqttCollector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id,
                                          clean_session=False) as client:
                    await client.subscribe(self.topic_filter, qos=1)
                    self._subscribed.set()
                    async for msg in client.messages:
                        self.messages.append(Received(str(msg.topic), bytes(msg.payload), bool(msg.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.messages if "/events/" in m.topic]

    def last(self, suffix: str) -> Received | None:
        for m in reversed(self.messages):
            if m.topic.endswith(suffix):
                return m
        return None


# --- SNMP ----------------------------------------------------------------------

def base_mib_dir() -> Path | None:
    """A directory holding SNMPv2-SMI/TC/CONF for net-snmp, or None.

    Debian's snmp package ships no IETF MIBs (they are in non-free
    snmp-mibs-downloader); erlang-snmp ships the ones a MIB module imports.
    """
    candidates = [Path("/usr/share/snmp/mibs/ietf"), Path("/usr/share/snmp/mibs"), Path("/var/lib/snmp/mibs/ietf")]
    candidates += sorted(Path("/usr/lib/erlang/lib").glob("snmp-*/mibs"))
    for d in candidates:
        if any((d / f"SNMPv2-SMI{ext}").exists() for ext in ("", ".txt", ".mib")):
            return d
    return None


@dataclass
class Notification:
    """One notification as snmptrapd printed it (numeric OIDs)."""

    header: str  # e.g. "TRAP2, SNMP v2c, community public" or "INFORM, SNMP v3, user bob, context "
    varbinds: dict[str, str] = field(default_factory=dict)

    @property
    def trap_oid(self) -> str:
        return self.varbinds.get(".1.3.6.1.6.3.1.1.4.1.0", "").removeprefix("OID: ")

    def value(self, oid_suffix: str) -> str | None:
        for oid, value in self.varbinds.items():
            if oid.endswith(oid_suffix):
                return value
        return None


class Snmptrapd:
    """Debian's snmptrapd on 127.0.0.1:<free port>, logging every notification to a file.

    ``users`` are (user, auth_key, priv_key, engine_id or None): with an engine
    ID the user is for that sender's traps (the sender is authoritative);
    without, for informs (snmptrapd is authoritative).
    """

    def __init__(self, users: list[tuple[str, str, str, str | None]] = ()):
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="wzt-snmptrapd-"))
        self.out = self.base / "traps.log"
        conf = ["disableAuthorization yes"]
        for user, auth, priv, engine in users:
            prefix = f"createUser -e 0x{engine} " if engine else "createUser "
            conf.append(f"{prefix}{user} SHA {auth} AES {priv}")
        (self.base / "snmptrapd.conf").write_text("\n".join(conf) + "\n")
        (self.base / "mibs").mkdir()
        self.proc: subprocess.Popen | None = None
        self._token = register_cleanup(self.stop)

    def start(self) -> Snmptrapd:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SNMP_PERSISTENT_DIR": str(self.base / "persist"),
               "SNMPCONFPATH": str(self.base), "MIBS": "", "MIBDIRS": str(self.base / "mibs")}
        with open(self.out, "ab") as fh:
            self.proc = subprocess.Popen(
                ["snmptrapd", "-f", "-Lo", "-n", "-C", "-c", str(self.base / "snmptrapd.conf"), "-On",
                 "-F", "BEGIN %P\n%V\x1f%v\nEND\n", f"udp:127.0.0.1:{self.port}"],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        wait_for(lambda: "NET-SNMP version" in self.out.read_text(errors="replace"), timeout=10,
                 message=f"snmptrapd did not start: {self.out.read_text(errors='replace')[-500:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc, sig=signal.SIGTERM)
            self.proc = None
        self._final = self.log_text()  # what was received stays readable after the stop
        unregister_cleanup(self._token)
        shutil.rmtree(self.base, ignore_errors=True)

    def notifications(self) -> list[Notification]:
        text = self.log_text()
        found = []
        for block in text.split("BEGIN ")[1:]:
            if "\nEND" not in block:
                continue
            header, _, rest = block.partition("\n")
            body = rest.split("\nEND", 1)[0]
            n = Notification(header.strip())
            for item in body.split("\x1f"):
                oid, sep, value = item.partition(" = ")
                if sep:
                    n.varbinds[oid.strip()] = value.strip()
            found.append(n)
        return found

    def log_text(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else getattr(self, "_final", "")

    def __enter__(self) -> Snmptrapd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- TLS and authentication ----------------------------------------------------

def make_tls_files(directory: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    from .util import run

    directory.mkdir(parents=True, exist_ok=True)
    d = {k: directory / f"{k}.pem" for k in ("ca", "ca_key", "server", "server_key", "client", "client_key")}
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wazod test CA",
         "-keyout", str(d["ca_key"]), "-out", str(d["ca"])])
    for who, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        csr = directory / f"{who}.csr"
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=wazod test {who}",
             "-keyout", str(d[f"{who}_key"]), "-out", str(csr), *extra])
        ext = directory / f"{who}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if who == "server" else "extendedKeyUsage=clientAuth\n")
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(d["ca"]), "-CAkey", str(d["ca_key"]),
             "-CAcreateserial", "-days", "2", "-out", str(d[who]), "-extfile", str(ext)])
    return d


def make_secure_mosquitto(tls: dict[str, Path], users: dict[str, str]):
    """A harness Mosquitto that wants TLS with a client certificate, and a user name + password."""
    from .mqtt import Mosquitto
    from .util import run

    class SecureMosquitto(Mosquitto):
        def _write_conf(self) -> None:
            super()._write_conf()
            passwd = self.base / "passwd"
            passwd.write_text("")
            for user, password in users.items():
                run(["mosquitto_passwd", "-b", str(passwd), user, password])
            text = self.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
            text += "\n".join([
                f"password_file {passwd}", f"cafile {tls['ca']}", f"certfile {tls['server']}",
                f"keyfile {tls['server_key']}", "require_certificate true", ""])
            self.conf.write_text(text)

    return SecureMosquitto()
