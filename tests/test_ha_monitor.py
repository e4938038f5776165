"""The HA monitor in-process, on loopback: real probes against a real SIP stand-in, real service commands.

Covers what the lab tests do not need namespaces for: maintenance mode
(``ctx.registry["maintenance_active"]``) holds every action while the state is
still reported, and ending it acts from fresh rounds; the registry and status
board are filled.
"""

from __future__ import annotations

import asyncio
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


def _standin(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "wazod.lab.sip_standin", "--host", "127.0.0.1", "--port", str(port), *extra]


async def test_maintenance_holds_actions_but_keeps_reporting(tmp_path):
    master_port = free_port()
    flag = tmp_path / "services-up"
    cfg = {
        "node": {"name": "mon", "state_dir": str(tmp_path / "state"), "uuid_file": str(tmp_path / "uuid")},
        "ha": {"node_type": "slave", "remote_address": "127.0.0.1", "marker_dir": None, "sip_port": master_port,
               "probe_interval": 0.2, "fall": 2, "rise": 2, "failback_hold": 1.0, "retransmit_interval": 0.03,
               "icmp_count": 5,
               "services": {"backend": "command", "start": [["touch", str(flag)]], "stop": [["rm", "-f", str(flag)]],
                            "status": ["test", "-e", str(flag)]}},
        "berofos": {"config": str(tmp_path / "bnfos.conf")},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    emitter = open_emitter(loaded.config)
    status = StatusBoard(StateStore(loaded.config.node.state_dir), "mon", "slave")
    ctx = Context(loaded, emitter, StateStore(loaded.config.node.state_dir), status)
    maintenance = {"on": True}
    ctx.registry["maintenance_active"] = lambda: maintenance["on"]
    master = subprocess.Popen(_standin(master_port), start_new_session=True)
    monitor = component(ctx)
    task = asyncio.create_task(monitor.run())
    names = lambda: [e["name"] for e in emitter.store.after(0)]  # noqa: E731
    try:
        assert ctx.registry["ha_monitor"] is monitor
        await wait_for_async(lambda: status.get("ha_state") == "standby", timeout=15)
        master.terminate()  # Asterisk dies on a pingable "master"
        master.wait(10)
        await wait_for_async(lambda: "ha_master_down" in names(), timeout=10)
        await asyncio.sleep(1.0)
        assert "ha_takeover_started" not in names() and not flag.exists()
        assert status.get("ha_state") == "master_down" and status.get("ha_frozen") == "maintenance"
        assert monitor.snapshot()["peer_up"] is False
        maintenance["on"] = False  # maintenance ends: the next round acts
        await wait_for_async(lambda: "ha_takeover_completed" in names(), timeout=10)
        assert flag.exists() and status.get("ha_state") == "active" and status.get("services") == "running"
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 20)
        if master.poll() is None:
            master.kill()
        emitter.store.close()
