"""Maintenance in the two-host lab: real daemons in their namespaces, real faults, a real berofos stand-in.

The nodes' status endpoints listen on their lab addresses and demand the
pair's token, so "tell the peer" crosses the veth link exactly as it would
between two Wazo hosts. The slave drives a berofos simulator process (in its
own namespace): its relay mode and the count of mode changes it received
show whether anything was switched.
"""

from __future__ import annotations

import json

import pytest
from harness.berofos import SimProcess, write_bnfos_conf
from harness.ha_lab import FAST, PY, _deep_merge, ha_lab_fixture  # noqa: F401  (registers the ha_lab fixture)
from harness.maintenance import admin_token_file, token_file
from harness.util import wait_for

pytestmark = [pytest.mark.lab]



def _pair(ha_lab, tmp_path, berofos: bool = False):
    pair = ha_lab(**FAST)
    token, admin = token_file(tmp_path), admin_token_file(tmp_path)
    for node in (pair.master, pair.slave):
        node.overrides = _deep_merge(node.overrides, {
            "status": {"listen": f"{node.addr}:9599", "auth": "always", "token_file": str(token),
                       "admin_token_file": str(admin)},
            "maintenance": {"watch_interval": 0.2, "peer_timeout": 2, "peer_retry_interval": 1},
        })
        node.write_config()
    sim = None
    if berofos:
        sim = SimProcess(host=pair.lab.slave.addr, mode=1, wrapper=["ip", "netns", "exec", pair.lab.slave.netns])
        write_bnfos_conf(pair.slave.dir / "bnfos.conf", [("fos1", sim.host, sim.port, "admin:secret")])
    return pair, sim


def _cli(pair, role: str, *args: str):
    node = getattr(pair, role)
    return pair.lab.exec(role, [PY, "-m", "wazod", *args, "--config", str(node.config_path)], timeout=30)


def _sim_state(pair, sim) -> dict:
    code = ("import json,urllib.request;"
            f"print(urllib.request.urlopen('http://{sim.host}:{sim.port}/_sim/state',timeout=5).read().decode())")
    res = pair.lab.exec("slave", [PY, "-c", code], timeout=20)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _maintenance(node) -> dict:
    return node.status().get("maintenance") or {}


def test_no_takeover_while_on_then_takeover_once_off(ha_lab, tmp_path):
    pair, sim = _pair(ha_lab, tmp_path, berofos=True)
    try:
        pair.start_master_asterisk()
        pair.start()
        res = _cli(pair, "slave", "maintenance", "on", "--for", "10m", "--reason", "upgrade the master")
        assert res.returncode == 0 and "peer told" in res.stdout, res.stdout + res.stderr
        wait_for(lambda: _maintenance(pair.master).get("active"), timeout=5)  # the master holds too
        wait_for(lambda: _maintenance(pair.slave).get("active"), timeout=5)
        mark = pair.slave.last_seq()
        changes_before = _sim_state(pair, sim)["mode_changes"]

        # the master "goes down for its upgrade" for far longer than the detection time
        pair.lab.blackhole("master")
        down = pair.slave.wait_event("ha_master_down", after=mark, timeout=15)  # probing and reporting go on
        assert down["data"]["reason"] == "unreachable"
        pair.slave.wait_rounds(6 * FAST["fall"] + 10)  # rounds enough to have taken over three times
        status = pair.slave.status()
        assert status["ha_state"] == "master_down" and status["ha_frozen"] == "maintenance"
        assert status["peer"]["state"] == "down"
        names = [e["name"] for e in pair.slave.events(after=mark)]
        assert not [n for n in names if n.startswith(("ha_takeover", "berofos_"))], names
        assert pair.slave.standin_pid() is None and not pair.slave.sip_answers()
        sim_now = _sim_state(pair, sim)
        assert sim_now["mode"] == 1 and sim_now["mode_changes"] == changes_before  # lines stay on the master

        # maintenance off while the master is still down: the peer cannot be told, the slave takes over
        res = _cli(pair, "slave", "maintenance", "off")
        assert res.returncode == 0 and "could not be told" in res.stderr, res.stdout + res.stderr
        pair.slave.wait_event("ha_takeover_completed", after=mark, timeout=20)
        assert pair.slave.sip_answers()
        wait_for(lambda: _sim_state(pair, sim)["mode"] == 0, timeout=10)  # lines moved to the slave
        ended = pair.slave.events("maintenance_ended", after=mark)
        assert len(ended) == 1 and ended[0]["data"]["cause"] == "off"
        assert pair.slave.events("ha_takeover_started", after=ended[0]["seq"])  # after the end, not before
    finally:
        if sim is not None:
            sim.stop()


