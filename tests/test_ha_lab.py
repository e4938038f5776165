"""Failover in the two-host lab: real daemons, real probes, real network faults, real processes.

The slave's services are the SIP stand-in driven by the ``command`` backend;
the master's Asterisk is another stand-in. Every assertion is on something
observable: events in the nodes' durable stores, a process answering SIP OPTIONS
(or not), the daemons' status files.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from harness import wait_for
from harness.ha_lab import FAST, flap_link, ha_lab_fixture  # noqa: F401  (registers the ha_lab fixture)

# the features these tests drive: a removed one is a failure here, never a skip
from wazod.berofos import simulator  # noqa: F401
from wazod.sync import copy_back  # noqa: F401

pytestmark = [pytest.mark.lab]


def _names(node, after=0):
    return [e["name"] for e in node.events(after=after) if e["name"].startswith(("ha_", "berofos_"))]


def test_blackhole_takeover_then_failback_after_hold(ha_lab):
    pair = ha_lab(**FAST)
    pair.start_master_asterisk()
    pair.start()
    assert pair.slave.standin_pid() is None  # standby: no services on the slave
    assert not pair.slave.sip_answers()

    pair.lab.blackhole("master")
    done = pair.slave.wait_event("ha_takeover_completed", timeout=20)
    down = pair.slave.wait_event("ha_master_down")
    assert down["data"]["reason"] == "unreachable"
    assert down["data"]["detection_s"] > 0 and down["data"]["first_failure_at"]
    assert done["data"]["duration"] >= 0 and done["data"]["first_start_action_at"]
    assert pair.slave.sip_answers()  # the slave's "Asterisk" now answers
    assert pair.slave.status()["ha_state"] == "active"
    # the master, cut off, saw its slave vanish
    pair.master.wait_event("ha_slave_down", timeout=10)

    restored = time.monotonic()
    pair.lab.unblackhole("master")
    back = pair.slave.wait_event("ha_failback_completed", timeout=20)
    assert time.monotonic() - restored >= FAST["failback_hold"]
    assert "files" in back["data"] and "copy_back" in back["data"]
    assert back["data"]["master_up_for_s"] >= FAST["failback_hold"]
    assert pair.slave.standin_pid() is None and not pair.slave.sip_answers()
    pair.slave.wait_state("standby")
    pair.master.wait_event("ha_slave_up", timeout=10)
    names = _names(pair.slave)
    assert names == ["ha_master_down", "ha_takeover_started", "ha_takeover_completed", "ha_master_up",
                     "ha_failback_started", "ha_failback_completed"]


def test_dead_asterisk_on_pingable_master_is_taken_over(ha_lab):
    pair = ha_lab(**FAST)
    pair.start_master_asterisk()
    pair.start()
    pair.kill_master_asterisk()
    assert pair.lab.can_ping("slave", pair.lab.master.addr)  # the host still answers ping
    pair.slave.wait_event("ha_takeover_completed", timeout=20)
    down = pair.slave.wait_event("ha_master_down")
    assert down["data"]["reason"] == "sip_dead"
    probes = {p["probe"]: p for p in down["data"]["last_round"]["probes"]}
    assert probes["icmp"]["ok"] and not probes["sip"]["ok"]  # host up, Asterisk dead
    assert pair.slave.sip_answers()


def test_slave_cut_from_witness_and_master_is_isolated(ha_lab):
    pair = ha_lab(witness=True, **FAST)
    pair.start_master_asterisk()
    pair.start()
    pair.lab.cut_link()
    pair.lab.cut_witness()
    iso = pair.slave.wait_event("ha_isolated", timeout=15)
    assert iso["data"]["witnesses_reached"] is False
    pair.slave.wait_rounds(2 * FAST["fall"] + 2)  # rounds enough to have decided a takeover twice over
    assert not pair.slave.events("ha_takeover_started")
    assert pair.slave.standin_pid() is None
    assert pair.slave.status()["ha_state"] == "isolated"
    # the witness comes back while the master stays unreachable: now the master really is the lost one
    pair.lab.restore_witness()
    pair.slave.wait_event("ha_takeover_completed", timeout=15)
    assert pair.slave.standin_pid() is not None


def test_restarted_slave_keeps_services_while_active(ha_lab):
    pair = ha_lab(**FAST)
    pair.start_master_asterisk()
    pair.start()
    pair.lab.blackhole("master")
    pair.slave.wait_event("ha_takeover_completed", timeout=20)
    pid = pair.slave.standin_pid()
    assert pid
    assert pair.slave.stop() == 0
    mark = pair.slave.last_seq()
    pair.slave.start()
    pair.slave.wait_event("ha_master_down", after=mark, timeout=20)  # decided afresh: master still down
    pair.slave.wait_rounds(2 * FAST["fall"] + 4)  # rounds enough for a stop or a second start
    after = _names(pair.slave, after=mark)
    assert after == ["ha_master_down"]  # no stop, no second start
    assert pair.slave.standin_pid() == pid and pair.slave.sip_answers()
    assert pair.slave.status()["ha_state"] == "active"


def test_ha_conf_switched_to_disabled_stops_the_slave_acting(ha_lab):
    pair = ha_lab(**FAST)
    pair.start_master_asterisk()
    pair.start()
    mark = pair.slave.last_seq()
    # the web UI disables HA and, at the same moment, the master vanishes
    pair.slave.write_ha_conf("disabled")
    pair.lab.blackhole("master")
    reloaded = pair.slave.wait_event("config_reloaded", after=mark, timeout=10)
    assert reloaded["data"]["role"] == "disabled"
    pair.slave.wait_state("disabled", timeout=10)
    # disabled, the watch runs no rounds: wait on the master's, which sees its slave gone quiet
    pair.master.wait_rounds(2 * FAST["fall"] + 2)
    assert not pair.slave.events("ha_takeover_completed")
    assert pair.slave.standin_pid() is None  # nothing started: the change won the race, under the ha lock
    # and back to slave: the watch restarts from fresh rounds and takes over
    pair.slave.write_ha_conf("slave")
    pair.slave.wait_event("ha_takeover_completed", timeout=20)


@pytest.mark.slow
def test_link_flapping_for_a_minute_gives_at_most_one_takeover_then_flapping(ha_lab):
    pair = ha_lab(**{**FAST, "flap_window": 10.0, "flap_limit": 4})
    pair.start_master_asterisk()
    pair.start()
    flap_link(pair.lab, 60.0, period=1.0)
    names = _names(pair.slave)
    assert names.count("ha_takeover_started") <= 1
    flapping = pair.slave.events("ha_flapping")
    assert flapping and flapping[0]["data"]["active"] is True
    assert not pair.slave.events("ha_failback_started")  # frozen while the link flaps
    # the link is stable again: the window passes, the freeze ends and the state is reconciled
    thaw = pair.slave.wait_event("ha_flapping", after=flapping[0]["seq"], timeout=30)
    assert thaw["data"]["active"] is False
    if "ha_takeover_completed" in names:
        pair.slave.wait_event("ha_failback_completed", timeout=20)
    pair.slave.wait_state("standby", timeout=20)
    assert _names(pair.slave).count("ha_takeover_started") <= 1


@pytest.mark.slow
def test_thirty_percent_loss_for_a_minute_with_default_settings_no_takeover(ha_lab):
    pair = ha_lab()  # the shipped defaults of probe_interval, fall, rise, failback_hold
    pair.start_master_asterisk()
    pair.start()
    mark_s, mark_m = pair.slave.last_seq(), pair.master.last_seq()
    before_s, before_m = pair.slave.probe_rounds(), pair.master.probe_rounds()
    pair.lab.drop_share("master", 30)
    pair.lab.drop_share("slave", 30)  # 30 % in each direction: a round trip succeeds 49 % of the time
    try:
        # a minute of the default 0.5 s rounds, counted rather than slept: the watch really probed
        after_s = pair.slave.wait_rounds(120, timeout=120)
    finally:
        pair.lab.clear_drop("master")
        pair.lab.clear_drop("slave")
    after_m = pair.master.probe_rounds()
    for before, after in ((before_s, after_s), (before_m, after_m)):
        good, failed = after["good"] - before["good"], after["failed"] - before["failed"]
        assert good + failed >= 100 and good > 3 * failed, (before, after)  # most rounds succeeded
    assert _names(pair.slave, after=mark_s) == []
    assert _names(pair.master, after=mark_m) == []
    assert pair.slave.standin_pid() is None
    assert pair.slave.status()["ha_state"] == "standby"


def _berofos_mode(pair, port: int) -> int:
    code = ("import json,urllib.request;"
            f"print(json.load(urllib.request.urlopen('http://127.0.0.1:{port}/_sim/state', timeout=5))['mode'])")
    res = pair.lab.exec("slave", [sys.executable, "-c", code], timeout=20)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip())


def test_takeover_sets_the_berofos_to_mode_0_and_failback_back_to_1(ha_lab):
    pair = ha_lab(**FAST)
    port = 18080
    # the switch sits beside the slave: its simulator listens on the slave's loopback
    pair.lab.popen("slave", [sys.executable, "-m", "wazod.berofos.simulator", "--port", str(port),
                             "--login", "admin:s3cret-pw", "--digest", "--mode", "1"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _berofos_mode(pair, port) == 1, timeout=15)
    (pair.slave.dir / "bnfos.conf").write_text(
        f"[fos1]\nmac = 00:19:32:00:12:1D\nhost = 127.0.0.1:{port}\nlogin = admin:s3cret-pw\n")
    pair.start_master_asterisk()
    pair.start()
    assert _berofos_mode(pair, port) == 1

    pair.lab.blackhole("master")
    done = pair.slave.wait_event("ha_takeover_completed", timeout=30)
    assert done["data"]["berofos"] == [{"name": "fos1", "ok": True, "mode": 0, "error": None}]
    assert _berofos_mode(pair, port) == 0
    assert pair.slave.events("berofos_mode_changed")

    pair.lab.unblackhole("master")
    back = pair.slave.wait_event("ha_failback_completed", timeout=30)
    assert back["data"]["berofos"][0]["mode"] == 1
    assert _berofos_mode(pair, port) == 1
    # the password never reached the events or the log
    assert "s3cret-pw" not in str(pair.slave.events())
    assert "s3cret-pw" not in pair.slave.log_path.read_text()


def test_failback_copies_back_the_voicemail_left_on_the_slave(ha_lab, make_sshd):
    pair = ha_lab(**FAST)
    sshd = make_sshd(listen=pair.lab.master.addr, netns=pair.lab.master.netns)
    master_root, slave_root = pair.root / "master-root", pair.root / "slave-root"
    inbox = "var/spool/asterisk/voicemail/default/1001/INBOX"
    (slave_root / inbox).mkdir(parents=True)
    master_root.mkdir()
    pair.slave.overrides["sync"] = {
        "ssh_key": str(sshd.client_key), "known_hosts": str(sshd.write_known_hosts()), "ssh_port": sshd.port,
        "remote_root": str(master_root), "local_root": str(slave_root),
        "copy_back_paths": ["/var/spool/asterisk/voicemail"]}
    pair.slave.write_config()
    pair.start_master_asterisk()
    pair.start()
    pair.lab.blackhole("master")
    pair.slave.wait_event("ha_takeover_completed", timeout=20)
    # a caller leaves a message on the slave during the outage
    (slave_root / inbox / "msg0000.wav").write_bytes(b"RIFF" + b"\x01" * 4000)
    pair.lab.unblackhole("master")
    back = pair.slave.wait_event("ha_failback_completed", timeout=60)
    assert back["data"]["copy_back"]["ok"] is True, back["data"]["copy_back"]
    assert back["data"]["files"] >= 1
    assert (master_root / inbox / "msg0000.wav").read_bytes() == b"RIFF" + b"\x01" * 4000
    assert pair.slave.standin_pid() is None
