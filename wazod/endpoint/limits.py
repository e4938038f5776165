"""What a client may cost the daemon before it has even authenticated.

Every connection holds a file descriptor, and the HA part needs descriptors
too (its state files, its probes' sockets and children). 1,100 idle half-sent
requests once exhausted the default soft limit of 1024: the endpoint stopped
answering, HA crashed on ``Too many open files`` while saving its state, and
asyncio logged ``socket.accept() out of system resource`` without end. So:

- **at most ``status.max_connections`` connections** are kept, further capped
  by the descriptor limit (``RLIMIT_NOFILE``, first raised to its hard limit)
  so that ``RESERVED_FDS`` always stay for the rest of the daemon. A new
  connection beyond the cap sheds an *idle* one (no request being handled):
  the oldest of the address holding the most connections, so one flooding
  address cannot push out the peer's probe; when none is idle the new one is
  closed instead;
- **``status.header_timeout``**: a connection that has not completed a request
  within that time after connecting, or after its previous answer, is closed
  (slowloris: trickling a header byte now and then does not keep it open);
- what is shed is counted and logged once per ``REPORT_INTERVAL``, never once
  per connection.

Connections are tracked by wrapping aiohttp's protocol (``Guard``) and by a
middleware marking the time a request is being handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from typing import Any

from aiohttp import web

from wazod.logsetup import get_logger

log = get_logger("status-limits")

RESERVED_FDS = 128  # descriptors kept for the rest of the daemon, whatever the endpoint does
BACKLOG = 64  # listen() backlog; asyncio may accept this many at once before shedding runs
MIN_CONNECTIONS = 4
REPORT_INTERVAL = 10.0


def raise_fd_soft_limit(target: int = 65536) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards the hard limit (never the hard limit itself); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def connection_cap(configured: int, soft_limit: int) -> int:
    """``configured``, lowered so that connections plus what asyncio may accept at once leave RESERVED_FDS free."""
    if soft_limit == resource.RLIM_INFINITY:
        return configured
    return max(MIN_CONNECTIONS, min(configured, soft_limit - RESERVED_FDS - 2 * BACKLOG))


class Guard(asyncio.Protocol):
    """aiohttp's protocol for one connection, seen by the limits: opened, closed, busy or idle since when."""

    def __init__(self, limits: ConnectionLimits, inner: asyncio.Protocol):
        self.limits = limits
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.address: str = "?"
        self.busy = 0
        self.idle_since = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.inner.connection_made(transport)
        self.limits.opened(self)

    def connection_lost(self, exc) -> None:
        self.limits.closed(self)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class ConnectionLimits:
    def __init__(self, max_connections: int, header_timeout: float):
        self.header_timeout = header_timeout
        soft, _ = raise_fd_soft_limit()
        self.cap = connection_cap(max_connections, soft)
        if self.cap < max_connections:
            log.warning("status.max_connections lowered to fit the file-descriptor limit",
                        configured=max_connections, used=self.cap, nofile=soft, reserved=RESERVED_FDS)
        self.open: dict[asyncio.Protocol, Guard] = {}  # aiohttp's protocol -> its guard
        self.shed: Counter[str] = Counter()  # why connections were closed, since the last report
        self._last_report = 0.0

    def protocol_factory(self, inner_factory):
        return lambda: Guard(self, inner_factory())

    # --- bookkeeping ------------------------------------------------------------------
    def opened(self, guard: Guard) -> None:
        self.open[guard.inner] = guard
        if len(self.open) > self.cap:
            victim = self._victim()
            (victim or guard).close()
            self._count("over max_connections" if victim else "over max_connections, none idle")

    def closed(self, guard: Guard) -> None:
        self.open.pop(guard.inner, None)

    def _victim(self) -> Guard | None:
        idle = [g for g in self.open.values() if not g.busy and not g.transport.is_closing()]
        if not idle:
            return None
        per_address = Counter(g.address for g in self.open.values())
        return min(idle, key=lambda g: (-per_address[g.address], g.idle_since))

    def _count(self, reason: str) -> None:
        self.shed[reason] += 1
        self._report()

    def _report(self) -> None:
        now = time.monotonic()
        if self.shed and now - self._last_report >= REPORT_INTERVAL:
            self._last_report = now
            log.warning("status endpoint closed connections", shed=dict(self.shed), open=len(self.open),
                        max_connections=self.cap)
            self.shed.clear()

    # --- requests ----------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler):
        guard = self.open.get(request.protocol)
        if guard is None:
            return await handler(request)
        guard.busy += 1
        try:
            return await handler(request)
        finally:
            guard.busy -= 1
            guard.idle_since = time.monotonic()

    def sweep(self, now: float | None = None) -> int:
        """Close connections idle (no complete request) for longer than ``header_timeout``."""
        now = time.monotonic() if now is None else now
        late = [g for g in self.open.values() if not g.busy and now - g.idle_since > self.header_timeout]
        for guard in late:
            guard.close()
            self._count("header_timeout")
        return len(late)

    async def run_sweeper(self) -> None:
        interval = min(1.0, max(0.05, self.header_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.sweep()
            self._report()  # what was shed since the last report, once the flood is over too

    def close_all(self) -> None:
        for guard in list(self.open.values()):
            guard.close()

    def snapshot(self) -> dict[str, Any]:
        return {"open": len(self.open), "max_connections": self.cap}
