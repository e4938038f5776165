"""Probes of the peer, run together in rounds: ICMP echo, TCP connect, SIP OPTIONS, the peer's wazod.

Why several transmissions per round: a round must survive heavy packet loss
without taking long when the peer is really gone. Each probe sends a request
every ``retransmit_interval`` (an echo request, an OPTIONS retransmission, a
new TCP connect) until the first good answer or the round's deadline, so a
healthy peer costs one packet per probe per round, and a round at 30 % loss
in each direction fails only if all ~9 exchanges fail (about 0.2 %).

Each probe returns a ``ProbeResult`` whose ``reachable`` says whether the host
answered anything at all: an ICMP port unreachable to the SIP request means
"host alive, Asterisk dead" (the case Wazo's ping-only check missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field

from icmplib import AsyncSocket, ICMPRequest, ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError, TimeoutExceeded

from wazod.ha.policy import ProbeResult, judge
from wazod.logsetup import get_logger

log = get_logger("ha.probes")


async def resolve(host: str) -> str:
    """An IP address for ``host`` (literal addresses are returned as they are)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    return infos[0][4][0]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- ICMP -----------------------------------------------------------------------
async def icmp_probe(host: str, *, timeout: float, spacing: float, count: int, name: str = "icmp") -> ProbeResult:
    """Echo requests every ``spacing`` s (at most ``count``) until a reply or ``timeout``.

    Raw socket as root; otherwise the kernel's unprivileged ICMP sockets
    (net.ipv4.ping_group_range), as icmplib offers.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    try:
        address = await asyncio.wait_for(resolve(host), timeout)
    except (TimeoutError, OSError) as e:
        return ProbeResult(name, host, False, False, detail=f"cannot resolve: {e}")
    v6 = ipaddress.ip_address(address).version == 6
    privileged = os.geteuid() == 0
    try:
        sock = (ICMPv6Socket if v6 else ICMPv4Socket)(privileged=privileged)
    except ICMPLibError as e:
        return ProbeResult(name, host, False, False, detail=f"no ICMP socket: {e}")
    asock = AsyncSocket(sock)
    ident = random.randrange(1, 0xFFFF)
    echo_reply = 129 if v6 else 0
    sent: dict[int, float] = {}
    errors: list[str] = []

    async def receive() -> float | None:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                reply = await asock.receive(None, remaining)
            except TimeoutExceeded:
                return None
            except ICMPLibError as e:
                errors.append(str(e))
                return None
            if reply.type != echo_reply or reply.sequence not in sent:
                continue
            if privileged and reply.id != ident:
                continue  # a raw socket sees every echo reply of the host
            return max(0.0, reply.time - sent[reply.sequence])

    receiver = asyncio.create_task(receive())
    try:
        seq = 0
        while seq < count and not receiver.done() and loop.time() < deadline:
            request = ICMPRequest(address, ident, seq, payload_size=16)
            try:
                asock.send(request)
                sent[seq] = request.time
            except ICMPLibError as e:  # EPERM from a firewall, no route...
                errors.append(str(e) or type(e).__name__)
            seq += 1
            await asyncio.wait({receiver}, timeout=max(0.0, min(spacing, deadline - loop.time())))
        rtt = await receiver
    finally:
        receiver.cancel()
        with contextlib.suppress(Exception):
            asock.close()
    if rtt is not None:
        return ProbeResult(name, host, True, True, rtt=rtt, sent=len(sent))
    detail = f"no echo reply to {len(sent)} request(s)"
    if errors:
        detail += f" ({errors[-1]})"
    return ProbeResult(name, host, False, False, sent=len(sent), detail=detail)


# --- SIP ------------------------------------------------------------------------
class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, call_id: str):
        self.call_id = call_id.encode()
        self.answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self.refused = False
        self.answered_at = 0.0

    def datagram_received(self, data: bytes, addr) -> None:
        if data.startswith(b"SIP/2.0 ") and self.call_id in data and not self.answer.done():
            self.answered_at = time.monotonic()
            self.answer.set_result(data.split(b"\r\n", 1)[0].decode(errors="replace"))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True  # ICMP port unreachable: the host is up, nothing listens


def sip_options(host: str, port: int, local: tuple[str, int], call_id: str, branch: str, tag: str) -> bytes:
    lhost, lport = local
    if ":" in lhost:
        lhost = f"[{lhost}]"
    rhost = f"[{host}]" if ":" in host else host
    lines = [
        f"OPTIONS sip:{rhost}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {lhost}:{lport};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:wazod@{lhost}>;tag={tag}",
        f"To: <sip:{rhost}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:wazod@{lhost}:{lport}>",
        "Accept: application/sdp",
        "User-Agent: wazod-ha",
        "Content-Length: 0",
        "", "",
    ]
    return "\r\n".join(lines).encode()


async def sip_probe(host: str, port: int, *, timeout: float, spacing: float, count: int) -> ProbeResult:
    """SIP OPTIONS over UDP, retransmitted every ``spacing`` s; any SIP response means Asterisk is alive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    target = f"{host}:{port}"
    try:
        address = await asyncio.wait_for(resolve(host), timeout)
    except (TimeoutError, OSError) as e:
        return ProbeResult("sip", target, False, False, detail=f"cannot resolve: {e}")
    call_id = f"{uuid.uuid4().hex}@wazod"
    try:
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _SipProtocol(call_id), remote_addr=(address, port))
    except OSError as e:
        return ProbeResult("sip", target, False, False, detail=f"cannot send: {e.strerror or e}")
    first_sent = None
    sent = 0
    try:
        packet = sip_options(address, port, transport.get_extra_info("sockname")[:2], call_id,
                             "z9hG4bK" + uuid.uuid4().hex[:16], uuid.uuid4().hex[:8])
        while sent < count and not proto.answer.done() and loop.time() < deadline:
            transport.sendto(packet)
            if first_sent is None:
                first_sent = time.monotonic()
            sent += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.answer),
                                       max(0.0, min(spacing, deadline - loop.time())))
        if not proto.answer.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.answer), max(0.0, deadline - loop.time()))
    finally:
        transport.close()
    if proto.answer.done():
        return ProbeResult("sip", target, True, True, rtt=proto.answered_at - (first_sent or proto.answered_at),
                           sent=sent, detail=proto.answer.result())
    if proto.refused:
        return ProbeResult("sip", target, False, True, sent=sent, detail="port unreachable: nothing listens")
    return ProbeResult("sip", target, False, False, sent=sent, detail=f"no answer to {sent} OPTIONS")


