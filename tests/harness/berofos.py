"""Berofos test helpers: simulated devices on loopback and the files that point wazod at them.

Why: every berofos test (and the HA lab's takeover/failback test) needs the
same three things: simulators listening on free loopback ports, a bnfos.conf
naming them with their logins, and a wazod config using that file with short
timeouts. In-process simulators (``sims`` fixture) let a test flip faults
directly; ``SimProcess`` runs ``python -m wazod.berofos.simulator`` as a real
process (what a netns lab host or a CLI test needs) and drives it through its
``/_sim/*`` control endpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from wazod.berofos.client import forget_auth_scheme
from wazod.berofos.simulator import BerofosSimulator

from .util import kill_process_group, register_cleanup, unregister_cleanup


def write_bnfos_conf(path: Path, devices: list[tuple[str, str, int, str | None]]) -> Path:
    """``devices``: (name, host, port, login or None) -> a bnfos.conf like ``bnfos --scan -x`` writes."""
    lines = ["# written by the berofos test harness"]
    for i, (name, host, port, login) in enumerate(devices):
        lines += ["", f"[{name}]", f"mac = 00:19:32:00:12:{i:02X}", f"host = {host}:{port}"]
        if login is not None:
            lines.append(f"login = {login}")
    path.write_text("\n".join(lines) + "\n")
    return path


def berofos_config_dict(state_dir: Path, bnfos_conf: Path, *, role: str = "master", **berofos: Any) -> dict:
    """A wazod configuration (as a dict) for berofos tests: fast timeouts and retries."""
    section = {"config": str(bnfos_conf), "timeout": 1.0, "retries": 2, "retry_delay": 0.05,
               "retry_delay_max": 0.2, "switch_timeout": 10.0, "lock_wait": 2.0, "drift_interval": 0.2}
    section.update(berofos)
    return {
        "node": {"name": "pbx-test", "state_dir": str(state_dir), "uuid_file": str(state_dir / "no-uuid")},
        "ha": {"node_type": role, "remote_address": "127.0.0.1", "ha_conf": str(state_dir / "no-ha.conf")},
        "berofos": section,
    }


def write_config_yml(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


class SimProcess:
    """``python -m wazod.berofos.simulator`` in its own process group, on a free port."""

    def __init__(self, login: str | None = "admin:secret", *, digest: bool = False, mode: int = 1,
                 host: str = "127.0.0.1", extra: list[str] | None = None, wrapper: list[str] | None = None):
        argv = [sys.executable, "-m", "wazod.berofos.simulator", "--host", host, "--port", "0",
                "--mode", str(mode)] + (["--digest"] if digest else []) + (extra or [])
        env = None
        if login is not None:  # through the environment: a password on argv shows in ps
            env = dict(os.environ, BNFOS_SIM_LOGIN=login)
        self.proc = subprocess.Popen((wrapper or []) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True, env=env)
        self._token = register_cleanup(self.stop)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            self.stop()
            raise RuntimeError(f"simulator did not start: {err}")
        self.host, port = json.loads(line)["listening"].rsplit(":", 1)
        self.port = int(port)

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.host}:{self.port}{path}", data=data,
                                     method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback/lab address we created
            return json.loads(resp.read())

    def state(self) -> dict:
        return self._call("/_sim/state")

    def control(self, **changes: Any) -> dict:
        return self._call("/_sim/control", changes)

    def stop(self) -> None:
        kill_process_group(self.proc)
        unregister_cleanup(self._token)


@pytest.fixture
async def sims():
    """Factory of in-process simulators: ``sim = await sims(login="admin:pw", digest=True)``; all stopped after."""
    started: list[BerofosSimulator] = []

    async def make(login: str | None = "admin:secret", **kw: Any) -> BerofosSimulator:
        sim = BerofosSimulator("127.0.0.1", 0, login, **kw)
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()
        forget_auth_scheme(sim.host, sim.port)  # the next test's simulator may get this port


@pytest.fixture
def sim_process():
    """Factory of simulator processes: ``p = sim_process(login="admin:pw")``; all killed after."""
    started: list[SimProcess] = []

    def make(*args: Any, **kw: Any) -> SimProcess:
        p = SimProcess(*args, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()
