"""The MQTT publisher: the durable outbox drained in order to the broker, QoS 1.

Why it is built this way:

* The outbox (the SQLite event store) is the only source. In-process emits
  wake the publisher at once; events appended by CLI processes (``wazod
  backup`` run by hand) are found by polling the store's last seq every
  ``bus.poll_interval`` seconds. Either way they go out in seq order.
* An event leaves the outbox (the ``mqtt`` cursor moves) only after the
  broker's PUBACK. Messages are pipelined (a window of up to ``max_inflight``
  awaiting their PUBACK) and the cursor moves over the acknowledged prefix
  only, so a broker that dies mid-window costs re-sends (subscribers see
  duplicate seqs), never a hole.
* A broker down, restarting or unreachable at start-up is a normal state:
  the publisher reconnects with exponential backoff and full jitter (so two
  nodes, or fifty, do not reconnect in lock step) and never raises.
* ``<prefix>/<node>/online`` is retained ``true`` once connected and the last
  will (retained ``false``) tells subscribers the daemon died; a clean stop
  publishes ``false`` itself. ``<prefix>/<node>/state`` is the status board,
  retained, republished on every change and on every connection.
* With no broker configured the component still runs, only to keep the
  outbox bounded (``bus.outbox_max``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wazod.bus.outbox import OutboxReader, store_path
from wazod.bus.window import Window, backoff_delay, session_unless_stopped
from wazod.logsetup import get_logger

if TYPE_CHECKING:
    import aiomqtt

log = get_logger("bus")

CONSUMER = "mqtt"
PRUNE_EVERY = 60.0  # seconds between trims of the stored history


def topic_part(value: str) -> str:
    """A node or event name made safe as one topic level (no separators, no wildcards)."""
    return "".join("_" if c in "/#+\0" else c for c in value) or "_"


def topics(prefix: str, node: str) -> dict[str, str]:
    base = f"{prefix}/{topic_part(node)}"
    return {"events": f"{base}/events", "state": f"{base}/state", "online": f"{base}/online"}


def read_password(path: str) -> str:
    """First line of the password file. Errors name the file, never the content."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConnectionError(f"bus.mqtt.password_file {path}: cannot be read: {e.strerror}") from None
    return text.splitlines()[0] if text else ""


