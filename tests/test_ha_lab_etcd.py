"""The etcd arbiter with real daemons: a BridgeLab whose third host runs an etcd cluster (Debian's etcd-server).

Master and slave are real ``wazod run`` daemons naming the cluster in ``ha.arbiter: etcd://...``; the master's
Asterisk and the slave's services are the SIP stand-in. Every assertion is on something observable: the owner
key as etcd holds it (read with etcdctl on the third host), the nodes' events and status, the stand-ins'
processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import wait_for
from harness.etcd import etcd_unavailable_reason
from harness.ha_lab import FAST, PY, ha_lab_fixture, standin_argv  # noqa: F401  (registers the ha_lab fixture)

pytestmark = [pytest.mark.lab]

# the documented site settings: ttl 2 with etcd's --heartbeat-interval 50 --election-timeout 500 (add_etcd's)
TTL = 2


@pytest.fixture(autouse=True)
def _etcd_available():
    reason = etcd_unavailable_reason()
    if reason:
        pytest.skip(reason)


def _names(node, after=0):
    return [e["name"] for e in node.events(after=after) if e["name"].startswith(("ha_", "berofos_"))]


# the master's services status command, counting its calls (one line each) before it runs the stand-in's
STATUS_COUNTER = """import os, sys
with open(sys.argv[1], "a") as f:
    f.write("read\\n")
os.execv(sys.argv[2], sys.argv[2:])
"""


def _count_status_reads(pair) -> Path:
    """The master's ``ha.services.status`` wrapped: each read appends a line to the returned file."""
    script = pair.root / "status_counter.py"
    script.write_text(STATUS_COUNTER)
    reads = pair.root / "master-status-reads"
    reads.write_text("")
    argv = standin_argv(pair.master.addr, pair.master.pidfile, "--status")
    pair.master.write_config(services={"status": [PY, str(script), str(reads), *argv]})
    return reads


def _etcd_pair(ha_lab, size: int, *, before_start=None, **ha):
    pair = ha_lab(bridge=True, **ha)
    if before_start is not None:
        before_start(pair)
    pair.add_etcd(size, ttl=TTL)
    pair.start_master_asterisk()
    pair.start()
    wait_for(lambda: pair.etcd_owner() == "master", timeout=15, message="the master did not claim the owner key")
    return pair


def test_etcd_member_loss_and_leader_election_move_nothing(ha_lab):
    """Issue 19: one member of three lost, then the leader killed (an election), with the shipped probe timings
    and ttl 2: no takeover, no fence, no partition reported; the master keeps the owner key under the same
    lease all along (the new leader extends it)."""
    pair = _etcd_pair(ha_lab, 3)  # shipped probe timings (0.5 s, fall 3)
    etcd = pair.etcd
    lease = etcd.get("/wazod/lab-1/owner")["lease"]
    marks = pair.master.last_seq(), pair.slave.last_seq()
    leader = etcd.leader_index()
    follower = next(i for i in range(3) if i != leader)
    etcd.kill(follower)
    pair.slave.wait_rounds(8)  # 4 s of rounds: two leases' worth
    assert etcd.get("/wazod/lab-1/owner") == {"value": "master", "lease": lease}
    etcd.start_member(follower)
    for _ in range(2):  # two elections in a row
        leader = etcd.leader_index()
        etcd.kill(leader)
        pair.slave.wait_rounds(8)
        assert etcd.get("/wazod/lab-1/owner") == {"value": "master", "lease": lease}
        etcd.start_member(leader)
    pair.master.wait_rounds(4)
    assert _names(pair.master, marks[0]) == [] and _names(pair.slave, marks[1]) == []
    assert pair.master.standin_pid() and not pair.slave.standin_pid()
    assert pair.slave.status()["ha_state"] == "standby"
    assert pair.master.status()["arbiter"]["owner"] == "self"


def test_etcd_owner_releases_the_key_when_its_services_die(ha_lab):
    """The owner's duty (docs/ha-etcd.md): the master's Asterisk dies while its wazod lives and renews its lease.
    The master releases the owner key (read with etcdctl), the slave obtains it and takes over; the master does
    not start its services again while the slave holds the key. When the master's Asterisk is back (systemd),
    the ordinary failback gives the key back to the master."""
    pair = _etcd_pair(ha_lab, 1, **FAST, services_check_interval=0.3)
    mark = pair.master.last_seq()
    pair.kill_master_asterisk()
    released = pair.master.wait_event("ha_released", after=mark, timeout=10)
    assert released["data"]["reason"] == "services_stopped"
    done = pair.slave.wait_event("ha_takeover_completed", timeout=15)
    assert done["data"]["reason"] == "sip_dead"
    assert pair.etcd_owner() == "slave"
    assert pair.slave.standin_pid()
    # the slave holds the key: the master starts nothing (several of its service checks and a failback_hold)
    time.sleep(2 * FAST["failback_hold"])
    assert not pair.master.standin_pid()
    assert pair.etcd_owner() == "slave"
    assert "ha_unfenced" not in _names(pair.master, mark)
    assert pair.master.status()["ha_state"] == "released"
    # systemd restarts the master's Asterisk: the slave gives back after the hold, the master claims the key
    pair.start_master_asterisk()
    pair.slave.wait_event("ha_failback_completed", timeout=20)
    wait_for(lambda: pair.etcd_owner() == "master", timeout=10, message="the master did not claim the key back")
    assert pair.master.standin_pid() and not pair.slave.standin_pid()
    wait_for(lambda: pair.master.status().get("ha_state") == "master", timeout=10)


