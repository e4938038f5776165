"""Events on Wazo's own bus (RabbitMQ), against a real broker and the real daemon.

A consumer binds the way wazo-webhookd binds a subscription (the ``wazo-headers``
headers exchange, ``x-match: all`` on ``name``, plus ``origin_uuid`` for a
subscription that names a Wazo UUID); it must receive the event with Wazo's
headers and body shape. The broker is restarted mid-stream (nothing lost,
nothing reordered), and wrong credentials give one warning while MQTT keeps
flowing.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
from harness import kill_process_group, wait_for_async
from harness.bus import MqttCollector, write_node_config
from harness.rabbitmq import rabbitmq  # noqa: F401  (fixture)

from wazod.bus import wazo as wazo_bus
from wazod.config import load_config
from wazod.events import open_emitter

EXCHANGE = "wazo-headers"


def start_daemon(config_path: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "wazod", "run", "--config", str(config_path)],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def node_config(tmp_path: Path, url: str, **sections) -> Path:
    (tmp_path / "xivo").mkdir(exist_ok=True)  # Wazo's configuration directory exists: bus.wazo auto is on
    bus = {"wazo": {"url": url, "reconnect_min": 0.1, "reconnect_max": 0.5}, "poll_interval": 0.2}
    bus.update(sections.pop("bus", {}))
    # a Wazo node would also log to /var/log/wazod.log (logging.file auto): not from a test
    logging = {"file": None, **sections.pop("logging", {})}
    return write_node_config(tmp_path, "pbx2", bus=bus, node={"wazo_dir": str(tmp_path / "xivo")},
                             logging=logging, **sections)


def emit(config_path: Path, names: list[str]) -> list[int]:
    """Emit events as a CLI process does: through the node's outbox, which the daemon drains."""
    loaded = load_config(config_path)
    emitter = open_emitter(loaded.config)
    try:
        return [emitter.emit(name, {"i": i, "reason": "test"})["seq"] for i, name in enumerate(names)]
    finally:
        with contextlib.suppress(Exception):
            emitter.store.close()


class Consumer:
    """A queue bound to the headers exchange; records (headers, body, routing key, content type) in order."""

    def __init__(self, url: str, arguments: dict, queue: str | None = None):
        self.url, self.arguments, self.queue_name = url, arguments, queue
        self.received: list[tuple[dict, dict, str, str | None]] = []
        self._task: asyncio.Task | None = None
        self._bound = asyncio.Event()

    async def __aenter__(self) -> Consumer:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._bound.wait(), 20)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                connection = await aio_pika.connect(self.url, timeout=5)
                async with connection:
                    channel = await connection.channel()
                    exchange = await channel.declare_exchange(EXCHANGE, "headers", durable=True)
                    if self.queue_name:  # survives a broker restart, as the test needs
                        queue = await channel.declare_queue(self.queue_name, durable=True)
                    else:  # wazo-webhookd's: exclusive, auto-deleted
                        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
                    await queue.bind(exchange, arguments=self.arguments)
                    self._bound.set()
                    async with queue.iterator() as messages:
                        async for message in messages:
                            self.received.append((dict(message.headers), json.loads(message.body),
                                                  message.routing_key, message.content_type))
                            await message.ack()
            except (TimeoutError, aio_pika.exceptions.AMQPException, OSError, ConnectionError, aio_pika.exceptions.AMQPError):
                await asyncio.sleep(0.3)


