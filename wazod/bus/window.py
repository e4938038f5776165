"""What the outputs that confirm each message share: a sliding window of sends, and reconnection delays.

Both brokers wazod publishes to (MQTT with QoS 1 PUBACKs, Wazo's RabbitMQ
with publisher confirms) confirm each message on its own. The outbox cursor
of an output may only move over a prefix of confirmed events, so a broker
that dies mid-window costs re-sends (subscribers see a duplicate ``seq``),
never a hole and never a reordering.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable

from wazod.bus.outbox import OutboxReader, StoredEvent


async def session_unless_stopped(session_coro, stopping: asyncio.Event, connected: Callable[[], bool]) -> None:
    """Run one broker session; a stop while it is still connecting (a blackholed broker) cancels it at once.

    Once connected, the session is awaited to its end: it drains what is pending and says goodbye itself.
    """
    session = asyncio.ensure_future(session_coro)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not session.done() and not connected():
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
            return
        await session
    finally:
        stop.cancel()
        if not session.done():
            session.cancel()


def backoff_delay(attempt: int, low: float, high: float) -> float:
    """Full jitter: uniform in [low, min(high, low * 2**attempt)], so fifty nodes do not reconnect in step."""
    return random.uniform(low, min(high, low * (2 ** min(attempt, 30))))


class Window:
    """The in-flight sends, in seq order; the cursor moves over the confirmed prefix.

    Why a window rather than batches: a batch waits for its slowest
    confirmation before the next starts; a window keeps ``size`` messages in
    flight at all times, so the broker's round trip is paid once, not once
    per batch. ``send(event)`` returns an awaitable that completes when the
    broker confirmed that event, and raises when it did not.
    """

    ACK_EVERY = 64  # cursor writes are batched: a crash re-sends at most this many (at least once)

    def __init__(self, reader: OutboxReader, send: Callable[[StoredEvent], Awaitable[object]], size: int,
                 on_done: Callable[[asyncio.Future], None], failure: type[Exception] = ConnectionError):
        self.reader = reader
        self.send = send
        self.on_done = on_done
        self.failure = failure  # raised for a send cancelled under us (the connection went away)
        self.size = size
        self.flight: deque[tuple[int, asyncio.Future]] = deque()
        self.queued = reader.cursor() or 0  # highest seq handed to the client
        self.confirmed = 0  # highest seq confirmed but maybe not yet written to the cursor
        self._unsaved = 0

    @property
    def busy(self) -> bool:
        return bool(self.flight)

    def head(self) -> asyncio.Future:
        """The oldest send in flight. Refilling as soon as it completes keeps data flowing both
        ways (waiting for a bigger gap lets Nagle and delayed ACKs stall the broker's confirmations)."""
        return self.flight[0][1]

    def skip_to(self, seq: int) -> None:
        """The outbox bound moved the cursor: forget what is before it."""
        self.queued = max(self.queued, seq)

    def fill(self) -> None:
        room = self.size - len(self.flight)
        if room <= 0:
            return
        for ev in self.reader.after(self.queued, room):
            future = asyncio.ensure_future(self.send(ev))
            future.add_done_callback(self.on_done)
            self.flight.append((ev.seq, future))
            self.queued = ev.seq

    def collect(self) -> None:
        """Move the cursor over the confirmed prefix; raise the first failure."""
        while self.flight and self.flight[0][1].done():
            seq, future = self.flight[0]
            if future.cancelled() or future.exception() is not None:
                self.save()
                raise future.exception() if not future.cancelled() else self.failure("send cancelled")
            self.flight.popleft()
            self.confirmed = seq
            self._unsaved += 1
        if self._unsaved >= self.ACK_EVERY or (self._unsaved and not self.flight):
            self.save()

    def save(self) -> None:
        if self._unsaved:
            self.reader.ack(self.confirmed)
            self._unsaved = 0

    def raise_disconnected(self, watcher: asyncio.Future) -> None:
        self.collect()
        self.save()
        exc = watcher.exception() if not watcher.cancelled() else None
        raise exc if exc is not None else self.failure("disconnected")

    def close(self) -> None:
        """Keep what was confirmed; abandon the rest (it is re-sent by the next connection)."""
        with contextlib.suppress(Exception):
            self.collect()
        self.save()
        for _, future in self.flight:
            future.cancel()
        self.flight.clear()
