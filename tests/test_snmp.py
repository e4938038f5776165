"""SNMP notifications received by a real snmptrapd; WAZOD-MIB loaded by net-snmp's snmptranslate."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from harness import wait_for_async
from harness.bus import Snmptrapd, base_mib_dir, write_node_config

from wazod.bus.mib import NOTIFICATION_NUMBERS, mib_name, notification_oid, render_mib
from wazod.bus.snmp import SnmpNotifier, engine_id
from wazod.config import load_config
from wazod.context import Context
from wazod.events import EVENT_NAMES, open_emitter
from wazod.state import StateStore
from wazod.statusboard import StatusBoard

MIB_FILE = Path(__file__).resolve().parent.parent / "wazod" / "mibs" / "WAZOD-MIB.txt"
ENGINE = "80007ed905a1b2c3d4e5f60718"


def mib_oids(text: str) -> dict[str, str]:
    """Every name the MIB text defines, with its numeric OID, resolved from the text alone
    (``name ... ::= { parent n }``): the tests hold the implementation to the published MIB,
    so a renumbering in the code fails here instead of passing with itself."""
    known = {"enterprises": "1.3.6.1.4.1"}
    defs = re.findall(r"^(\w+)[ \t]+(?:OBJECT IDENTIFIER|MODULE-IDENTITY|OBJECT-TYPE|NOTIFICATION-TYPE|OBJECT-GROUP|"
                      r"NOTIFICATION-GROUP|MODULE-COMPLIANCE)\b.*?::=\s*\{\s*(\w+)((?:\s+\d+)+)\s*\}",
                      text, flags=re.M | re.S)
    pending = {name: (parent, arcs.split()) for name, parent, arcs in defs}
    while pending:
        ready = {n: v for n, v in pending.items() if v[0] in known}
        assert ready, f"unresolvable MIB names: {sorted(pending)}"
        for name, (parent, arcs) in ready.items():
            known[name] = ".".join([known[parent], *arcs])
            del pending[name]
    return {name: "." + oid for name, oid in known.items()}


MIB = mib_oids(MIB_FILE.read_text())
EV = MIB["wazodEvent"] + "."


def mib_symbol(event: str) -> str:
    """The MIB's name of an event's notification, by the MIB's own rule (ha_master_down -> wazodHaMasterDown)."""
    return "wazod" + "".join(w.capitalize() for w in event.split("_"))


def test_the_mib_text_numbers_pinned():
    """A few OIDs an NMS already has configured, spelt out: the MIB text itself must not renumber."""
    assert MIB["wazodMIB"] == ".1.3.6.1.4.1.32473.7"
    assert MIB["wazodEvent"] == ".1.3.6.1.4.1.32473.7.1.1"
    assert MIB["wazodHaMasterDown"] == ".1.3.6.1.4.1.32473.7.0.10"
    assert MIB["wazodHaTakeoverCompleted"] == ".1.3.6.1.4.1.32473.7.0.13"
    assert MIB["wazodOtherEvent"] == ".1.3.6.1.4.1.32473.7.0.100"
    assert MIB["wazodHaFenced"] == ".1.3.6.1.4.1.32473.7.0.23"  # the quorum events of issue 19
    assert MIB["wazodBerofosTaken"] == ".1.3.6.1.4.1.32473.7.0.32"
    assert MIB["wazodEventData"] == ".1.3.6.1.4.1.32473.7.1.1.7"
    # every contract event has its own notification in the text
    assert {mib_symbol(e) for e in EVENT_NAMES} <= set(MIB)


def make_ctx(tmp_path, traps, **snmp):
    path = write_node_config(tmp_path, "pbx1", snmp={"traps": traps, **snmp}, bus={"poll_interval": 0.2})
    loaded = load_config(path)
    config = loaded.config
    state = StateStore(config.node.state_dir)
    return Context(loaded, open_emitter(config), state, StatusBoard(state, config.node_name, config.role))


@contextlib.asynccontextmanager
async def running(ctx):
    notifier = SnmpNotifier(ctx)
    task = asyncio.create_task(notifier.run())
    try:
        await wait_for_async(lambda: notifier.senders, timeout=5)
        yield notifier
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 15)
        ctx.emitter.store.close()


def ours(trapd: Snmptrapd, kind: str = ""):
    return [n for n in trapd.notifications() if n.value(EV + "1") and kind in n.header]


