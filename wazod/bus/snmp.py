"""SNMP notifications: every event, to every target of ``snmp.traps`` (pysnmp, asyncio).

Why it is built this way:

* Each target has its own cursor on the outbox (``snmp:<label>``, the target's
  whole identity: notification type, version, v3 user, host and port, e.g.
  ``snmp:inform v3 nms@10.0.0.9:162``; two targets on one host:port are two
  cursors, two status lines, two metrics) and
  its own task and SNMP engine: a receiver that is down, slow, or rejects
  our v3 keys delays only its own notifications, never the daemon, the MQTT
  publisher or the other targets. (One engine per target also keeps pysnmp
  from sending a notification to every target sharing a transport.)
* A new target starts with the events of this daemon run (daemon_started
  included) or, added by a reload, from the reload on; not the history.
* Traps are sent once. Informs wait for the receiver's answer, with pysnmp's
  retries; an inform that still fails (timeout, wrong key, unknown user) is
  logged, the target is marked failing in the status, and the same event is
  tried again later with backoff, so order is kept and nothing is skipped
  unless the outbox bound (``bus.outbox_max``) is reached.
* The node's SNMPv3 engine ID is kept in ``state_dir/snmp-engine-id`` (or set
  with ``snmp.engine_id``): a v3 trap receiver identifies the sender's users
  by it, so it must not change across restarts.
* The notification OIDs and varbinds are those of WAZOD-MIB (``wazod.bus.mib``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

from wazod.bus.mib import (
    EVENT_OBJECTS_OID,
    SNMP_TRAP_OID_OID,
    SYS_UPTIME_OID,
    notification_oid,
    severity,
)
from wazod.bus.outbox import OutboxReader, StoredEvent, store_path
from wazod.bus.publisher import backoff_delay
from wazod.fsutil import atomic_write_text
from wazod.logsetup import get_logger

log = get_logger("snmp")

DATA_MAX = 1024
ENGINE_ID_FILE = "snmp-engine-id"
ENTERPRISE_NUMBER = 32473  # see wazod.bus.mib


def engine_id(config) -> str:
    """The node's engine ID (hex): configured, else kept in state_dir, else made once (RFC 3411 format 5)."""
    if config.snmp.engine_id:
        return config.snmp.engine_id
    path = Path(config.node.state_dir) / ENGINE_ID_FILE
    with contextlib.suppress(OSError):
        value = path.read_text().strip().lower().removeprefix("0x")
        if value:
            return value
    value = f"{0x80000000 | ENTERPRISE_NUMBER:08x}05{secrets.token_hex(8)}"
    atomic_write_text(path, value + "\n", mode=0o600)
    return value


def varbinds(event: dict[str, Any], uptime_ticks: int) -> list[tuple[str, Any]]:
    """sysUpTime, snmpTrapOID and the wazodEvent objects of WAZOD-MIB."""
    from pysnmp.proto import rfc1902

    name = str(event.get("name", ""))
    data = json.dumps(event.get("data") or {}, separators=(",", ":"), default=str, ensure_ascii=False).encode()
    if len(data) > DATA_MAX:
        data = data[: DATA_MAX - 3] + "…".encode()
        data = data.decode("utf-8", "ignore").encode()  # never cut a character in half
    base = ".".join(map(str, EVENT_OBJECTS_OID))
    seq = event.get("seq") if isinstance(event.get("seq"), int) else 0
    return [
        (SYS_UPTIME_OID, rfc1902.TimeTicks(uptime_ticks % 2**32)),
        (SNMP_TRAP_OID_OID, rfc1902.ObjectIdentifier(notification_oid(name))),
        (f"{base}.1", rfc1902.OctetString(name[:64])),
        (f"{base}.2", rfc1902.OctetString(str(event.get("node", ""))[:64])),
        (f"{base}.3", rfc1902.OctetString(str(event.get("origin_uuid", ""))[:64])),
        (f"{base}.4", rfc1902.Unsigned32(seq % 2**32)),
        (f"{base}.5", rfc1902.OctetString(str(event.get("timestamp", ""))[:40])),
        (f"{base}.6", rfc1902.Integer(severity(name))),
        (f"{base}.7", rfc1902.OctetString(data)),
    ]