def tls_context(mqtt) -> ssl.SSLContext | None:
    if not mqtt.uses_tls:
        return None
    try:
        context = ssl.create_default_context(cafile=mqtt.tls_ca)
        if mqtt.tls_cert:
            context.load_cert_chain(mqtt.tls_cert, mqtt.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ConnectionError(f"bus.mqtt TLS files: {e}") from None
    return context


class MqttPublisher:
    """Component ``bus``: see the module docstring."""

    name = "bus"

    def __init__(self, ctx):
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._state_dirty = True
        self._reconnect = False
        self._session_mqtt = None  # the bus.mqtt settings of the current connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.connected = False
        self._error: str | None = None
        self.reader = OutboxReader(store_path(ctx.config.state_dir), CONSUMER)
        ctx.registry["bus"] = self

    # -- wake-ups (may come from any thread) --------------------------------
    def _poke(self, *_: Any) -> None:
        """Wake the publisher: directly from the loop's thread, through the loop from any other."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._wake.is_set():
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def _on_status(self, _snapshot: dict[str, Any]) -> None:
        self._state_dirty = True
        self._poke()

    async def _sleep(self, seconds: float, also: asyncio.Future | None = None) -> None:
        """Wait up to ``seconds`` for a wake-up (emit, status change, stop, reload, ``also`` done)."""
        stop = asyncio.ensure_future(self.ctx.stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        waited = {stop, wake} | ({also} if also is not None else set())
        try:
            await asyncio.wait(waited, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()
        self._wake.clear()

    def depth(self) -> int:
        return self.reader.depth()

    async def reload(self) -> None:
        """Reconnect only when the broker settings changed; other changes are read live."""
        if self.ctx.config.bus.mqtt != self._session_mqtt:
            self._reconnect = True
        self._poke()

    # -- main loop -----------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.reader.closed:  # run() again after a crash: the supervisor restarts the same object
            self.reader = OutboxReader(store_path(self.ctx.config.state_dir), CONSUMER)
        unsubscribe = self.ctx.emitter.subscribe(self._poke)
        self.ctx.status.subscribe(self._on_status)
        attempt = 0
        last_prune = float("-inf")
        try:
            while not self.ctx.stopping.is_set():
                bus = self.ctx.config.bus
                now = self._loop.time()
                if now - last_prune > PRUNE_EVERY:
                    last_prune = now
                    self.reader.prune(bus.outbox_max)
                self.reader.enforce_bound(bus.outbox_max)
                if bus.mqtt.host is None:  # no broker: keep the outbox bounded, that is all
                    await self._sleep(max(bus.poll_interval, 5.0))
                    continue
                self._reconnect = False
                import aiomqtt  # only once a broker is configured: a node without one pays nothing

                try:
                    await self._session_unless_stopped(bus)
                    attempt = 0
                except (TimeoutError, aiomqtt.MqttError, OSError, ConnectionError) as e:
                    self._set_connected(False, error=str(e))
                    delay = backoff_delay(attempt, bus.mqtt.reconnect_min, bus.mqtt.reconnect_max)
                    level = log.warning if attempt == 0 or attempt % 10 == 0 else log.debug
                    level("broker unreachable, retrying", broker=f"{bus.mqtt.host}:{bus.mqtt.port}",
                          error=str(e), retry_in=round(delay, 2), pending=self.reader.depth())
                    attempt += 1
                    await self._sleep(delay)
                    self._wake.clear()
        finally:
            unsubscribe()
            self._set_connected(False)
            self.reader.close()

    async def _session_unless_stopped(self, bus) -> None:
        await session_unless_stopped(self._session(bus), self.ctx.stopping, lambda: self.connected)

    def _set_connected(self, value: bool, error: str | None = None) -> None:
        """Tell the status board (hence /status and the retained state) of a change, not of every retry."""
        if (value, error) != (self.connected, self._error):
            self.connected, self._error = value, error
            self.ctx.status.update(bus={"connected": value, "error": error})

    def _client(self, bus) -> aiomqtt.Client:
        import aiomqtt

        mqtt = bus.mqtt
        t = topics(mqtt.topic_prefix, self.ctx.config.node_name)
        client = aiomqtt.Client(
            mqtt.host, mqtt.port,
            identifier=mqtt.client_id or f"wazod-{self.ctx.config.node_name}",
            username=mqtt.username,
            password=read_password(mqtt.password_file) if mqtt.password_file else None,
            will=aiomqtt.Will(t["online"], b"false", qos=1, retain=True),
            clean_session=True,
            keepalive=mqtt.keepalive,
            timeout=mqtt.timeout,
            max_inflight_messages=mqtt.max_inflight,
            tls_context=tls_context(mqtt),
        )
        # a full window in flight is our normal state, not something to warn about on every publish
        client.pending_calls_threshold = mqtt.max_inflight + 10
        return client

    async def _session(self, bus) -> None:
        """One connection: publish until stopping or reload; raises when the connection fails."""
        mqtt = bus.mqtt
        t = topics(mqtt.topic_prefix, self.ctx.config.node_name)
        self._session_mqtt = mqtt
        import aiomqtt

        async with self._client(bus) as client:
            watcher = asyncio.create_task(self._watch_disconnect(client))
            try:
                await client.publish(t["online"], b"true", qos=1, retain=True)
                self._state_dirty = True
                self._set_connected(True)
                log.info("connected to the broker", broker=f"{mqtt.host}:{mqtt.port}", pending=self.reader.depth())
                await self._pump(client, bus, t, watcher)
                if self.ctx.stopping.is_set():
                    await self._drain(client, bus, t, watcher)
                    await client.publish(t["online"], b"false", qos=1, retain=True)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await watcher

    @staticmethod
    async def _watch_disconnect(client: aiomqtt.Client) -> None:
        """Returns (raising MqttError) when the connection drops: aiomqtt's public way to notice."""
        async for _ in client.messages:
            pass

    async def _pump(self, client, bus, t, watcher, deadline: float | None = None) -> None:
        """Publish the outbox through a sliding window of in-flight messages until told to stop.

        Normal mode (``deadline`` None): runs until stopping or reload, then
        lets the window empty. Drain mode (on stop): runs until nothing is
        pending or ``deadline`` passes.
        """
        import aiomqtt

        loop = asyncio.get_running_loop()
        events_topic = t["events"]
        window = Window(
            self.reader,
            lambda ev: client.publish(f"{events_topic}/{topic_part(ev.name)}", ev.body.encode(), qos=1),
            bus.mqtt.max_inflight, self._progress, failure=aiomqtt.MqttError)
        watcher.add_done_callback(self._progress)
        next_bound_check = 0.0
        try:
            while True:
                if watcher.done():
                    window.raise_disconnected(watcher)
                draining = deadline is not None
                stopping = not draining and (self.ctx.stopping.is_set() or self._reconnect)
                if draining and loop.time() >= deadline:
                    log.warning("stopping with events still in the outbox; they go out at next start",
                                pending=self.reader.depth())
                    return
                if not stopping:
                    if loop.time() >= next_bound_check:  # two queries: not on every PUBACK
                        next_bound_check = loop.time() + bus.poll_interval
                        if self.reader.enforce_bound(bus.outbox_max):
                            window.skip_to(self.reader.cursor() or 0)
                    window.fill()
                window.collect()
                if window.busy:
                    timeout = None if deadline is None else max(deadline - loop.time(), 0.01)
                    await self._wait_any(window.head(), watcher, timeout=timeout)
                    continue
                if stopping or (draining and not self.reader.pending(1)):
                    return
                if draining:
                    continue
                if self._state_dirty:
                    self._state_dirty = False
                    await client.publish(t["state"], json.dumps(self.ctx.status.snapshot(), default=str),
                                         qos=1, retain=True)
                    continue
                await self._sleep(bus.poll_interval, also=watcher)
        finally:
            window.close()

    async def _wait_any(self, head: asyncio.Future, watcher: asyncio.Future, timeout: float | None) -> None:
        """Until a publish completes, the connection drops, or new events arrive.

        Completions and the watcher set ``_wake`` through done-callbacks, so
        waiting costs one Event, not a task per message.
        """
        if not head.done() and not watcher.done():
            if timeout is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def _progress(self, _future: asyncio.Future) -> None:
        self._wake.set()

    async def _drain(self, client, bus, t, watcher) -> None:
        """On stop: give what is pending (daemon_stopping included) up to drain_timeout to go out."""
        await self._pump(client, bus, t, watcher, deadline=asyncio.get_running_loop().time() + bus.drain_timeout)


def component(ctx):
    return MqttPublisher(ctx)