async def test_a_webhookd_subscription_receives_the_event_with_wazo_headers_and_body(tmp_path, rabbitmq):  # noqa: F811
    config = node_config(tmp_path, rabbitmq.url)
    log_path = tmp_path / "daemon.log"
    subscription = str(uuid.uuid4())
    # the binding wazo-webhookd makes for {"events": ["ha_takeover_completed"]} in the master tenant
    takeover_binding = {"x-match": "all", "name": "ha_takeover_completed", "x-subscription": subscription}
    daemon = None
    origin_uuid = _origin_uuid(tmp_path)
    async with Consumer(rabbitmq.url, takeover_binding) as webhook, \
            Consumer(rabbitmq.url, {"x-match": "all", "origin_uuid": origin_uuid}) as every:
        daemon = start_daemon(config, log_path)
        try:
            await wait_for_async(lambda: "connected to the Wazo bus" in log_path.read_text(), timeout=30,
                                 message=f"never connected: {log_path.read_text()[-2000:]}")
            origin = load_config(config).config
            emitted = emit(config, ["ha_master_down", "ha_takeover_started", "ha_takeover_completed",
                                    "berofos_mode_changed", "ha_master_up"])
            await wait_for_async(lambda: len(webhook.received) >= 1, timeout=20,
                                 message=f"webhook got nothing: {log_path.read_text()[-2000:]}")
            await wait_for_async(lambda: set(emitted) <= {b["seq"] for _, b, _, _ in every.received}, timeout=20)
        finally:
            stop_code = None
            if daemon is not None:
                daemon.send_signal(signal.SIGTERM)
                stop_code = daemon.wait(30)
            kill_process_group(daemon)
    assert stop_code == 0
    assert len(webhook.received) == 1, [b["name"] for _, b, _, _ in webhook.received]
    headers, body, routing_key, content_type = webhook.received[0]
    assert headers["name"] == "ha_takeover_completed"
    assert headers["origin_uuid"] == origin_uuid
    assert headers["required_access"] == "event.ha_takeover_completed"
    assert headers["timestamp"] == body["timestamp"]
    assert body["name"] == "ha_takeover_completed" and body["origin_uuid"] == origin_uuid
    assert body["data"] == {"i": 2, "reason": "test"}
    assert body["seq"] == emitted[2] and body["node"] == "pbx2"
    assert routing_key == "wazod.pbx2.ha_takeover_completed"
    assert content_type == "application/json"
    assert origin.bus.wazo.exchange_name == EXCHANGE  # the shipped default is Wazo's exchange
    # a subscription naming the Wazo UUID (origin_uuid header) sees everything this node publishes, in order
    seen = [b["seq"] for _, b, _, _ in every.received if b["seq"] <= emitted[-1]]  # daemon_stopping may follow
    assert seen == sorted(seen) and seen[0] == 1 and seen[-len(emitted):] == emitted
    assert {b["name"] for _, b, _, _ in every.received} >= {"daemon_started", "ha_master_up"}


def _origin_uuid(tmp_path: Path) -> str:
    config = load_config(tmp_path / "config.yml").config
    emitter = open_emitter(config)
    try:
        return emitter.origin_uuid
    finally:
        with contextlib.suppress(Exception):
            emitter.store.close()


async def test_broker_restarted_mid_stream_loses_and_reorders_nothing(tmp_path, rabbitmq):  # noqa: F811
    config = node_config(tmp_path, rabbitmq.url)
    log_path = tmp_path / "daemon.log"
    origin_uuid = _origin_uuid(tmp_path)
    queue = f"wzt-restart-{uuid.uuid4().hex[:8]}"
    daemon = start_daemon(config, log_path)
    try:
        async with Consumer(rabbitmq.url, {"x-match": "all", "origin_uuid": origin_uuid}, queue=queue) as sub:
            await wait_for_async(lambda: "connected to the Wazo bus" in log_path.read_text(), timeout=30)
            seqs = emit(config, ["replication_completed"] * 150)
            # the broker goes away while events are flowing, more come while it is down
            await asyncio.to_thread(rabbitmq.stop)
            seqs += emit(config, ["sync_completed"] * 100)
            await asyncio.to_thread(rabbitmq.start)
            seqs += emit(config, ["purge_completed"] * 50)
            await wait_for_async(lambda: set(seqs) <= {b["seq"] for _, b, _, _ in sub.received}, timeout=60,
                                 message=f"missing: {sorted(set(seqs) - {b['seq'] for _, b, _, _ in sub.received})[:20]}"
                                         f"\n{log_path.read_text()[-3000:]}")
            assert daemon.poll() is None
    finally:
        kill_process_group(daemon)
    received = [b["seq"] for _, b, _, _ in sub.received if b["seq"] in set(seqs)]
    first_seen = list(dict.fromkeys(received))  # duplicates are allowed (at least once), not reordering
    assert first_seen == sorted(first_seen) == seqs
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["wazo_bus"]["connected"] is True