async def test_v2c_trap_and_inform_with_the_mib_varbinds(tmp_path):
    with Snmptrapd() as trapd:
        traps = [{"host": "127.0.0.1", "port": trapd.port, "community": "public"}]
        ctx = make_ctx(tmp_path, traps)
        async with running(ctx):
            ctx.emit("ha_takeover_completed", {"duration": 2.5, "peer": "pbx2"})
            ctx.emit("backup_failed", {"error": "disk full"})
            ctx.emit("custom_thing", {})
            await wait_for_async(lambda: len(ours(trapd)) >= 3, timeout=15)
    first, second, third = ours(trapd)
    assert "TRAP2, SNMP v2c, community public" in first.header
    assert first.trap_oid == MIB["wazodHaTakeoverCompleted"]
    assert first.value(EV + "1") == 'STRING: "ha_takeover_completed"'
    assert first.value(EV + "2") == 'STRING: "pbx1"'
    assert first.value(EV + "4") == "Gauge32: 1"
    assert first.value(EV + "6") == "INTEGER: 1"
    assert json.loads(json.loads(first.value(EV + "7").removeprefix("STRING: "))) == {"duration": 2.5, "peer": "pbx2"}
    assert second.value(EV + "6") == "INTEGER: 2"  # backup_failed is a warning
    assert second.value(EV + "4") == "Gauge32: 2"
    assert third.trap_oid == MIB["wazodOtherEvent"]


async def test_v2c_inform_acknowledged(tmp_path):
    with Snmptrapd() as trapd:
        ctx = make_ctx(tmp_path, [{"host": "127.0.0.1", "port": trapd.port, "community": "public",
                                   "notification": "inform", "timeout": 1, "retries": 1}])
        async with running(ctx) as notifier:
            ctx.emit("sync_completed", {"files": 1})
            await wait_for_async(lambda: notifier.senders[0].sent == 1, timeout=15)
            assert notifier.senders[0].ok is True
    assert "INFORM, SNMP v2c" in ours(trapd)[0].header


async def test_v3_authpriv_trap_and_inform(tmp_path):
    users = [("trapuser", "authkey-123", "privkey-456", ENGINE), ("informuser", "authkey-123", "privkey-456", None)]
    with Snmptrapd(users) as trapd:
        v3 = {"host": "127.0.0.1", "port": trapd.port, "version": "3", "auth_key": "authkey-123",
              "priv_key": "privkey-456"}
        ctx = make_ctx(tmp_path, [{**v3, "user": "trapuser"}], engine_id=ENGINE)
        async with running(ctx):
            ctx.emit("ha_master_down", {"probes": 4})
            await wait_for_async(lambda: ours(trapd, "SNMP v3"), timeout=15)
        ctx2 = make_ctx(tmp_path / "n2", [{**v3, "user": "informuser", "notification": "inform", "timeout": 1}])
        async with running(ctx2) as notifier:
            ctx2.emit("ha_master_up", {})
            await wait_for_async(lambda: notifier.senders[0].sent == 1, timeout=15)
    v3_received = ours(trapd, "SNMP v3")
    assert "TRAP2, SNMP v3, user trapuser" in v3_received[0].header
    assert v3_received[0].value(EV + "1") == 'STRING: "ha_master_down"'
    assert "INFORM, SNMP v3, user informuser" in v3_received[1].header