def test_set_on_the_master_shows_on_the_slave_survives_a_restart_and_expires(ha_lab, tmp_path):
    pair, _ = _pair(ha_lab, tmp_path)
    pair.start_master_asterisk()
    pair.start()
    # long enough that no restart, however slow, outlives it; shortened below to see it expire
    res = _cli(pair, "master", "maintenance", "on", "--for", "10m", "--reason", "kernel update")
    assert res.returncode == 0 and "peer told" in res.stdout, res.stdout + res.stderr
    wait_for(lambda: _maintenance(pair.slave).get("active"), timeout=5)
    shown = _maintenance(pair.slave)
    assert shown["set_by"].endswith("@lab-master") and shown["reason"] == "kernel update"
    assert shown["origin"] == "peer"
    # the slave's own command answers from its state file, daemon or not
    doc = json.loads(_cli(pair, "slave", "maintenance", "status", "--json").stdout)["maintenance"]
    assert doc["active"] and doc["set_by"].endswith("@lab-master")

    assert pair.slave.stop() == 0
    pair.slave.start()
    pair.slave.wait_state("standby", timeout=20)
    wait_for(lambda: _maintenance(pair.slave).get("active"), timeout=5)
    assert pair.slave.status()["ha_frozen"] == "maintenance"
    assert len(pair.slave.events("maintenance_started")) == 1

    # renewed for 3 s on the master (told to the slave), then both copies end by themselves
    res = _cli(pair, "master", "maintenance", "on", "--for", "3s", "--reason", "kernel update")
    assert res.returncode == 0, res.stdout + res.stderr
    for node in (pair.master, pair.slave):
        ended = node.wait_event("maintenance_ended", timeout=20)
        assert ended["data"]["cause"] == "expired"
    wait_for(lambda: _maintenance(pair.slave).get("active") is False, timeout=5)
    wait_for(lambda: pair.slave.status().get("ha_frozen") is None, timeout=10)
    pair.slave.wait_state("standby", timeout=10)  # master up: nothing to do after the re-evaluation
    assert not pair.slave.events("ha_takeover_started")


def test_services_moved_by_hand_during_maintenance_are_put_right_when_it_ends(ha_lab, tmp_path):
    pair, _ = _pair(ha_lab, tmp_path)
    for node in (pair.master, pair.slave):  # no periodic service check: only the end of maintenance re-reads them
        node.write_config(services_check_interval=0)
    pair.start_master_asterisk()
    pair.start()
    assert _cli(pair, "slave", "maintenance", "on", "--for", "10m", "--local").returncode == 0
    wait_for(lambda: _maintenance(pair.slave).get("active"), timeout=5)
    # an administrator starts the slave's services by hand while the master is fine
    res = _cli(pair, "slave", "services", "start")
    assert res.returncode == 0, res.stdout + res.stderr
    assert pair.slave.standin_pid() is not None
    mark = pair.slave.last_seq()
    # rounds enough for a failback (detection twice over, then the hold)
    pair.slave.wait_rounds(4 * FAST["fall"] + int((FAST["failback_hold"] + 1) / FAST["probe_interval"]))
    assert pair.slave.standin_pid() is not None  # left alone while maintenance is on
    assert not pair.slave.events("ha_failback_started", after=mark)
    # maintenance off: the slave decides afresh from the real service state and gives the services back
    assert _cli(pair, "slave", "maintenance", "off", "--local").returncode == 0
    pair.slave.wait_event("ha_failback_completed", after=mark, timeout=30)
    assert pair.slave.standin_pid() is None and not pair.slave.sip_answers()
    pair.slave.wait_state("standby", timeout=10)
    assert "the HA monitor has no reevaluate()" not in pair.slave.log_path.read_text()