async def test_wrong_credentials_warn_once_and_mqtt_keeps_flowing(tmp_path, rabbitmq, mosquitto):  # noqa: F811
    wrong = rabbitmq.url.replace(rabbitmq.password, "not-the-password")
    config = node_config(tmp_path, wrong, bus={"mqtt": {"host": mosquitto.host, "port": mosquitto.port,
                                                        "reconnect_min": 0.1}},
                         logging={"level": "debug"})
    log_path = tmp_path / "daemon.log"
    async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/pbx2/events/#") as mqtt:
        daemon = start_daemon(config, log_path)
        try:
            await wait_for_async(lambda: any(e["name"] == "daemon_started" for e in mqtt.events()), timeout=30)
            seqs = emit(config, ["backup_completed"] * 20)
            await wait_for_async(lambda: set(seqs) <= {e["seq"] for e in mqtt.events()}, timeout=20)
            # several attempts were made meanwhile (debug lines), the warning was said once
            await wait_for_async(lambda: _count(log_path, "Wazo bus still unreachable") >= 3, timeout=20)
            assert daemon.poll() is None, "a refused login must not stop the daemon"
        finally:
            kill_process_group(daemon)
    text = log_path.read_text()
    warnings = [line for line in text.splitlines() if "Wazo bus unreachable" in line]
    assert len(warnings) == 1, warnings
    assert "ACCESS_REFUSED" in warnings[0] or "refused" in warnings[0].lower()
    assert "not-the-password" not in text, "the password must be masked"
    assert "<4>" in warnings[0]  # warning priority for the journal
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["wazo_bus"]["connected"] is False and status["wazo_bus"]["error"]
    assert "not-the-password" not in json.dumps(status)
    shown = subprocess.run([sys.executable, "-m", "wazod", "status", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert "wazo bus  not connected" in shown.stdout, shown.stdout


def _count(path: Path, text: str) -> int:
    return path.read_text().count(text) if path.exists() else 0


def test_enabled_auto_follows_the_wazo_configuration_directory(tmp_path):
    """auto: on where Wazo's configuration directory (node.wazo_dir, /etc/xivo) exists, off elsewhere."""
    (tmp_path / "xivo").mkdir()
    on = write_node_config(tmp_path / "a", "pbx1", node={"wazo_dir": str(tmp_path / "xivo")})
    assert wazo_bus.enabled(load_config(on).config) is True
    off = write_node_config(tmp_path / "b", "pbx1", node={"wazo_dir": str(tmp_path / "no-xivo")})
    assert wazo_bus.enabled(load_config(off).config) is False
    forced = write_node_config(tmp_path / "c", "pbx1", bus={"wazo": {"enabled": True}},
                               node={"wazo_dir": str(tmp_path / "no-xivo")})
    assert wazo_bus.enabled(load_config(forced).config) is True
    assert load_config(write_node_config(tmp_path / "d", "pbx1")).config.bus.wazo.enabled == "auto"


def test_bad_url_is_a_config_error_naming_the_key(tmp_path):
    config = write_node_config(tmp_path, "pbx1", bus={"wazo": {"url": "http://127.0.0.1:5672/"}})
    out = subprocess.run([sys.executable, "-m", "wazod", "config", "check", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "bus.wazo.url" in out.stderr and "amqp://" in out.stderr


def test_config_check_masks_the_amqp_password(tmp_path):
    config = write_node_config(tmp_path, "pbx1", bus={"wazo": {"url": "amqp://wazo:s3cr3t-pw@127.0.0.1:5672/"}})
    out = subprocess.run([sys.executable, "-m", "wazod", "config", "check", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    assert "s3cr3t-pw" not in out.stdout + out.stderr
    assert "amqp://wazo:" in out.stdout
