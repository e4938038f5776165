"""MQTT publisher against a real mosquitto: shape, order, outages, retained state/online."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re

import pytest
from harness import wait_for_async
from harness.bus import MqttCollector, write_node_config

from wazod.bus.outbox import OutboxReader, store_path
from wazod.bus.publisher import MqttPublisher
from wazod.config import load_config
from wazod.context import Context
from wazod.events import open_emitter
from wazod.state import StateStore
from wazod.statusboard import StatusBoard

pytestmark = pytest.mark.mqtt


def make_ctx(tmp_path, broker=None, **bus):
    mqtt = {"host": broker.host, "port": broker.port} if broker else {}
    mqtt.update(bus.pop("mqtt", {}))
    path = write_node_config(tmp_path, "pbx1", bus={"mqtt": {"reconnect_min": 0.1, "reconnect_max": 0.5,
                                                            "keepalive": 5, **mqtt}, "poll_interval": 0.2, **bus})
    loaded = load_config(path)
    config = loaded.config
    state = StateStore(config.node.state_dir)
    ctx = Context(loaded, open_emitter(config), state, StatusBoard(state, config.node_name, config.role))
    return ctx


@contextlib.asynccontextmanager
async def running(ctx):
    pub = MqttPublisher(ctx)
    task = asyncio.create_task(pub.run())
    try:
        yield pub
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 15)
        ctx.emitter.store.close()


async def test_events_reach_subscriber_with_contract_shape(tmp_path, mosquitto):
    ctx = make_ctx(tmp_path, mosquitto)
    async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/#") as sub, running(ctx):
        ctx.emit("ha_takeover_completed", {"duration": 1.5})
        ctx.emit("backup_completed", {"files": 3})
        await wait_for_async(lambda: len(sub.events()) >= 2, timeout=10)
        ctx.status.update(ha_state="active")
        await wait_for_async(lambda: (m := sub.last("/state")) and m.json().get("ha_state") == "active", timeout=10)

    topics = [m.topic for m in sub.messages if "/events/" in m.topic]
    assert topics == ["wazod/pbx1/events/ha_takeover_completed", "wazod/pbx1/events/backup_completed"]
    first, second = sub.events()
    assert set(first) == {"name", "origin_uuid", "node", "seq", "timestamp", "data"}
    assert first["name"] == "ha_takeover_completed" and first["node"] == "pbx1"
    assert first["data"] == {"duration": 1.5}
    assert re.fullmatch(r"[0-9a-f-]{36}", first["origin_uuid"])
    assert dt.datetime.fromisoformat(first["timestamp"]).utcoffset() is not None
    assert second["seq"] == first["seq"] + 1
    # online: true while running, false after a clean stop; both retained
    onlines = [m for m in sub.messages if m.topic == "wazod/pbx1/online"]
    assert onlines[0].payload == b"true"
    await asyncio.sleep(0)
    async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/pbx1/+") as late:
        await wait_for_async(lambda: late.last("/online") and late.last("/state"), timeout=10)
        assert late.last("/online").retain and late.last("/online").json() is False
        assert late.last("/state").retain and late.last("/state").json()["ha_state"] == "active"


async def test_broker_outage_loses_nothing_and_keeps_order(tmp_path, mosquitto):
    ctx = make_ctx(tmp_path, mosquitto)
    async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/+/events/#",
                             client_id="collector-outage") as sub, running(ctx) as pub:
        for i in range(5):
            ctx.emit("replication_completed", {"i": i})
        await wait_for_async(lambda: len(sub.events()) >= 5, timeout=10)
        mosquitto.stop()
        await wait_for_async(lambda: not pub.connected, timeout=20)
        for i in range(5, 25):  # while the broker is away: the outbox keeps them
            ctx.emit("replication_completed", {"i": i})
        assert OutboxReader(store_path(ctx.config.state_dir), "mqtt").depth() >= 20  # (+1 if a PUBACK was lost)
        mosquitto.start()
        await wait_for_async(lambda: len({e["seq"] for e in sub.events()}) >= 25, timeout=30)
        assert ctx.status.get("bus")["connected"] is True

    events = sub.events()
    # duplicates are allowed (at least once), holes and reordering are not
    seqs = [e["seq"] for e in events]
    assert sorted(set(seqs)) == list(range(seqs[0], seqs[0] + 25))
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen)
    assert [e["data"]["i"] for e in {e["seq"]: e for e in events}.values()] == list(range(25))


async def test_broker_absent_at_start_then_appears(tmp_path, mosquitto):
    mosquitto.stop()
    ctx = make_ctx(tmp_path, mosquitto)
    async with running(ctx) as pub:
        for i in range(3):
            ctx.emit("purge_completed", {"i": i})
        await asyncio.sleep(0.5)
        assert not pub.connected  # and the daemon did not block: we are here
        mosquitto.start()
        async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/#") as sub:
            # the events were published before the collector subscribed; retained online shows the connection
            await wait_for_async(lambda: pub.connected and pub.depth() == 0, timeout=20)
            ctx.emit("purge_completed", {"i": 3})
            await wait_for_async(lambda: any(e["seq"] == 4 for e in sub.events()), timeout=10)
            seqs = [e["seq"] for e in sub.events()]
            assert seqs == sorted(seqs) and seqs[-1] == 4
    reader = OutboxReader(store_path(ctx.config.state_dir), "mqtt")
    assert reader.cursor() == 4 and reader.depth() == 0


async def test_event_from_another_process_reaches_the_bus(tmp_path, mosquitto):
    """A CLI process (here: a plain emit through open_emitter) appends to the same outbox."""
    ctx = make_ctx(tmp_path, mosquitto)
    async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/#") as sub, running(ctx):
        ctx.emit("daemon_started", {})
        code = ("import sys; from wazod.config import load_config; from wazod.events import open_emitter;"
                "e = open_emitter(load_config(sys.argv[1]).config); e.emit('backup_completed', {'by': 'cli'})")
        proc = await asyncio.create_subprocess_exec(
            __import__("sys").executable, "-c", code, str(tmp_path / "config.yml"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await proc.wait() == 0
        await wait_for_async(lambda: len(sub.events()) >= 2, timeout=10)
    names = [(e["name"], e["seq"]) for e in sub.events()]
    assert names == [("daemon_started", 1), ("backup_completed", 2)]
    assert sub.events()[1]["data"] == {"by": "cli"}


async def test_outbox_bound_drops_oldest_loudly(tmp_path, mosquitto, capsys):
    from wazod.logsetup import configure_logging

    configure_logging("info", json=True)  # to stdout, whatever an earlier test configured
    mosquitto.stop()
    ctx = make_ctx(tmp_path, mosquitto, outbox_max=100)
    for i in range(130):
        ctx.emit("sync_completed", {"i": i})
    async with running(ctx) as pub:
        await wait_for_async(lambda: pub.reader.dropped == 30, timeout=10)
        mosquitto.start()
        async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/#"):
            await wait_for_async(lambda: pub.connected and pub.depth() == 0, timeout=20)
    assert "outbox full" in capsys.readouterr().out
    assert OutboxReader(store_path(ctx.config.state_dir), "mqtt").cursor() == 130


async def test_password_file_and_bad_password_file(tmp_path, mosquitto):
    """A missing password file is reported (naming the file) and retried, never fatal."""
    ctx = make_ctx(tmp_path, mosquitto, mqtt={"username": "wazod", "password_file": str(tmp_path / "nope")})
    async with running(ctx) as pub:
        await wait_for_async(lambda: (ctx.status.get("bus") or {}).get("error"), timeout=10)
        assert str(tmp_path / "nope") in ctx.status.get("bus")["error"]
        assert not pub.connected
        (tmp_path / "nope").write_text("s3cret\n")
        await wait_for_async(lambda: pub.connected, timeout=10)  # anonymous broker accepts any password
    assert "s3cret" not in json.dumps(ctx.status.snapshot())


async def test_no_broker_keeps_the_outbox_bounded(tmp_path):
    ctx = make_ctx(tmp_path, None, outbox_max=100)
    for i in range(150):
        ctx.emit("backup_completed", {"i": i})
    pub = MqttPublisher(ctx)
    task = asyncio.create_task(pub.run())
    await wait_for_async(lambda: pub.reader.dropped == 50, timeout=10)
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)
    reader = OutboxReader(store_path(ctx.config.state_dir), "mqtt")
    assert [e.seq for e in reader.last(1000)] == list(range(51, 151))  # history trimmed to the bound
    # the supervisor runs the same object again after a crash: it must work again
    ctx.stopping.clear()
    for i in range(30):
        ctx.emit("backup_completed", {"i": i})
    task = asyncio.create_task(pub.run())
    await wait_for_async(lambda: pub.reader.dropped == 30, timeout=10)
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)
    ctx.emitter.store.close()


async def test_reload_moves_to_another_broker(tmp_path, mosquitto):
    from harness.mqtt import Mosquitto

    ctx = make_ctx(tmp_path, mosquitto)
    with Mosquitto() as other:
        async with running(ctx) as pub, MqttCollector(other.host, other.port, "wazod/#") as sub:
            await wait_for_async(lambda: pub.connected, timeout=10)
            path = write_node_config(tmp_path, "pbx1", bus={"mqtt": {"host": other.host, "port": other.port}})
            ctx.loaded = load_config(path)
            await pub.reload()
            ctx.emit("config_reloaded", {"ok": True})
            await wait_for_async(lambda: any(e["name"] == "config_reloaded" for e in sub.events()), timeout=15)


async def test_tls_client_certificate_and_password_file(tmp_path):
    """A broker requiring TLS, a client certificate and a password: the events get through."""
    from harness.bus import make_secure_mosquitto, make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    (tmp_path / "mqtt.pw").write_text("Sekr3t-pw\n")
    broker = make_secure_mosquitto(tls, {"wazod": "Sekr3t-pw"})
    with broker:
        ctx = make_ctx(tmp_path, broker, mqtt={"username": "wazod", "password_file": str(tmp_path / "mqtt.pw"),
                                               "tls_ca": str(tls["ca"]), "tls_cert": str(tls["client"]),
                                               "tls_key": str(tls["client_key"])})
        async with running(ctx) as pub:
            ctx.emit("backup_completed", {"tls": True})
            await wait_for_async(lambda: pub.connected and pub.depth() == 0, timeout=20,
                                 message=f"not published over TLS: {ctx.status.get('bus')}\n{broker.log_tail()}")
        # a wrong password is refused by the broker, reported, and the event waits in the outbox
        (tmp_path / "mqtt.pw").write_text("wrong\n")
        ctx2 = make_ctx(tmp_path / "n2", broker, mqtt={"username": "wazod", "password_file": str(tmp_path / "mqtt.pw"),
                                                      "tls_ca": str(tls["ca"]), "tls_cert": str(tls["client"]),
                                                      "tls_key": str(tls["client_key"])})
        async with running(ctx2) as pub2:
            ctx2.emit("backup_completed", {})
            await wait_for_async(lambda: (ctx2.status.get("bus") or {}).get("error"), timeout=20)
            assert not pub2.connected and pub2.depth() == 1
    assert "Sekr3t-pw" not in json.dumps(ctx.status.snapshot()) + json.dumps(ctx2.status.snapshot())


async def test_stop_while_connecting_to_a_silent_broker_is_prompt(tmp_path):
    """A broker that accepts TCP but never answers CONNECT must not hold the daemon's stop."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    port = silent.getsockname()[1]
    try:
        ctx = make_ctx(tmp_path, None, mqtt={"host": "127.0.0.1", "port": port, "timeout": 60})
        pub = MqttPublisher(ctx)
        task = asyncio.create_task(pub.run())
        await asyncio.sleep(0.5)
        ctx.stopping.set()
        await asyncio.wait_for(task, 5)  # not the 60 s connect timeout
        assert not pub.connected and task.exception() is None
        ctx.emitter.store.close()
    finally:
        silent.close()


@pytest.mark.parametrize("mqtt, message", [
    ({"password_file": "/x"}, "password_file needs username"),
    ({"topic_prefix": "wazod/#"}, "without wildcards"),
    ({"port": 0}, "greater than or equal to 1"),
    ({"tls_key": "/k.pem"}, "tls_key needs tls_cert"),
])
def test_bad_bus_config_is_a_clear_error(tmp_path, mqtt, message):
    from wazod.errors import ConfigError

    path = write_node_config(tmp_path, bus={"mqtt": mqtt})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value) and "bus.mqtt" in str(err.value)