def test_etcd_owner_finds_its_own_asterisk_dead_by_sip_before_its_services_check(ha_lab):
    """Issue 19, the owner's duty with the shipped ``services_check_interval`` (30 s): the master probes its own
    Asterisk each round (the slave's SIP probe, aimed at itself); dead for ``fall`` rounds (here: port
    unreachable), it reads its services at once, finds them stopped and releases the owner key, so the slave
    takes over within seconds, not at the next 30 s check."""
    reads = {}
    pair = _etcd_pair(ha_lab, 1, **FAST, before_start=lambda p: reads.setdefault("file", _count_status_reads(p)))
    assert pair.master.config()["ha"].get("services_check_interval", 30.0) == 30.0  # the shipped default
    mark, smark = pair.master.last_seq(), pair.slave.last_seq()
    before = len(reads["file"].read_text().split())
    pair.kill_master_asterisk()
    released = pair.master.wait_event("ha_released", after=mark, timeout=10)  # well before the 30 s check
    assert released["data"]["reason"] == "services_stopped" and released["data"]["ok"] is True
    assert len(reads["file"].read_text().split()) > before  # the death was confirmed by the status command
    wait_for(lambda: pair.etcd_owner() != "master", timeout=1, message="the owner key still names the master")
    done = pair.slave.wait_event("ha_takeover_completed", after=smark, timeout=10)
    assert done["data"]["reason"] == "sip_dead"
    assert pair.etcd_owner() == "slave" and pair.slave.standin_pid()


def test_etcd_owner_whose_asterisk_answers_late_keeps_the_key_without_reading_its_services(ha_lab):
    """An Asterisk answering OPTIONS 1.5 s late (PJSIP under load; the SIP budget ha.sip_timeout is 4 s) is
    alive for the master's own probe as for the slave's: no services read, no release, nothing moves."""
    reads = {}
    pair = _etcd_pair(ha_lab, 1, **FAST, before_start=lambda p: reads.setdefault("file", _count_status_reads(p)))
    mark, smark = pair.master.last_seq(), pair.slave.last_seq()
    before = len(reads["file"].read_text().split())
    pair.set_master_sip_delay(1.5)
    assert not pair.master.sip_answers(timeout=0.6) and pair.master.sip_answers(timeout=3)  # late, but alive
    pair.master.wait_rounds(30)  # 6 s of rounds of 0.2 s, each with a self-probe (a round misses the answer)
    assert len(reads["file"].read_text().split()) == before
    assert _names(pair.master, mark) == [] and _names(pair.slave, smark) == []
    assert pair.etcd_owner() == "master" and pair.master.standin_pid() and not pair.slave.standin_pid()
    assert pair.master.status()["ha_state"] == "master" and pair.slave.status()["ha_state"] == "standby"


def test_etcd_real_master_death_is_taken_over_once_its_lease_expires(ha_lab):
    """The master host dies (wazod and Asterisk SIGKILLed: no release, no revoke): the slave takes over once
    the master's lease expired (ttl), not before, and holds the owner key. The time is measured by
    bench/etcd_takeover, not asserted here."""
    pair = _etcd_pair(ha_lab, 1, **FAST)
    killed = time.monotonic()
    pair.kill_master()
    done = pair.slave.wait_event("ha_takeover_completed", timeout=15)
    assert time.monotonic() - killed >= TTL - 1  # never before the lease could expire
    assert done["data"]["reason"] in ("sip_dead", "unreachable")
    assert pair.etcd_owner() == "slave"
    assert pair.slave.standin_pid()
    assert not [e for e in pair.slave.events("ha_takeover_failed")]


def test_etcd_master_restarted_during_a_cut_between_the_nodes_does_not_stay_active_beside_the_slave(ha_lab):
    """The link between the nodes is cut (both reach etcd: the slave is partitioned) and the master's wazod is
    restarted meanwhile (an upgrade): its lease is revoked at the stop, the owner key is free, and the slave,
    which sees the master down, obtains it and takes over. The restarted master finds the slave owner and
    cannot reach it: it must fence itself, not serve beside the slave until the link is back."""
    pair = _etcd_pair(ha_lab, 1, **FAST)
    pair.lab.cut("master", "slave")
    pair.slave.wait_event("ha_partitioned", timeout=15)
    assert pair.master.stop() == 0
    pair.master.start()
    pair.slave.wait_event("ha_takeover_completed", timeout=15)
    assert pair.etcd_owner() == "slave"
    fenced = pair.master.wait_event("ha_fenced", timeout=15)
    assert fenced["data"]["ok"] is True
    assert not pair.master.standin_pid() and pair.slave.standin_pid()
    # the link back: the master reaches its slave, starts again (the failback overlap), the slave gives back
    pair.lab.heal("master", "slave")
    pair.slave.wait_event("ha_failback_completed", timeout=20)
    wait_for(lambda: pair.etcd_owner() == "master" and pair.master.standin_pid() and not pair.slave.standin_pid(),
             timeout=15, message="the pair did not converge on the master")