class _WatchProtocol(asyncio.DatagramProtocol):
    """Receives the answers of every OPTIONS a :class:`SipWatcher` sent, however late they come."""

    def __init__(self, watcher: SipWatcher):
        self.watcher = watcher

    def datagram_received(self, data: bytes, addr) -> None:
        if data.startswith(b"SIP/2.0 "):
            self.watcher._answer(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.watcher._refused()


class SipWatcher:
    """SIP OPTIONS across rounds: a late answer is a live Asterisk.

    PJSIP under load answers OPTIONS in seconds, not milliseconds. One round
    (0.45 s by default) is the budget of "does the host answer at all"; the SIP
    verdict gets its own, ``budget`` seconds (``ha.sip_timeout``): every round
    sends a new OPTIONS on one long-lived socket, and an answer to any of them,
    even one sent seconds ago, proves Asterisk alive. Until the oldest
    unanswered OPTIONS is older than the budget the probe is ``pending``
    (neither proof of life nor of death); an ICMP port unreachable (nothing
    listens: Asterisk died) is a verdict at once, and stays one until an
    answer comes (the kernel sends about one port unreachable a second).
    """

    KEEP = 256  # most transactions remembered for matching late answers

    def __init__(self, port: int, budget: float):
        self.port = port
        self.budget = budget
        self._transport: asyncio.DatagramTransport | None = None
        self._address: str | None = None
        self._sent: dict[bytes, float] = {}  # Call-ID -> monotonic time of the first transmission
        self._silent_since: float | None = None  # first OPTIONS not answered since the last answer
        self._answered_at = float("-inf")
        self._answer_rtt: float | None = None
        self._answer_line = ""
        self._refused_at = float("-inf")
        self._wake: asyncio.Event | None = None

    def _answer(self, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"call-id", b"i"):
                call_id = value.strip()
                break
        else:
            return
        sent = self._sent.get(call_id)
        if sent is None:
            return
        now = time.monotonic()
        self._answered_at = now
        self._answer_rtt = now - sent
        self._answer_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        self._silent_since = None
        for cid, t in list(self._sent.items()):  # older transactions are moot: Asterisk is alive
            if t <= sent:
                del self._sent[cid]
        if self._wake is not None:
            self._wake.set()

    def _refused(self) -> None:
        self._refused_at = time.monotonic()
        if self._wake is not None:
            self._wake.set()

    async def _endpoint(self, address: str) -> asyncio.DatagramTransport:
        if self._transport is not None and (self._address != address or self._transport.is_closing()):
            self.close()
        if self._transport is None:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _WatchProtocol(self), remote_addr=(address, self.port))
            self._address = address
        return self._transport

    async def probe(self, address: str, *, timeout: float, spacing: float, count: int) -> ProbeResult:
        """One round's look: a new OPTIONS (retransmitted within the round), then the SIP verdict."""
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        deadline = loop.time() + timeout
        target = f"{address}:{self.port}"
        self._wake = asyncio.Event()
        try:
            transport = await self._endpoint(address)
        except OSError as e:
            return ProbeResult("sip", target, False, False, detail=f"cannot send: {e.strerror or e}")
        call_id = f"{uuid.uuid4().hex}@wazod"
        packet = sip_options(address, self.port, transport.get_extra_info("sockname")[:2], call_id,
                             "z9hG4bK" + uuid.uuid4().hex[:16], uuid.uuid4().hex[:8])
        self._sent[call_id.encode()] = start
        if self._silent_since is None:
            self._silent_since = start
        while len(self._sent) > self.KEEP:
            del self._sent[next(iter(self._sent))]
        sent = 0
        while sent < count and loop.time() < deadline and not self._wake.is_set():
            try:
                transport.sendto(packet)
            except OSError:
                pass
            sent += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(spacing, deadline - loop.time())))
        if not self._wake.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - loop.time()))
        now = time.monotonic()
        if self._answered_at >= start:
            rtt = self._answer_rtt
            late = f" (answer {rtt:.2f} s after its OPTIONS)" if rtt is not None and rtt > timeout else ""
            return ProbeResult("sip", target, True, True, rtt=rtt, sent=sent, detail=self._answer_line + late)
        if self._refused_at >= start:
            return ProbeResult("sip", target, False, True, sent=sent, detail="port unreachable: nothing listens")
        if self._refused_at > self._answered_at:
            # refused since the last answer: dead until it answers again. The kernel rate-limits port
            # unreachables (about one a second per peer), so most rounds get neither answer nor refusal;
            # taking those as "pending" would hide a dead Asterisk for the whole budget
            return ProbeResult("sip", target, False, False, sent=sent,
                               detail=f"port unreachable {now - self._refused_at:.1f} s ago, no answer since")
        silent = now - (self._silent_since if self._silent_since is not None else start)
        if silent < self.budget:
            return ProbeResult("sip", target, False, False, sent=sent, pending=True,
                               detail=f"no answer yet ({silent:.1f} s of the {self.budget:g} s SIP budget)")
        return ProbeResult("sip", target, False, False, sent=sent,
                           detail=f"no answer to any OPTIONS for {silent:.1f} s")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._address = None


