"""The HA monitor in-process, on loopback: real probes against a real SIP stand-in, real service commands.

Covers what the lab tests do not need namespaces for: maintenance mode
(``ctx.registry["maintenance_active"]``) holds every action while the state is
still reported, and ending it acts from fresh rounds; services changed behind
wazod's back are reconciled; the registry and status board are filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

import yaml
from harness import free_port, wait_for_async

from wazod.config import load_config
from wazod.context import Context
from wazod.events import open_emitter
from wazod.ha.monitor import component
from wazod.state import StateStore
from wazod.statusboard import StatusBoard


def _rounds() -> float:
    """Probe rounds run in this process so far (the /metrics counter the monitor feeds)."""
    from wazod.health.instruments import PROBE_ROUNDS

    return sum(PROBE_ROUNDS.counts.values())


class Rig:
    """A slave HA monitor watching 127.0.0.1, whose "Asterisk" is a SIP stand-in; services = a flag file."""

    def __init__(self, tmp_path, **ha):
        self.master_port = free_port()
        self.flag = tmp_path / "services-up"
        cfg = {
            "node": {"name": "mon", "state_dir": str(tmp_path / "state"), "uuid_file": str(tmp_path / "uuid")},
            "ha": {"node_type": "slave", "remote_address": "127.0.0.1", "marker_dir": None,
                   "sip_port": self.master_port, "probe_interval": 0.2, "fall": 2, "rise": 2, "failback_hold": 1.0,
                   "retransmit_interval": 0.03, "icmp_count": 5,
                   "services": {"backend": "command", "start": [["touch", str(self.flag)]],
                                "stop": [["rm", "-f", str(self.flag)]], "status": ["test", "-e", str(self.flag)]},
                   **ha},
            "berofos": {"config": str(tmp_path / "bnfos.conf")},
        }
        (tmp_path / "bnfos.conf").write_text("")  # no device (a configured path that is missing is an error)
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(cfg))
        loaded = load_config(path)
        self.emitter = open_emitter(loaded.config)
        self.status = StatusBoard(StateStore(loaded.config.node.state_dir), "mon", "slave")
        self.ctx = Context(loaded, self.emitter, StateStore(loaded.config.node.state_dir), self.status)
        self.master: subprocess.Popen | None = None

    def start_master(self) -> None:
        self.master = subprocess.Popen([sys.executable, "-m", "wazod.lab.sip_standin", "--host", "127.0.0.1",
                                        "--port", str(self.master_port)], start_new_session=True)

    def kill_master(self) -> None:
        self.master.terminate()
        self.master.wait(10)

    def names(self) -> list[str]:
        return [e["name"] for e in self.emitter.store.after(0) if e["name"].startswith("ha_")]

    @contextlib.asynccontextmanager
    async def running(self):
        monitor = component(self.ctx)
        task = asyncio.create_task(monitor.run())
        try:
            yield monitor
        finally:
            self.ctx.stopping.set()
            await asyncio.wait_for(task, 20)
            if self.master is not None and self.master.poll() is None:
                self.master.kill()
                self.master.wait(10)
            self.emitter.store.close()


async def test_maintenance_holds_actions_but_keeps_reporting(tmp_path):
    rig = Rig(tmp_path)
    maintenance = {"on": True}
    rig.ctx.registry["maintenance_active"] = lambda: maintenance["on"]
    rig.start_master()
    async with rig.running() as monitor:
        assert rig.ctx.registry["ha_monitor"] is monitor
        await wait_for_async(lambda: rig.status.get("ha_state") == "standby", timeout=15)
        rig.kill_master()  # Asterisk dies on a pingable "master"
        await wait_for_async(lambda: "ha_master_down" in rig.names(), timeout=10)
        start = _rounds()
        await wait_for_async(lambda: _rounds() >= start + 5, timeout=10)  # fall=2: a takeover twice over
        assert "ha_takeover_started" not in rig.names() and not rig.flag.exists()
        assert rig.status.get("ha_state") == "master_down" and rig.status.get("ha_frozen") == "maintenance"
        assert monitor.snapshot()["peer_up"] is False
        maintenance["on"] = False  # maintenance ends: the next round acts
        await wait_for_async(lambda: "ha_takeover_completed" in rig.names(), timeout=10)
        assert rig.flag.exists()
        assert rig.status.get("ha_state") == "active" and rig.status.get("services") == "running"
        done = [e for e in rig.emitter.store.after(0) if e["name"] == "ha_takeover_completed"][-1]
        (step,) = [s for s in done["data"]["steps"] if s["step"] == "berofos"]
        assert step["ok"] and step["note"] == "no berofos configured"


async def test_services_changed_behind_its_back_are_reconciled(tmp_path):
    rig = Rig(tmp_path, services_check_interval=0.5)
    rig.start_master()
    async with rig.running():
        await wait_for_async(lambda: rig.status.get("ha_state") == "standby", timeout=15)
        rig.flag.touch()  # someone started the services on a standby slave: two active nodes
        await wait_for_async(lambda: "ha_failback_completed" in rig.names(), timeout=15)
        assert not rig.flag.exists()
        rig.kill_master()
        await wait_for_async(lambda: "ha_takeover_completed" in rig.names(), timeout=10)
        rig.flag.unlink()  # the slave's Asterisk crashed while it held the services
        await wait_for_async(lambda: rig.names().count("ha_takeover_completed") == 2, timeout=15)
        assert rig.flag.exists()
        assert rig.names().count("ha_failback_completed") == 1  # nothing else moved


async def test_holds_services_follows_the_takeover_and_probe_rtts_reach_metrics(tmp_path):
    """The berofos drift check asks the monitor who holds the services; /metrics gets the probes' RTTs."""
    from wazod.health.metrics import PROBE_RTT

    def rtt_count() -> float:
        return next(s.value for m in PROBE_RTT.collect() for s in m.samples if s.name.endswith("_count"))

    before = rtt_count()
    rig = Rig(tmp_path)
    rig.start_master()
    async with rig.running() as monitor:
        assert rig.ctx.registry["ha_monitor"] is monitor
        await wait_for_async(lambda: rig.status.get("ha_state") == "standby", timeout=20)
        assert monitor.holds_services is False
        assert rtt_count() > before
        rig.kill_master()
        await wait_for_async(lambda: rig.status.get("ha_state") == "active", timeout=20)
        assert rig.flag.exists() and monitor.holds_services is True