async def test_wrong_v3_key_is_reported_without_blocking(tmp_path, mosquitto):
    """A wrong key: the target is reported failing, the other target and MQTT go on, and it is retried."""
    from harness.bus import MqttCollector

    from wazod.bus.publisher import MqttPublisher

    users = [("informuser", "authkey-123", "privkey-456", None)]
    with Snmptrapd(users) as trapd, Snmptrapd() as good:
        path = write_node_config(tmp_path, "pbx1", snmp={"traps": [
            {"host": "127.0.0.1", "port": trapd.port, "version": "3", "user": "informuser",
             "auth_key": "WRONG-key-1", "priv_key": "privkey-456", "notification": "inform", "timeout": 0.5,
             "retries": 0},
            {"host": "127.0.0.1", "port": good.port, "community": "public"}]},
            bus={"poll_interval": 0.2, "mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
        loaded = load_config(path)
        state = StateStore(loaded.config.node.state_dir)
        ctx = Context(loaded, open_emitter(loaded.config), state, StatusBoard(state, "pbx1", "disabled"))
        publisher = MqttPublisher(ctx)
        pub_task = asyncio.create_task(publisher.run())
        async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/+/events/#") as sub, \
                running(ctx) as notifier:
            for i in range(3):
                ctx.emit("purge_completed", {"i": i})
            await wait_for_async(lambda: len(ours(good)) >= 3 and len(sub.events()) >= 3, timeout=20)
            bad = notifier.senders[0]
            await wait_for_async(lambda: bad.ok is False, timeout=10)
            assert "digest" in bad.error.lower() or "authentication" in bad.error.lower()
            status = ctx.status.get("snmp")["targets"][f"inform v3 informuser@127.0.0.1:{trapd.port}"]
            assert status["ok"] is False
            assert bad.reader.depth() == 3  # kept for retry, not dropped
        await asyncio.wait_for(pub_task, 15)
    assert "Authentication failed for informuser" in trapd.log_text()
    assert "WRONG-key-1" not in json.dumps(ctx.status.snapshot())


async def test_two_targets_on_one_port_keep_their_own_cursor_across_a_restart(tmp_path):
    """A trap and an inform to one NMS: events the inform could not deliver while the NMS was down
    are delivered after a daemon restart, although the trap target sent (into the void) meanwhile."""
    with Snmptrapd() as first:
        port = first.port
        both = [{"host": "127.0.0.1", "port": port, "community": "public"},
                {"host": "127.0.0.1", "port": port, "community": "public", "notification": "inform",
                 "timeout": 0.3, "retries": 0}]
        ctx = make_ctx(tmp_path, both)
        async with running(ctx) as notifier:
            ctx.emit("backup_completed", {"n": 0})
            await wait_for_async(lambda: [s.sent for s in notifier.senders] == [1, 1], timeout=15)
            first.stop()  # the NMS goes down
            for i in range(1, 4):
                ctx.emit("purge_completed", {"n": i})
            trap, inform = notifier.senders
            await wait_for_async(lambda: trap.sent == 4 and inform.ok is False, timeout=15)
            targets = ctx.status.get("snmp")["targets"]
            assert targets[f"trap v2c 127.0.0.1:{port}"]["ok"] is True
            assert targets[f"inform v2c 127.0.0.1:{port}"]["ok"] is False
            assert inform.reader.depth() == 3
    second = Snmptrapd()
    second.port = port  # the NMS is back, same address
    with second:
        ctx = make_ctx(tmp_path, both)  # the daemon restarted
        async with running(ctx) as notifier:
            await wait_for_async(lambda: len(ours(second, "INFORM")) >= 3, timeout=20)
            assert notifier.senders[0].sent == 0  # the trap target had sent them all already
    informs = [json.loads(json.loads(n.value(EV + "7").removeprefix("STRING: ")))["n"]
               for n in ours(second, "INFORM")]
    assert informs[:3] == [1, 2, 3]
    assert not ours(second, "TRAP2")


def test_engine_id_is_kept_per_node(tmp_path):
    config = load_config(write_node_config(tmp_path)).config
    first = engine_id(config)
    assert first.startswith("80007ed905") and len(first) == 26
    assert engine_id(config) == first
    assert (tmp_path / "state" / "snmp-engine-id").read_text().strip() == first


def test_bad_target_config_is_a_clear_error(tmp_path):
    from wazod.errors import ConfigError

    path = write_node_config(tmp_path, snmp={"traps": [{"host": "h", "version": "3", "user": "u",
                                                         "auth_key": "short", "priv_key": "longenough"}]})
    with pytest.raises(ConfigError, match="auth_key must be at least 8"):
        load_config(path)


# --- the MIB ------------------------------------------------------------------------

def test_shipped_mib_is_the_rendered_one():
    assert MIB_FILE.read_text() == render_mib(), "regenerate: python -m wazod.bus.mib > wazod/mibs/WAZOD-MIB.txt"
    assert set(NOTIFICATION_NUMBERS) >= EVENT_NAMES  # every contract event has its own notification


def test_mib_loads_in_net_snmp(tmp_path):
    base = base_mib_dir()
    if base is None:
        pytest.skip("no SNMPv2-SMI for net-snmp: install erlang-snmp or snmp-mibs-downloader")
    mibs = tmp_path / "mibs"
    mibs.mkdir()
    for module in ("SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF"):
        src = next(p for p in (base / f"{module}{e}" for e in ("", ".txt", ".mib")) if p.exists())
        (mibs / f"{module}.txt").symlink_to(src)
    env = {"PATH": os.environ["PATH"], "MIBS": "", "HOME": str(tmp_path)}
    names = [f"WAZOD-MIB::{mib_name(n)}" for n in NOTIFICATION_NUMBERS] + ["WAZOD-MIB::wazodOtherEvent",
                                                                          "WAZOD-MIB::wazodEventData"]
    res = subprocess.run(["snmptranslate", "-M", f"{mibs}:{MIB_FILE.parent}", "-m", "+WAZOD-MIB", "-PW", "-On",
                          *names], capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    oids = res.stdout.split()
    expected = [MIB[mib_symbol(n)] for n in NOTIFICATION_NUMBERS]
    assert oids[: len(expected)] == expected
    assert oids[-2:] == [MIB["wazodOtherEvent"], MIB["wazodEventData"]]
    # and the code sends what the text says
    assert ["." + ".".join(map(str, notification_oid(n))) for n in NOTIFICATION_NUMBERS] == expected
    assert "WAZOD-MIB" not in res.stderr, res.stderr  # no warning about our module
    # the full description is there for an NMS to show
    res = subprocess.run(["snmptranslate", "-M", f"{mibs}:{MIB_FILE.parent}", "-m", "+WAZOD-MIB", "-Td",
                          "WAZOD-MIB::wazodHaTakeoverCompleted"], capture_output=True, text=True, env=env, timeout=30)
    assert "NOTIFICATION-TYPE" in res.stdout and "wazodEventSeq" in res.stdout


async def test_agent_answers_get_and_walk(tmp_path):
    from harness import free_port

    port = free_port()
    ctx = make_ctx(tmp_path, [], agent={"enabled": True, "listen": f"127.0.0.1:{port}", "community": "wazro"})
    ctx.state.write("job-backup", {"last_result": "failed", "last_run": "2026-11-27T06:25:00+00:00"})
    ctx.emit("backup_failed", {"error": "disk full"})
    ctx.status.update(ha_state="standby", services="stopped")
    notifier = SnmpNotifier(ctx)
    task = asyncio.create_task(notifier.run())
    env = {"PATH": os.environ["PATH"], "MIBS": "", "HOME": str(tmp_path)}

    async def snmp(tool, *args):
        proc = await asyncio.create_subprocess_exec(
            tool, "-v2c", "-On", "-t", "1", "-r", "1", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env)
        return (await proc.communicate())[0].decode()

    try:
        await wait_for_async(lambda: notifier.agent is not None, timeout=10)
        async def walked():
            out = await snmp("snmpwalk", "-c", "wazro", f"127.0.0.1:{port}", MIB["wazodObjects"])
            return out if "pbx1" in out else None

        walk = await wait_for_async(walked, timeout=15)
        role = await snmp("snmpget", "-c", "wazro", f"127.0.0.1:{port}", MIB["wazodRole"] + ".0")
        denied = await snmp("snmpget", "-c", "not-it", f"127.0.0.1:{port}", MIB["wazodRole"] + ".0")
        ctx.status.update(ha_state="active")  # read live, at each request
        state = await snmp("snmpget", "-c", "wazro", f"127.0.0.1:{port}", MIB["wazodHaState"] + ".0")
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 15)
        ctx.emitter.store.close()
    assert f'{MIB["wazodNodeName"]}.0 = STRING: "pbx1"' in walk
    assert f'{MIB["wazodHaState"]}.0 = STRING: "standby"' in walk
    assert f'{MIB["wazodServices"]}.0 = STRING: "stopped"' in walk
    assert f"{MIB['wazodLastEventSeq']}.0 = Gauge32: 1" in walk
    assert f'{MIB["wazodBackupLastResult"]}.0 = STRING: "failed"' in walk
    assert f'{MIB["wazodBackupLastRun"]}.0 = STRING: "2026-11-27T06:25:00+00:00"' in walk
    assert f'{MIB["wazodReplicationLastResult"]}.0 = STRING: "none"' in walk  # replication never ran
    assert 'STRING: "disabled"' in role
    assert "Timeout" in denied
    assert 'STRING: "active"' in state