# --- TCP ------------------------------------------------------------------------
async def tcp_probe(host: str, port: int, *, timeout: float, spacing: float) -> ProbeResult:
    """TCP connects, a new attempt every 2 x ``spacing`` s (the kernel's SYN retry is 1 s: too slow)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    name = f"tcp:{port}"
    attempts: set[asyncio.Task] = set()
    refused = False
    last_error = ""

    async def attempt() -> float:
        t0 = loop.time()
        _reader, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return loop.time() - t0

    sent = 0
    try:
        while loop.time() < deadline:
            attempts.add(asyncio.create_task(attempt()))
            sent += 1
            done, _ = await asyncio.wait(attempts, timeout=max(0.0, min(2 * spacing, deadline - loop.time())),
                                         return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                attempts.discard(t)
                if t.exception() is None:
                    return ProbeResult(name, f"{host}:{port}", True, True, rtt=t.result(), sent=sent)
                exc = t.exception()
                if isinstance(exc, ConnectionRefusedError):
                    refused = True
                last_error = str(exc) or type(exc).__name__
            if refused:
                break
    finally:
        for t in attempts:
            t.cancel()
        for t in attempts:
            with contextlib.suppress(BaseException):
                await t
    if refused:
        return ProbeResult(name, f"{host}:{port}", False, True, sent=sent, detail="connection refused")
    return ProbeResult(name, f"{host}:{port}", False, False, sent=sent,
                       detail=f"no connection ({last_error})" if last_error else "no connection")


# --- peer wazod -------------------------------------------------------------------
def read_token(path: str | None) -> str | None:
    """The first line of the peer's token file (``ha.peer_token_file``), or None."""
    if not path:
        return None
    try:
        with open(path) as f:
            return f.readline().strip() or None
    except OSError as e:
        log.warning("peer token file unreadable", path=path, error=e.strerror)
        return None