async def test_a_peer_name_that_does_not_resolve_is_no_master_death(tmp_path):
    """Issue 21.4: a remote_address that does not resolve (DNS down, a typo) is this node's problem: no
    ha_master_down, no takeover, even without witnesses; ha_isolated says why."""
    rig = Rig(tmp_path, remote_address="no-such-master.invalid")
    async with rig.running():
        await wait_for_async(lambda: "ha_isolated" in rig.names(), timeout=15)
        await asyncio.sleep(1.0)
        assert rig.names() == ["ha_isolated"]
        iso = [e for e in rig.emitter.store.after(0) if e["name"] == "ha_isolated"][0]
        assert iso["data"]["cause"] == "unresolved" and "no-such-master.invalid" in iso["data"]["error"]
        assert rig.status.get("ha_state") == "isolated" and not rig.flag.exists()


async def test_no_service_reconcile_nor_takeover_while_a_restore_runs(tmp_path):
    """Issue 15 item 17: the services check restarted the services ``wazod restore`` had stopped.

    The locks restore holds (RESTORE_LOCKS) keep the takeover out; the monitor does not even queue one.
    """
    import time

    from wazod.backup.restore import RESTORE_LOCKS
    from wazod.locks import holding

    rig = Rig(tmp_path, services_check_interval=0.3)
    rig.start_master()
    async with rig.running() as monitor:
        await wait_for_async(lambda: rig.status.get("ha_state") == "standby", timeout=15)
        rig.kill_master()
        await wait_for_async(lambda: "ha_takeover_completed" in rig.names(), timeout=10)
        async with holding(rig.ctx.config.state_dir, RESTORE_LOCKS):  # what wazod restore holds
            rig.flag.unlink()  # restore's step 2 stopped the services
            since = time.monotonic()
            await wait_for_async(lambda: monitor.last_round is not None and monitor.last_round.started > since + 1.5,
                                 timeout=15)  # five service-check intervals went by
            assert not rig.flag.exists()
            assert rig.names().count("ha_takeover_started") == 1
        # restore done (locks released): the next check sees the stopped services and starts them again
        await wait_for_async(lambda: rig.names().count("ha_takeover_completed") == 2, timeout=15)
        assert rig.flag.exists()
