"""Wazo's own bus: the durable outbox drained in order to the node's RabbitMQ, as Wazo services publish.

Why: a Wazo administrator's tools listen on RabbitMQ, not on MQTT. wazo-webhookd
turns bus events into webhooks (a subscription names events such as
``ha_takeover_completed``) and wazo-websocketd forwards them to browsers. Both
consume the ``wazo-headers`` headers exchange and match on the ``name`` header
(plus ``origin_uuid`` or ``tenant_uuid`` when a subscription asks for them).
So each event goes out the way wazo-bus marshals a service event:

* headers ``name``, ``origin_uuid``, ``timestamp``, ``required_access``
  (``event.<name>``, checked by wazo-websocketd against the user's ACL) and
  the deprecated ``required_acl`` (``events.<routing key>``);
* a JSON body holding those headers and ``data`` (plus wazod's ``node`` and
  ``seq``, so a consumer can detect gaps as on MQTT);
* routing key ``<prefix>.<node>.<event name>`` for consumers of a topic
  exchange.

The guarantees are the MQTT output's: its own outbox cursor (``wazo-bus``),
so one broker down never blocks the other output; the cursor moves only over
events the broker confirmed (publisher confirms), in seq order, with a window
of them in flight; reconnection with backoff and jitter; a broker down at
start-up is a normal state; credentials never leave the process unmasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from wazod.bus.outbox import OutboxReader, StoredEvent, store_path
from wazod.bus.window import Window, backoff_delay, session_unless_stopped
from wazod.logsetup import get_logger
from wazod.secrets import mask_text

log = get_logger("bus")

CONSUMER = "wazo-bus"
PRUNE_EVERY = 60.0


def enabled(config) -> bool:
    """``bus.wazo.enabled``; ``auto`` means on a Wazo node (``node.wazo_dir``, /etc/xivo, exists)."""
    value = config.bus.wazo.enabled
    if value == "auto":
        return config.node.on_wazo
    return bool(value)


def key_part(value: str) -> str:
    """A node or event name made safe as one routing-key word (no dots, no wildcards)."""
    return "".join("_" if c in ".*#\0" else c for c in value) or "_"


def wazo_message(ev: StoredEvent, prefix: str, node: str) -> tuple[str, dict[str, Any], bytes]:
    """(routing key, headers, body) of one stored event, shaped like a wazo-bus service event."""
    envelope = json.loads(ev.body)
    routing_key = f"{key_part(prefix)}.{key_part(node)}.{key_part(ev.name)}"
    headers = {
        "name": ev.name,
        "origin_uuid": envelope.get("origin_uuid"),
        "timestamp": envelope.get("timestamp"),
        "required_access": f"event.{ev.name}",
        "required_acl": f"events.{routing_key}",
    }
    body = dict(headers)
    body.update(node=envelope.get("node"), seq=envelope.get("seq"), data=envelope.get("data", {}))
    return routing_key, headers, json.dumps(body, default=str).encode()


def connection_settings(wazo) -> dict[str, Any]:
    """aio-pika's connect() arguments from ``bus.wazo``; the password file, when named, wins over the URL's."""
    parts = urlsplit(wazo.url)
    password = unquote(parts.password) if parts.password is not None else "guest"
    if wazo.password_file:
        try:
            text = Path(wazo.password_file).read_text()
        except OSError as e:
            raise ConnectionError(f"bus.wazo.password_file {wazo.password_file}: cannot be read: {e.strerror}") from None
        password = text.splitlines()[0] if text else ""
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {
        "host": parts.hostname, "port": parts.port or (5671 if parts.scheme == "amqps" else 5672),
        "login": unquote(parts.username) if parts.username is not None else "guest",
        "password": password, "virtualhost": vhost, "ssl": parts.scheme == "amqps",
        "timeout": wazo.timeout,
    }


def describe(wazo) -> str:
    """The broker as shown in logs and status: the URL with its password masked."""
    return mask_text(wazo.url)


class WazoBusPublisher:
    """Component ``wazo_bus``: see the module docstring."""

    name = "wazo_bus"

    def __init__(self, ctx):
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._reconnect = False
        self._session_settings = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.connected = False
        self._error: str | None = None
        self._warned: str | None = None  # the last error said at warning level: one warning per new error
        self.reader = OutboxReader(store_path(ctx.config.state_dir), CONSUMER)
        ctx.registry["wazo_bus"] = self

    # -- wake-ups (may come from any thread) --------------------------------
    def _poke(self, *_: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._wake.is_set():
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def _progress(self, _future: asyncio.Future) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        stop = asyncio.ensure_future(self.ctx.stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()
        self._wake.clear()

    def depth(self) -> int:
        return self.reader.depth()

    async def reload(self) -> None:
        if self.ctx.config.bus.wazo != self._session_settings:
            self._reconnect = True
        self._poke()

    def _set_connected(self, value: bool, error: str | None = None) -> None:
        if (value, error) != (self.connected, self._error):
            self.connected, self._error = value, error
            self.ctx.status.update(wazo_bus={"connected": value, "error": error,
                                             "broker": describe(self.ctx.config.bus.wazo)})

    # -- main loop -----------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.reader.closed:
            self.reader = OutboxReader(store_path(self.ctx.config.state_dir), CONSUMER)
        unsubscribe = self.ctx.emitter.subscribe(self._poke)
        attempt = 0
        last_prune = float("-inf")
        failures: tuple[type[BaseException], ...] = ()
        try:
            while not self.ctx.stopping.is_set():
                bus = self.ctx.config.bus
                now = self._loop.time()
                if now - last_prune > PRUNE_EVERY:
                    last_prune = now
                    self.reader.prune(bus.outbox_max)
                self.reader.enforce_bound(bus.outbox_max)
                if not enabled(self.ctx.config):
                    self._set_connected(False)
                    await self._sleep(max(bus.poll_interval, 5.0))
                    continue
                self._reconnect = False
                if not failures:  # imported once the bus is on: a node without it pays nothing
                    import aio_pika.exceptions
                    import aiormq.exceptions

                    failures = (TimeoutError, OSError, ConnectionError, aio_pika.exceptions.AMQPException,
                                aiormq.exceptions.AMQPError)
                try:
                    await self._session_unless_stopped(bus)
                    attempt = 0
                except failures as e:
                    error = mask_text(str(e) or type(e).__name__)
                    self._set_connected(False, error=error)
                    delay = backoff_delay(attempt, bus.wazo.reconnect_min, bus.wazo.reconnect_max)
                    if error != self._warned:
                        self._warned = error
                        log.warning("Wazo bus unreachable, retrying", broker=describe(bus.wazo), error=error,
                                    retry_in=round(delay, 2), pending=self.reader.depth())
                    else:
                        log.debug("Wazo bus still unreachable", error=error, retry_in=round(delay, 2))
                    attempt += 1
                    await self._sleep(delay)
                    self._wake.clear()
        finally:
            unsubscribe()
            self._set_connected(False)
            self.reader.close()

    async def _session_unless_stopped(self, bus) -> None:
        await session_unless_stopped(self._session(bus), self.ctx.stopping, lambda: self.connected)

    async def _session(self, bus) -> None:
        """One connection: publish until stopping or reload; raises when the connection fails."""
        import aio_pika

        wazo = bus.wazo
        self._session_settings = wazo
        connection = await aio_pika.connect(**connection_settings(wazo))
        closed: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(wazo.exchange_name, wazo.exchange_type, durable=True)

            def on_close(*args: Any) -> None:
                if not closed.done():
                    exc = next((a for a in args if isinstance(a, BaseException)), None)
                    closed.set_exception(exc or ConnectionError("connection to the Wazo bus closed"))

            connection.close_callbacks.add(on_close)
            channel.close_callbacks.add(on_close)
            self._warned = None
            self._set_connected(True)
            log.info("connected to the Wazo bus", broker=describe(wazo), exchange=wazo.exchange_name,
                     pending=self.reader.depth())
            node = self.ctx.config.node_name
            persistent = aio_pika.DeliveryMode.PERSISTENT

            def send(ev: StoredEvent):
                routing_key, headers, body = wazo_message(ev, wazo.routing_key_prefix, node)
                message = aio_pika.Message(body, headers=headers, content_type="application/json",
                                           content_encoding="utf-8", delivery_mode=persistent)
                return exchange.publish(message, routing_key=routing_key, timeout=wazo.timeout)

            await self._pump(send, bus, closed)
            if self.ctx.stopping.is_set():
                await self._pump(send, bus, closed,
                                 deadline=asyncio.get_running_loop().time() + bus.drain_timeout)
        finally:
            if closed.done() and not closed.cancelled():
                closed.exception()  # seen here; a drop is reported by raise_disconnected or the next session
            else:
                closed.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)

    async def _pump(self, send, bus, closed: asyncio.Future, deadline: float | None = None) -> None:
        """Publish through a window until stopping/reload (or, draining, until empty or ``deadline``)."""
        loop = asyncio.get_running_loop()
        window = Window(self.reader, send, bus.wazo.max_inflight, self._progress)
        closed.add_done_callback(self._progress)
        next_bound_check = 0.0
        try:
            while True:
                if closed.done():
                    window.raise_disconnected(closed)
                draining = deadline is not None
                stopping = not draining and (self.ctx.stopping.is_set() or self._reconnect)
                if draining and loop.time() >= deadline:
                    log.warning("stopping with events not yet on the Wazo bus; they go out at next start",
                                pending=self.reader.depth())
                    return
                if not stopping:
                    if loop.time() >= next_bound_check:
                        next_bound_check = loop.time() + bus.poll_interval
                        if self.reader.enforce_bound(bus.outbox_max):
                            window.skip_to(self.reader.cursor() or 0)
                    window.fill()
                window.collect()
                if window.busy:
                    await self._wait_progress(window.head(), closed, deadline)
                    continue
                if stopping or (draining and not self.reader.pending(1)):
                    return
                if draining:
                    continue
                await self._sleep(bus.poll_interval)
        finally:
            window.close()

    async def _wait_progress(self, head: asyncio.Future, closed: asyncio.Future, deadline: float | None) -> None:
        if not head.done() and not closed.done():
            timeout = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()


def component(ctx):
    return WazoBusPublisher(ctx)