async def peer_probe(url: str, *, timeout: float, token: str | None = None) -> ProbeResult:
    """GET the other wazod's /health: ok when it answers ``{"status": "ok"|"degraded"}`` (not critical).

    Beyond loopback the status endpoint wants ``X-Auth-Token``; a 401 still
    proves the peer alive (reachable) but is not a good answer.
    """
    import aiohttp

    from wazod.secrets import mask_text

    shown = mask_text(url)
    headers = {"X-Auth-Token": token} if token else {}
    t0 = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers=headers) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
                rtt = time.monotonic() - t0
                status = body.get("status") if isinstance(body, dict) else None
                # "degraded" is a live peer with a warning (NTP, a certificate expiring in 20 days): up
                ok = resp.status == 200 and status in ("ok", "degraded")
                return ProbeResult("peer", shown, ok, True, rtt=rtt, sent=1,
                                   detail=f"HTTP {resp.status}" + (f" status {status}" if status else ""))
    except aiohttp.ClientConnectorError as e:
        refused = isinstance(getattr(e, "os_error", None), ConnectionRefusedError)
        return ProbeResult("peer", shown, False, refused, sent=1,
                           detail=mask_text(f"cannot connect: {e.strerror or e}"))
    except (TimeoutError, aiohttp.ClientError, ValueError) as e:
        return ProbeResult("peer", shown, False, False, sent=1,
                           detail=mask_text(f"{type(e).__name__}: {e}".strip(": ")))


# --- rounds -----------------------------------------------------------------------
@dataclass
class RoundResult:
    started: float  # monotonic
    ended: float
    good: bool
    reason: str
    results: list[ProbeResult] = field(default_factory=list)
    witnesses: list[ProbeResult] = field(default_factory=list)
    unresolved: bool = False  # the target's name did not resolve: this node's problem

    @property
    def witness_ok(self) -> bool | None:
        if not self.witnesses:
            return None
        return any(w.ok for w in self.witnesses)

    def summary(self) -> dict:
        return {
            "good": self.good, "reason": self.reason,
            "probes": [r.to_dict() for r in self.results],
            "witnesses": [w.to_dict() for w in self.witnesses],
        }


class Prober:
    """Runs the configured probes of one target (and the witnesses) as one round.

    Long-lived (the daemon keeps one per watch): the SIP probe's answers may
    arrive rounds later (:class:`SipWatcher`). ``close()`` when done.
    """

    def __init__(self, ha, target: str, probes: list[str], *, witnesses: list[str] | None = None,
                 sip_budget: float | None = None):
        self.ha = ha
        self.target = target
        self.probes = list(probes)
        self.witnesses = list(witnesses or [])
        self.sip = SipWatcher(ha.sip_port, ha.sip_timeout if sip_budget is None else sip_budget)

    def _coros(self, address: str, timeout: float) -> list:
        ha = self.ha
        spacing, count = ha.retransmit_interval, ha.icmp_count
        coros = []
        for probe in self.probes:
            if probe == "icmp":
                coros.append(icmp_probe(address, timeout=timeout, spacing=spacing, count=count))
            elif probe == "sip":
                coros.append(self.sip.probe(address, timeout=timeout, spacing=spacing, count=count))
            elif probe == "tcp":
                coros += [tcp_probe(address, p, timeout=timeout, spacing=spacing) for p in ha.tcp_ports]
            elif probe == "peer" and ha.peer_url:
                coros.append(peer_probe(ha.peer_url.replace("{remote_address}", self.target), timeout=timeout,
                                        token=read_token(ha.peer_token_file)))
        return coros

    async def round(self) -> RoundResult:
        timeout = self.ha.effective_round_timeout
        started = time.monotonic()
        wit = [icmp_probe(w, timeout=timeout, spacing=self.ha.retransmit_interval, count=self.ha.icmp_count,
                          name="witness") for w in self.witnesses]
        try:
            address = self.target if _is_literal(self.target) else await asyncio.wait_for(resolve(self.target),
                                                                                         timeout)
        except (TimeoutError, OSError) as e:
            # this node's problem (DNS down, a typo): says nothing about the peer
            error = f"cannot resolve {self.target}: {getattr(e, 'strerror', None) or e or 'timeout'}"
            witnesses = list(await asyncio.gather(*wit))
            return RoundResult(started, time.monotonic(), False, "unresolved",
                               [ProbeResult("resolve", self.target, False, False, detail=error)], witnesses,
                               unresolved=True)
        main = self._coros(address, max(0.0, timeout - (time.monotonic() - started)))
        outcome = await asyncio.gather(*main, *wit)
        results, witnesses = list(outcome[: len(main)]), list(outcome[len(main):])
        good, reason = judge(self.ha.policy, results)
        return RoundResult(started, time.monotonic(), good, reason, results, witnesses)

    def close(self) -> None:
        self.sip.close()
