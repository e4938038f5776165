"""Failover in the two-host lab: real daemons, real probes, real network faults, real processes.

The slave's services are the SIP stand-in driven by the ``command`` backend;
the master's Asterisk is another stand-in. Every assertion is on something
observable: events in the nodes' durable stores, a process answering SIP OPTIONS
(or not), the daemons' status files.
"""

from __future__ import annotations

import time

import pytest
from harness.ha_lab import FAST, flap_link, ha_lab_fixture  # noqa: F401  (registers the ha_lab fixture)

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
