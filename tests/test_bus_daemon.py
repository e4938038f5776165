"""The real daemon (``wazod run``) and the bus: last will on SIGKILL, seq across restarts."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest
from harness import kill_process_group, wait_for_async
from harness.bus import MqttCollector, Snmptrapd, write_node_config

pytestmark = pytest.mark.mqtt


def start_daemon(config_path, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "wazod", "run", "--config", str(config_path)],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


async def test_sigkill_sets_online_false_and_restart_continues_seq(tmp_path, mosquitto):
    trapd = Snmptrapd().start()
    (tmp_path / "root" / "etc" / "asterisk").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "asterisk" / "sip.conf").write_text("[general]\n")
    config = write_node_config(tmp_path, "pbx2", bus={"mqtt": {"host": mosquitto.host, "port": mosquitto.port,
                                                              "keepalive": 5, "reconnect_min": 0.1},
                                                     "poll_interval": 0.2},
                               snmp={"traps": [{"host": "127.0.0.1", "port": trapd.port, "community": "public"}]},
                               backup={"root": str(tmp_path / "root"), "dir": str(tmp_path / "backups")})
    log_path = tmp_path / "daemon.log"
    async with MqttCollector(mosquitto.host, mosquitto.port, "wazod/pbx2/#") as sub:
        daemon = start_daemon(config, log_path)
        try:
            await wait_for_async(lambda: any(e["name"] == "daemon_started" for e in sub.events()), timeout=30,
                                 message=f"no daemon_started on the bus: {log_path.read_text()[-2000:]}")
            await wait_for_async(lambda: (m := sub.last("/online")) and m.payload == b"true", timeout=10)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
            # the broker's last will: retained false
            await wait_for_async(lambda: sub.last("/online").payload == b"false", timeout=15)
            seen_before = {e["seq"] for e in sub.events()}

            daemon = start_daemon(config, log_path)
            await wait_for_async(lambda: sum(e["name"] == "daemon_started" for e in sub.events()) >= 2, timeout=30)
            await wait_for_async(lambda: sub.last("/online").payload == b"true", timeout=10)
            # `wazod backup` run by hand, in its own process: its event reaches the bus through the daemon
            for _ in range(20):  # the daemon's own first backup may hold the lock a moment (exit 3)
                backup = subprocess.run([sys.executable, "-m", "wazod", "backup", "data", "--config", str(config)],
                                        capture_output=True, text=True, timeout=120)
                if backup.returncode != 3:
                    break
                await asyncio.sleep(0.5)
            assert backup.returncode == 0, backup.stderr
            await wait_for_async(lambda: any(e["name"] == "backup_completed" for e in sub.events()), timeout=10)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
            await wait_for_async(lambda: any(e["name"] == "daemon_stopping" for e in sub.events()), timeout=10)
            await wait_for_async(lambda: sub.last("/online").payload == b"false", timeout=10)
            # the same events went to the trap receiver, from the real daemon
            await wait_for_async(lambda: any("daemon_stopping" in (n.value(".1.1.1") or "")
                                             for n in trapd.notifications()), timeout=10)
        finally:
            kill_process_group(daemon)
            trapd.stop()
    events = sub.events()
    seqs = sorted({e["seq"] for e in events})
    assert seqs == list(range(1, seqs[-1] + 1)), "seq must continue across the SIGKILL and restart, no hole"
    second_start = [e for e in events if e["name"] == "daemon_started"][1]
    assert second_start["seq"] > max(seen_before)
    assert all(e["node"] == "pbx2" for e in events)
    assert len({e["origin_uuid"] for e in events}) == 1  # the kept installation UUID
    trap_names = [n.value(".32473.7.1.1.1") for n in trapd.notifications()]
    assert trap_names.count('STRING: "daemon_started"') == 2
    assert 'STRING: "backup_completed"' in trap_names
    cli_backups = [e for e in events if e["name"] == "backup_completed" and e["data"].get("what") == "data"]
    assert cli_backups and cli_backups[0]["node"] == "pbx2"


async def test_cli_events_command_reports_gaps(tmp_path, mosquitto):
    """``wazod events --follow --json`` subscribes, prints JSON lines, and names a gap in seq."""
    config = write_node_config(tmp_path, "pbx1", bus={"mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wazod", "events", "--follow", "--json", "--count", "3", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    try:
        import aiomqtt

        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            first = b""
            while b"following wazod/+/events/#" not in first:  # wait until it has subscribed
                line = await asyncio.wait_for(proc.stderr.readline(), 30)
                assert line, first
                first += line
            for seq in (7, 8, 11):
                body = json.dumps({"name": "sync_completed", "origin_uuid": "u", "node": "pbx9", "seq": seq,
                                   "timestamp": "2026-11-27T09:30:00+00:00", "data": {"files": 2}})
                await client.publish("wazod/pbx9/events/sync_completed", body, qos=1)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [7, 8, 11]
    err = first.decode() + err.decode()
    assert "gap" in err and "9..10" in err and "pbx9" in err


def test_cli_events_reads_the_local_outbox_without_broker(tmp_path):
    from wazod.config import load_config
    from wazod.events import open_emitter

    config = write_node_config(tmp_path, "pbx1")
    emitter = open_emitter(load_config(config).config)
    emitter.emit("backup_completed", {"files": 12, "password": "hunter2"})
    emitter.emit("ha_master_down", {"probes": 4})
    emitter.emit("ha_master_up", {})
    emitter.store.close()

    def wazod_events(*args):
        return subprocess.run([sys.executable, "-m", "wazod", "events", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60)

    res = wazod_events()
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3
    assert " pbx1 #1 backup_completed files=12 password=********" in lines[0]
    assert "hunter2" not in res.stdout
    res = wazod_events("--json", "--name", "ha_*", "--last", "2")
    assert [json.loads(line)["name"] for line in res.stdout.splitlines()] == ["ha_master_down", "ha_master_up"]
    assert "gap" not in res.stderr  # --name makes holes normal
    res = wazod_events("--count", "0")
    assert res.returncode == 2 and "--count" in res.stderr


async def test_cli_events_follows_the_local_outbox(tmp_path):
    from wazod.config import load_config
    from wazod.events import open_emitter

    config = write_node_config(tmp_path, "pbx1")
    emitter = open_emitter(load_config(config).config)
    emitter.emit("daemon_started", {})  # history: not printed by --follow
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wazod", "events", "--follow", "--count", "2", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"following the outbox of pbx1" in line, line
        emitter.emit("purge_completed", {"rows": 10})
        emitter.emit("purge_failed", {"error": "table locked"})
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        emitter.store.close()
    lines = out.decode().splitlines()
    assert len(lines) == 2
    assert "#2 purge_completed rows=10" in lines[0] and "#3 purge_failed error=table locked" in lines[1]


async def test_cli_events_fills_a_gap_of_this_nodes_events_from_the_outbox(tmp_path, mosquitto):
    """The broker restarts while ``wazod events --follow`` watches: this node's events published meanwhile
    never reach it from the bus; the next one reveals the hole, which is filled from the local outbox."""
    import aiomqtt

    from wazod.config import load_config
    from wazod.events import open_emitter

    config = write_node_config(tmp_path, "pbx1", bus={"mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
    emitter = open_emitter(load_config(config).config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wazod", "events", "--follow", "--json", "--count", "4", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    err = b""

    async def until_following():
        nonlocal err
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, err
            err += line
            if b"following wazod/+/events/#" in line:
                return

    async def publish(envelope):
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.publish(f"wazod/pbx1/events/{envelope['name']}", json.dumps(envelope), qos=1)

    try:
        await until_following()
        await publish(emitter.emit("backup_completed", {"what": "all"}))  # seq 1, received
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert json.loads(line)["seq"] == 1
        mosquitto.restart()
        emitter.emit("ha_master_down", {"probes": 3})  # seq 2 and 3: published while the watcher was away
        emitter.emit("ha_takeover_started", {})
        await until_following()  # it reconnected
        await publish(emitter.emit("ha_takeover_completed", {"duration": 2.0}))  # seq 4 reveals the hole
        out, rest = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        emitter.store.close()
    assert proc.returncode == 0, rest.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [(e["seq"], e["name"]) for e in events] == [
        (2, "ha_master_down"), (3, "ha_takeover_started"), (4, "ha_takeover_completed")]
    assert events[0]["data"] == {"probes": 3} and events[0]["node"] == "pbx1"
    err = (err + rest).decode()
    assert "pbx1 seq 2..3 not received from the bus: 2 filled from the local outbox" in err
    assert "gap" not in err
