"""`wazod status`: the contract's JSON and the readable view, from the real CLI."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from harness import free_port, wait_for
from harness.health import make_context, quiet_health, write_config
from harness.util import GiveUp, on_a_terminal

from wazod.jobs import JobResult, run_job
from wazod.locks import OperationLock
from wazod.status_view import render_status

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cli(cfg, *args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "wazod", "status", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=60, env=env, **kw)


@pytest.fixture
def saved_node(tmp_path):
    """A slave whose daemon ran and stopped: saved status, job records, health levels."""
    cfg = write_config(tmp_path, {"ha": {"node_type": "slave"}})
    ctx = make_context(cfg)
    ctx.status.update(ha_state="standby", services="stopped", berofos={"fos1": {"mode": 1}},
                      peer={"name": "pbx1", "address": "10.0.0.1", "up": True, "rtt_ms": 0.8},
                      health={"disk": {"level": "ok", "summary": "fine"},
                              "ntp": {"level": "warning", "since": "2026-11-27T08:00:00+00:00",
                                      "summary": "clock not synchronised (chronyc)"}})

    async def backup_ok(config, **kw):
        return JobResult("backup", "ok")

    async def purge_failed(config, **kw):
        return JobResult("purge", "failed", error="relation cel is locked")

    import asyncio
    asyncio.run(run_job("backup", ctx.config, ctx.emitter, entry=backup_ok))
    asyncio.run(run_job("purge", ctx.config, ctx.emitter, entry=purge_failed))
    ctx.emitter.store.close()
    return cfg


def test_json_has_the_contract_keys(saved_node):
    done = cli(saved_node, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["node"] == "pbx-test" and doc["role"] == "slave" and doc["daemon"] == "not running"
    assert doc["ha_state"] == "standby" and doc["services"] == "stopped"
    assert doc["berofos"] == {"fos1": {"mode": 1}}
    assert set(doc["jobs"]) == {"replication", "sync", "backup", "purge"}
    for job in doc["jobs"].values():
        assert {"last_result", "last_run", "next_run"} <= set(job)
    assert doc["jobs"]["backup"]["last_result"] == "ok" and doc["jobs"]["purge"]["last_result"] == "failed"
    assert doc["jobs"]["replication"]["last_result"] is None and doc["jobs"]["replication"]["next_run"] is None
    assert doc["jobs"]["backup"]["next_run"]  # from the schedule, even with the daemon down
    assert doc["health"]["ntp"]["level"] == "warning"
    assert doc["saved_at"]


def test_readable_view_when_the_daemon_is_down(saved_node):
    done = cli(saved_node)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert not ANSI.search(out), "no colour when stdout is not a terminal"
    lines = out.splitlines()
    assert lines[0].startswith("DAEMON NOT RUNNING: showing the state saved")
    assert lines[1].startswith("pbx-test  slave  HA standby since") and "services stopped" in lines[1]
    assert "peer      pbx1 (10.0.0.1)  up" in out and "rtt_ms 0.8" in out
    assert "berofos   fos1 mode 1 (lines on master)" in out
    backup = next(line for line in lines if line.lstrip().startswith("backup"))
    assert re.search(r"backup  ok in 0.0 s \d\d:\d\d [A-Z+\-0-9]+( \(\d+ s ago\))?  next .* if the daemon runs",
                     backup)
    assert "error: relation cel is locked" in out
    assert "(replication, sync: not run on a slave node)" in out
    assert "health    ok: disk" in out
    assert re.search(r"ntp\s+warning since .*: clock not synchronised", out)
    assert len(lines) <= 14, "compact: fits on a screen"


def test_running_daemon_and_colour_on_a_terminal_only(saved_node, tmp_path):
    lock = OperationLock(tmp_path / "state", "daemon")
    lock.acquire()  # what a running daemon holds
    try:
        code, text = on_a_terminal([sys.executable, "-m", "wazod", "status", "--config", str(saved_node)],
                                   drop_env=("NO_COLOR", "TERM"))
        assert code == 0
        assert "\x1b[31mfailed\x1b[0m" in text and "\x1b[32mstandby\x1b[0m" in text
        assert "NOT RUNNING" not in ANSI.sub("", text)
        assert "if the daemon runs" not in text
        doc = json.loads(cli(saved_node, "--json").stdout)
        assert doc["daemon"] == "running" and "saved_at" not in doc
    finally:
        lock.release()


def test_failed_db_part_is_not_hidden_by_a_data_only_run(tmp_path):
    """The real backup: the morning run fails on the database, a manual data-only run works; still failed."""
    from harness import free_port

    root = tmp_path / "root"
    (root / "etc/asterisk").mkdir(parents=True)
    (root / "etc/asterisk/pjsip.conf").write_text("[general]\n")
    cfg = write_config(tmp_path, {"backup": {"dir": str(tmp_path / "backups"), "root": str(root),
                                             "dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/asterisk"}})

    def wazod(*args):
        return subprocess.run([sys.executable, "-m", "wazod", "--config", str(cfg), *args],
                              capture_output=True, text=True, timeout=120)

    assert wazod("backup").returncode == 1  # data and db: the database is unreachable
    assert wazod("backup", "data").returncode == 0
    doc = json.loads(cli(cfg, "--json").stdout)
    backup = doc["jobs"]["backup"]
    assert backup["last_result"] == "failed" and backup["failed_parts"] == ["db"]
    assert backup["parts"]["data"]["last_result"] == "ok" and backup["parts"]["db"]["last_result"] == "failed"
    assert backup["error"].startswith("db: database asterisk unreachable")
    out = cli(cfg).stdout
    line = next(i for i, text in enumerate(out.splitlines()) if text.lstrip().startswith("backup"))
    shown = out.splitlines()[line:line + 3]
    assert re.match(r"backup\s+failed \(db failed ", shown[0].strip()), shown
    assert shown[1].strip().startswith("error: db: database asterisk unreachable"), shown
    assert any("parts: data ok" in text and "db failed" in text for text in shown), shown
    assert "backup  ok" not in out
    assert wazod("backup").returncode == 1 and wazod("backup", "db").returncode == 1
    assert json.loads(cli(cfg, "--json").stdout)["jobs"]["backup"]["last_result"] == "failed"


def test_check_exits_3_only_when_the_daemon_is_not_running(saved_node, tmp_path):
    assert cli(saved_node).returncode == 0  # the contract: 0 whenever it could answer
    done = cli(saved_node, "--check")
    assert done.returncode == 3 and "DAEMON NOT RUNNING" in done.stdout
    assert cli(saved_node, "--check", "--json").returncode == 3
    lock = OperationLock(tmp_path / "state", "daemon")
    lock.acquire()
    try:
        assert cli(saved_node, "--check").returncode == 0
    finally:
        lock.release()


def test_snmp_targets_engine_id_and_active_shown_in_text(tmp_path):
    cfg = write_config(tmp_path, {"ha": {"node_type": "slave"}})
    ctx = make_context(cfg)
    ctx.status.update(ha_state="active", services="running", snmp={
        "engine_id": "80007ed905a1b2c3d4e5f60718",
        "targets": {"trap v2c 10.0.0.9:162": {"ok": True, "error": None},
                    "inform v3 nms@10.0.0.9:162": {"ok": False, "error": "No SNMP response received before timeout"}}})
    ctx.emitter.store.close()
    out = cli(cfg).stdout
    assert "snmp      engine ID 80007ed905a1b2c3d4e5f60718  ok: trap v2c 10.0.0.9:162" in out
    assert "inform v3 nms@10.0.0.9:162 failed: No SNMP response received before timeout" in out
    assert "HA active" in out and "no redundancy" in out
    from wazod.config import load_config
    from wazod.status_view import collect_status

    painted = render_status(collect_status(load_config(cfg).config), color=True)
    assert "\x1b[33mactive\x1b[0m" in painted  # yellow: alone, unlike standby's green
    assert "\x1b[32mactive" not in painted


def test_no_color_environment_wins(saved_node):
    from wazod.config import load_config
    from wazod.status_view import collect_status

    doc = collect_status(load_config(saved_node).config)
    assert ANSI.search(render_status(doc, color=True))
    os.environ["NO_COLOR"] = "1"
    try:
        assert not ANSI.search(render_status(doc, color=True))
    finally:
        del os.environ["NO_COLOR"]



def test_a_released_master_is_shown_in_red(saved_node):
    """An etcd master whose own services died and gave the key up is a failure to look at, not a state."""
    from wazod.config import load_config
    from wazod.status_view import collect_status

    doc = collect_status(load_config(saved_node).config)
    doc["ha_state"] = "released"
    os.environ.pop("NO_COLOR", None)
    assert "HA \x1b[31mreleased\x1b[0m" in render_status(doc, color=True)

def test_frozen_ha_and_disconnected_bus_are_shown():
    doc = {"node": "pbx2", "role": "slave", "daemon": "running", "ha_state": "flapping", "ha_frozen": "flapping",
           "services": "stopped", "bus": {"connected": False, "error": "connection refused"}, "jobs": {},
           "berofos": {}}
    lines = render_status(doc).splitlines()
    assert lines[0] == "HA FROZEN (flapping): no automatic takeover or failback"
    assert "bus       not connected: connection refused (events wait in the outbox)" in lines


def test_maintenance_is_shown_near_the_top(tmp_path):
    doc = {"node": "pbx1", "role": "master", "daemon": "running", "ha_state": "active", "services": "running",
           "maintenance": {"active": True, "set_by": "alice", "reason": "upgrade to 25.01"},
           "jobs": {}, "berofos": {}}
    out = render_status(doc)
    assert out.splitlines()[0] == "MAINTENANCE ON by alice: upgrade to 25.01 (HA takes no action)"


def test_the_real_daemon_serves_health_and_status_then_stops(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, {
        "ha": {"node_type": "disabled"},
        "status": {"listen": f"127.0.0.1:{port}"},
        "health": {"interval": 0.5, **quiet_health(disk={"paths": [str(tmp_path)]})},
        "logging": {"level": "warning"},
    })
    daemon = subprocess.Popen([sys.executable, "-m", "wazod", "run", "--config", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def get(path):
            if daemon.poll() is not None:
                raise GiveUp(f"wazod run exited with {daemon.returncode}: "
                             f"{daemon.stderr.read().decode(errors='replace')[-3000:]}")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, json.loads(resp.read())

        status, health = wait_for(lambda: get("/health"), timeout=30, interval=0.2)
        assert status == 200 and health["status"] == "ok"
        wait_for(lambda: get("/health")[1]["checks"]["disk"]["checked_at"], timeout=10)
        time.sleep(1.0)  # a few main-loop ticks
        status, live = get("/liveness")
        assert status == 200 and live["lag"] < 2.0
        status, doc = get("/status")
        assert status == 200 and doc["daemon"] == "running" and doc["role"] == "disabled"
        out = cli(cfg).stdout
        assert "NOT RUNNING" not in out and out.startswith("pbx-test  disabled")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            raise
    assert rc == 0, daemon.stderr.read().decode()[-2000:]
    out = cli(cfg).stdout
    assert out.startswith("DAEMON NOT RUNNING")
    assert "health    ok: disk" in out  # the saved levels are still shown