_AUTH = {"md5": "usmHMACMD5AuthProtocol", "sha": "usmHMACSHAAuthProtocol", "sha224": "usmHMAC128SHA224AuthProtocol",
         "sha256": "usmHMAC192SHA256AuthProtocol", "sha384": "usmHMAC256SHA384AuthProtocol",
         "sha512": "usmHMAC384SHA512AuthProtocol"}
_PRIV = {"des": "usmDESPrivProtocol", "aes": "usmAesCfb128Protocol", "aes192": "usmAesCfb192Protocol",
         "aes256": "usmAesCfb256Protocol"}


class TargetSender:
    """Sends the outbox, in order, to one target."""

    def __init__(self, notifier: SnmpNotifier, target, engine_hex: str, start_seq: int, label: str | None = None):
        self.notifier = notifier
        self.target = target
        self.label = label or target.label
        self.engine_hex = engine_hex
        self.reader = OutboxReader(store_path(notifier.ctx.config.state_dir), f"snmp:{self.label}")
        self.reader.adopt_if_new(f"snmp:{target.old_label}")  # the cursor of a wazod that keyed targets by host:port
        self.reader.start_after_if_new(start_seq)
        self.wake = asyncio.Event()
        self.ok: bool | None = None
        self.error: str | None = None
        self.sent = 0
        self._engine = None
        self._transport = None

    def _auth(self):
        from pysnmp.hlapi.v3arch import asyncio as hl

        t = self.target
        if t.version == "2c":
            return hl.CommunityData(t.community, mpModel=1)
        return hl.UsmUserData(t.user, t.auth_key, t.priv_key,
                              authProtocol=getattr(hl, _AUTH[t.auth_protocol]),
                              privProtocol=getattr(hl, _PRIV[t.priv_protocol]))

    async def _send(self, event: dict[str, Any]) -> str | None:
        """One notification; returns None when sent (trap) or acknowledged (inform), else the error."""
        from pysnmp.hlapi.v3arch import asyncio as hl
        from pysnmp.proto import rfc1902

        t = self.target
        if self._engine is None:
            self._engine = hl.SnmpEngine(snmpEngineID=rfc1902.OctetString(hexValue=self.engine_hex))
            self._transport = await hl.UdpTransportTarget.create((t.host, t.port), timeout=t.timeout,
                                                                 retries=t.retries)
        error_indication, error_status, error_index, _ = await hl.send_notification(
            self._engine, self._auth(), self._transport, hl.ContextData(), t.notification,
            *varbinds(event, self.notifier.uptime_ticks()), lookupMib=False,
        )
        if error_indication:
            return str(error_indication)
        if error_status:
            return f"{error_status.prettyPrint()} at {error_index}"
        return None

    def _report(self, ok: bool, error: str | None, event: StoredEvent | None = None) -> None:
        if (ok, error) == (self.ok, self.error):
            return
        self.ok, self.error = ok, error
        if ok:
            log.info("snmp target reachable again" if event else "snmp target ok", target=self.label)
        else:
            log.error("snmp notification failed", target=self.label, version=self.target.version,
                      notification=self.target.notification, error=error,
                      event_name=event.name if event else None, seq=event.seq if event else None)
        self.notifier.publish_status()

    async def run(self) -> None:
        """Send in order until stopping; then send what is pending (daemon_stopping...) for drain_timeout."""
        ctx = self.notifier.ctx
        loop = asyncio.get_running_loop()
        attempt = 0
        deadline: float | None = None
        try:
            while not self.notifier.restarting:
                if ctx.stopping.is_set() and deadline is None:
                    deadline = loop.time() + ctx.config.bus.drain_timeout
                self.reader.enforce_bound(ctx.config.bus.outbox_max)
                batch = self.reader.pending(100)
                if not batch:
                    if deadline is not None:
                        return
                    await self.notifier.sleep(self.wake, ctx.config.bus.poll_interval)
                    continue
                for stored in batch:
                    if self.notifier.restarting or (deadline is not None and loop.time() > deadline):
                        return
                    try:
                        error = await self._send(json.loads(stored.body))
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # a bad address, a socket error: report, retry later
                        error = f"{type(e).__name__}: {e}"
                        self._engine = None
                    if error is None:
                        self.reader.ack(stored.seq)
                        self.sent += 1
                        self._report(True, None, stored if self.ok is False else None)
                        attempt = 0
                        continue
                    self._report(False, error, stored)
                    if ctx.stopping.is_set():
                        return  # no retries while stopping: at next start
                    delay = backoff_delay(attempt, 1.0, 60.0)
                    attempt += 1
                    await self.notifier.sleep(None, delay)
                    break
        finally:
            self.reader.close()
            if self._engine is not None:
                with contextlib.suppress(Exception):
                    self._engine.close_dispatcher()


class SnmpNotifier:
    """Component ``snmp``: one ``TargetSender`` per target of ``snmp.traps``."""

    name = "snmp"

    def __init__(self, ctx):
        self.ctx = ctx
        self.started = time.monotonic()
        self.engine_hex = engine_id(ctx.config)
        self.senders: list[TargetSender] = []
        self._restart = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.agent = None
        self._agent_settings = None
        # a target never seen before starts with the events from the daemon's start on (daemon_started
        # included), not with the whole history
        self._start_seq = ctx.emitter.store.last_seq()
        ctx.registry["snmp"] = self

    @property
    def restarting(self) -> bool:
        return self._restart.is_set()

    def uptime_ticks(self) -> int:
        return int((time.monotonic() - self.started) * 100)

    def _poke(self, *_: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for sender in self.senders:
                loop.call_soon_threadsafe(sender.wake.set)

    async def sleep(self, wake: asyncio.Event | None, seconds: float) -> None:
        waiters = [asyncio.ensure_future(self.ctx.stopping.wait()), asyncio.ensure_future(self._restart.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if wake is not None:
            wake.clear()

    def publish_status(self) -> None:
        self.ctx.status.update(snmp={
            "engine_id": self.engine_hex,
            "targets": {s.label: {"ok": s.ok, "error": s.error, "sent": s.sent} for s in self.senders},
        })

    async def reload(self) -> None:
        self._start_seq = self.ctx.emitter.store.last_seq()  # targets added now start from here
        self._restart.set()

    def _start_agent(self) -> None:
        """(Re)start the optional agent as configured; a failure is logged, never fatal."""
        from wazod.bus.agent import StatusAgent

        settings = self.ctx.config.snmp.agent
        if self.agent is not None and settings == self._agent_settings:
            return
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        self._agent_settings = settings
        if not settings.enabled:
            return
        agent = StatusAgent(self.ctx)
        try:
            agent.start()
        except Exception as e:
            log.error("snmp agent cannot start", listen=settings.listen, error=f"{type(e).__name__}: {e}")
            agent.stop()
            return
        self.agent = agent

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        unsubscribe = self.ctx.emitter.subscribe(self._poke)
        log.info("snmp notifications", engine_id=self.engine_hex,
                 targets=self.ctx.config.snmp.labels())
        try:
            while not self.ctx.stopping.is_set():
                self._restart.clear()
                self._start_agent()
                snmp = self.ctx.config.snmp
                self.senders = [TargetSender(self, t, self.engine_hex, self._start_seq, label)
                                for t, label in zip(snmp.traps, snmp.labels(), strict=True)]
                self.publish_status()
                tasks = [asyncio.create_task(s.run(), name=f"snmp:{s.label}") for s in self.senders]
                stop = asyncio.ensure_future(self.ctx.stopping.wait())
                restart = asyncio.ensure_future(self._restart.wait())
                try:
                    await asyncio.wait([stop, restart, *tasks], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    restart.cancel()
                    for task in tasks:
                        if task.done() and not task.cancelled() and task.exception():
                            log.error("snmp sender crashed", error=repr(task.exception()))
                    # the senders stop at their next check (after draining on stop); a stuck inform is cancelled
                    grace = self.ctx.config.bus.drain_timeout + 1 if self.ctx.stopping.is_set() else 2
                    done, pending = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
                    for task in pending:
                        task.cancel()
                    if pending:
                        await asyncio.wait(pending, timeout=2)
                if not tasks:
                    continue
                if not self.ctx.stopping.is_set() and not self._restart.is_set():
                    await self.sleep(None, 5.0)  # a crashed sender: restart them all, gently
        finally:
            unsubscribe()
            if self.agent is not None:
                self.agent.stop()
                self.agent = None


def component(ctx):
    if not ctx.config.snmp.traps and not ctx.config.snmp.agent.enabled:
        return None
    return SnmpNotifier(ctx)
