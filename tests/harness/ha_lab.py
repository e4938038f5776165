"""HA lab: real wazod daemons in the master and slave namespaces of a NetnsLab.

Why: failover is only proven by the real thing: two daemons probing each other
over a veth link that the test blackholes, cuts, flaps or makes lossy, the
slave driving real processes through the ``command`` backend (the SIP
stand-in playing Asterisk). Each node gets its own directory with a generated
``config.yml``, Wazo's ``ha.conf`` (node_type and remote_address are read
from it, as on a Wazo host), its state dir and its daemon log; events are
read straight from the node's durable event store.

Usage (pytest)::

    from harness.ha_lab import FAST, ha_lab_fixture  # noqa: F401  (registers the ha_lab fixture)

    def test_x(ha_lab):
        pair = ha_lab()                     # NetnsLab + master and slave nodes
        pair.start_master_asterisk()
        pair.master.start(); pair.slave.start()
        pair.slave.wait_state("standby")
        pair.lab.blackhole("master")
        pair.slave.wait_event("ha_takeover_completed")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wazod.lab.sip_standin import pid_alive

from .netns import NetnsLab, netns_unavailable_reason
from .util import kill_process_group, stop_process_group, tail_lines, wait_for

PY = sys.executable
SIP_PORT = 5060

# short timings for quick lab tests (the defaults are exercised by their own test and the benchmark)
FAST: dict[str, Any] = {
    "probe_interval": 0.2, "fall": 2, "rise": 2, "failback_hold": 2.0, "retransmit_interval": 0.03,
    "icmp_count": 6, "flap_window": 30.0, "flap_limit": 4, "action_backoff": 1.0,
}


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def standin_argv(host: str, pidfile: Path, *extra: str) -> list[str]:
    return [PY, "-m", "wazod.lab.sip_standin", "--host", host, "--port", str(SIP_PORT), "--pidfile", str(pidfile),
            *extra]


class HaNode:
    """One wazod daemon inside one namespace of the lab."""

    def __init__(self, lab: NetnsLab, role: str, root: Path, peer_addr: str, addr: str):
        self.lab = lab
        self.role = role
        self.host = lab.host(role)
        self.addr = addr
        self.peer_addr = peer_addr
        self.dir = root / role
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.dir / "state"
        self.config_path = self.dir / "config.yml"
        self.ha_conf = self.dir / "ha.conf"
        self.pidfile = self.dir / "asterisk.pid"  # the slave's stand-in Asterisk (command backend)
        self.log_path = self.dir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.overrides: dict[str, Any] = {}

    # --- configuration -------------------------------------------------------
    def config(self) -> dict[str, Any]:
        bnfos = self.dir / "bnfos.conf"
        if not bnfos.exists():  # no device (a tests writes some); a configured path that is missing is an error
            bnfos.write_text("")
        base = {
            "node": {"name": f"lab-{self.role}", "state_dir": str(self.state_dir),
                     "uuid_file": str(self.dir / "xivo_uuid.sh"), "stop_timeout": 15},
            "ha": {"ha_conf": str(self.ha_conf), "marker_dir": None,
                   "services": {
                       "backend": "command",
                       "start": [standin_argv(self.addr, self.pidfile, "--daemon")],
                       "stop": [standin_argv(self.addr, self.pidfile, "--stop")],
                       "status": standin_argv(self.addr, self.pidfile, "--status"),
                       "retry_backoff": 0.2,
                   }},
            "berofos": {"config": str(self.dir / "bnfos.conf")},
            "sync": {"ssh_key": str(self.dir / "no_such_key")},
            # the other parts of the daemon run too: keep them inside the node's directory
            "backup": {"dir": str(self.dir / "backups"), "root": str(self.dir / "root"),
                       "dsn": f"postgresql://127.0.0.1:1/asterisk-lab-{self.role}"},
            "purge": {"dsn": f"postgresql://127.0.0.1:1/asterisk-lab-{self.role}"},
            "replication": {"source_dsn": f"postgresql://127.0.0.1:1/asterisk-lab-{self.role}",
                            "target_dsn": f"postgresql://127.0.0.1:1/asterisk-lab-{self.role}"},
            "status": {"listen": "127.0.0.1:9599"},
            "logging": {"level": "info"},
        }
        return _deep_merge(base, self.overrides)

    def write_config(self, node_type: str | None = None, **ha: Any) -> None:
        if ha:
            self.overrides = _deep_merge(self.overrides, {"ha": ha})
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if node_type is not None:
            self.write_ha_conf(node_type)

    def write_ha_conf(self, node_type: str) -> None:
        """Rewrite Wazo's ha.conf as the web UI does (the daemon reloads on its change)."""
        tmp = self.ha_conf.with_suffix(".tmp")
        tmp.write_text(json.dumps({"node_type": node_type, "remote_address": self.peer_addr}))
        os.replace(tmp, self.ha_conf)

    # --- the daemon -------------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        log = open(self.log_path, "ab")
        self.proc = self.lab.popen(self.host, [PY, "-m", "wazod", "run", "--config", str(self.config_path)],
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (the clean stop systemd does)."""
        return stop_process_group(self.proc, timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        return tail_lines(self.log_path, n)

    # --- observation ------------------------------------------------------------
    def events(self, name: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        from wazod.events import read_events

        return read_events(self.state_dir, name, after)

    def last_seq(self) -> int:
        evs = self.events()
        return evs[-1]["seq"] if evs else 0

    def wait_event(self, name: str, timeout: float = 30.0, after: int = 0) -> dict[str, Any]:
        def found():
            assert self.proc is None or self.proc.poll() is None, f"{self.role} daemon died:\n{self.log_tail()}"
            evs = self.events(name, after)
            return evs[0] if evs else None

        try:
            return wait_for(found, timeout=timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"{self.role}: no {name} within {timeout}s; events: "
                               f"{[e['name'] for e in self.events(after=after)]}\n{self.log_tail()}") from None

    def status(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.state_dir / "status.json").read_text())
        return {}

    def wait_state(self, state: str, timeout: float = 30.0) -> None:
        try:
            wait_for(lambda: self.status().get("ha_state") == state, timeout=timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"{self.role}: ha_state {self.status().get('ha_state')!r}, not {state!r} "
                               f"after {timeout}s\n{self.log_tail()}") from None

    def probe_rounds(self) -> dict[str, int]:
        """The daemon's HA probe rounds so far, by result (good, failed), read from its /metrics
        inside its namespace: what shows that the watch is running, not merely that nothing happened."""
        status = self.config()["status"]
        url = f"http://{status['listen']}/metrics"
        token_file = status.get("token_file")  # an endpoint demanding the pair's token: read by the child
        headers = (f"{{'X-Auth-Token': open({str(token_file)!r}).read().split()[0]}}" if token_file else "{}")
        code = ("import sys,urllib.request;"
                f"r=urllib.request.Request({url!r},headers={headers});"
                "sys.stdout.write(urllib.request.urlopen(r,timeout=5).read().decode())")
        res = self.lab.exec(self.role, [PY, "-c", code], timeout=20)
        if res.returncode != 0:
            raise RuntimeError(f"{self.role}: /metrics unreadable: {res.stderr[-300:]}")
        rounds = {"good": 0, "failed": 0}
        for line in res.stdout.splitlines():
            for result in rounds:
                if line.startswith(f'wazod_ha_probe_rounds_total{{result="{result}"}} '):
                    rounds[result] = int(float(line.split()[-1]))
        return rounds

    def wait_rounds(self, n: int, timeout: float = 60.0) -> dict[str, int]:
        """Until the daemon has run ``n`` more probe rounds than now (instead of sleeping for them)."""
        start = sum(wait_for(self.probe_rounds, timeout=timeout).values())
        try:
            return wait_for(lambda: (r := self.probe_rounds()) and sum(r.values()) >= start + n and r,
                            timeout=timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"{self.role}: fewer than {n} probe rounds in {timeout}s\n{self.log_tail()}") \
                from None

    def standin_pid(self) -> int | None:
        """The stand-in's pid while it runs. A killed one that is still a zombie does not: the master's
        Asterisk started by the lab is a child of the test process (bench/partition counted a dead master as
        serving for a whole fault)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            if pid_alive(pid):
                return pid
        return None

    def sip_answers(self, from_host: str | None = None, timeout: float = 1.0) -> bool:
        """A real SIP OPTIONS to this node's address, from ``from_host``'s namespace (default: its own),
        answered within ``timeout`` s."""
        code = ("import asyncio,sys;from wazod.ha.probes import sip_probe;"
                f"r=asyncio.run(sip_probe({self.addr!r},{SIP_PORT},timeout={timeout},spacing=0.1,count=10));"
                "sys.exit(0 if r.ok else 1)")
        res = self.lab.exec(from_host or self.role, [PY, "-c", code], timeout=20)
        return res.returncode == 0

    def kill_standin(self) -> None:
        pid = self.standin_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.lab.reap(pid)  # when the lab started it (the master's Asterisk): no zombie left behind


class HaPair:
    def __init__(self, lab: NetnsLab, root: Path):
        self.lab = lab
        self.root = root
        self.master = HaNode(lab, "master", root, lab.slave.addr, lab.master.addr)
        self.slave = HaNode(lab, "slave", root, lab.master.addr, lab.slave.addr)
        self.master_asterisk: subprocess.Popen | None = None
        self.master_delay_file = root / "master-sip-delay"
        self.berofos_port: int | None = None
        self.arbiter: HaNode | None = None
        self.etcd = None  # an EtcdCluster on the third host (add_etcd)
        self.etcd_pair: str | None = None

    def add_arbiter(self, **ha: Any) -> HaNode:
        """A third wazod (``node_type: arbiter``) on the third host of a BridgeLab, watching both nodes; both
        nodes name it in ``ha.arbiter`` with a shared token (its status endpoint listens beyond loopback)."""
        lab = self.lab
        node = HaNode(lab, "witness", self.root, "", lab.witness.addr)
        token = self.root / "arbiter.token"
        token.write_text("lab-arbiter-token-0123456789\n")
        os.chmod(token, 0o600)
        timings = {k: v for k, v in self.master.overrides.get("ha", {}).items()
                   if k not in ("witnesses", "arbiter")}
        node.overrides = _deep_merge(node.overrides, {
            "status": {"listen": f"{lab.witness.addr}:9599", "token_file": str(token)}})
        node.overrides = _deep_merge(node.overrides, {"ha": {
            **timings, **ha, "node_type": "arbiter", "arbiter_nodes": [lab.master.addr, lab.slave.addr]}})
        node.write_config()
        for n in (self.master, self.slave):
            n.overrides.get("ha", {}).pop("witnesses", None)
            n.write_config(arbiter=f"http://{lab.witness.addr}:9599", peer_token_file=str(token))
        self.arbiter = node
        return node

    def add_etcd(self, size: int = 3, *, ttl: int = 2, pair_id: str = "lab-1", heartbeat_ms: int = 50,
                 election_ms: int = 500, **ha: Any):
        """An etcd cluster of ``size`` members on the third host of a BridgeLab (all members there, so a cut
        of one node cuts it from the whole cluster), named by both nodes in ``ha.arbiter`` with
        ``ha.etcd.ttl``; the short etcd timers are the ones docs/ha-etcd.md recommends. Returns the
        started EtcdCluster (``self.etcd``), destroyed at teardown."""
        from .etcd import EtcdCluster

        cluster = EtcdCluster(size, host=self.lab.witness.addr, heartbeat_ms=heartbeat_ms, election_ms=election_ms,
                              netns=self.lab.witness.netns).start()
        self.etcd = cluster
        for n in (self.master, self.slave):
            n.overrides.get("ha", {}).pop("witnesses", None)
            n.write_config(arbiter=cluster.url, etcd={"pair_id": pair_id, "ttl": ttl}, **ha)
        self.etcd_pair = pair_id
        return cluster

    def etcd_owner(self) -> str | None:
        """The owner key's value as etcd holds it (read with etcdctl on the third host), None when absent."""
        kv = self.etcd.get(f"/wazod/{self.etcd_pair}/owner")
        return kv["value"] if kv else None

    def kill_master(self) -> None:
        """The master dies: its wazod and its Asterisk SIGKILLed (no lease revoked, no key released)."""
        kill_process_group(self.master.proc)
        self.master.kill_standin()
        kill_process_group(self.master_asterisk)

    def arbiter_view(self) -> dict[str, Any]:
        """The arbiter's ``GET /arbiter`` document, asked from its own host ({} when it does not answer)."""
        token = (self.root / "arbiter.token").read_text().strip()
        code = ("import json,urllib.request;"
                f"r=urllib.request.Request('http://{self.lab.witness.addr}:9599/arbiter',"
                f"headers={{'X-Auth-Token':{token!r}}});"
                "print(json.dumps(json.load(urllib.request.urlopen(r, timeout=5))))")
        res = self.lab.exec("witness", [PY, "-c", code], timeout=20)
        return json.loads(res.stdout) if res.returncode == 0 else {}

    def set_master_sip_delay(self, seconds: float) -> None:
        tmp = self.master_delay_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds}\n")
        os.replace(tmp, self.master_delay_file)

    def start_berofos(self, port: int = 18080, drift_interval: float = 1.0) -> None:
        """The berofos simulator on the third host (a BridgeLab: both nodes reach it), in mode 1;
        both nodes' bnfos.conf name it and check it every ``drift_interval`` s."""
        host = self.lab.witness.addr
        self.lab.popen("witness", [PY, "-m", "wazod.berofos.simulator", "--host", host, "--port", str(port),
                                   "--login", "admin:s3cret-pw", "--mode", "1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.berofos_port = port
        wait_for(lambda: self.berofos_state().get("mode") == 1, timeout=15, message="berofos simulator not up")
        for node in (self.master, self.slave):
            (node.dir / "bnfos.conf").write_text(
                f"[fos1]\nmac = 00:19:32:00:12:1D\nhost = {host}:{port}\nlogin = admin:s3cret-pw\n")
            node.overrides = _deep_merge(node.overrides, {"berofos": {"drift_interval": drift_interval}})
            node.write_config()

    def berofos_state(self) -> dict[str, Any]:
        """The simulator's ``/_sim/state`` (mode, mode_changes: the relay writes it accepted), or {}."""
        code = ("import json,urllib.request;"
                f"print(json.dumps(json.load(urllib.request.urlopen("
                f"'http://{self.lab.witness.addr}:{self.berofos_port}/_sim/state', timeout=5))))")
        res = self.lab.exec("witness", [PY, "-c", code], timeout=20)
        if res.returncode != 0:
            return {}
        return json.loads(res.stdout)

    def configure(self, **ha: Any) -> None:
        """Both nodes, with the same ha timings; ha.conf says master / slave."""
        self.master.write_config("master", **ha)
        self.slave.write_config("slave", **ha)

    def start_master_asterisk(self) -> subprocess.Popen:
        """The master's Asterisk stand-in (on a Wazo master, services always run). Its answers are held back
        by the seconds written with :meth:`set_master_sip_delay` (an overloaded PJSIP)."""
        self.master_asterisk = self.lab.popen(
            "master", standin_argv(self.lab.master.addr, self.master.pidfile, "--delay-file",
                                   str(self.master_delay_file)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.master.sip_answers(), timeout=10, message="master SIP stand-in not answering")
        return self.master_asterisk

    def kill_master_asterisk(self) -> None:
        kill_process_group(self.master_asterisk)

    def start(self) -> None:
        if self.arbiter is not None:
            self.arbiter.start()
            wait_for(lambda: self.arbiter_view().get("nodes", {}).get(self.lab.master.addr, {}).get("state")
                     == "up", timeout=30, message="arbiter does not see the master up")
        self.master.start()
        self.slave.start()
        self.slave.wait_state("standby", timeout=30)

    def teardown(self) -> None:
        for node in (self.slave, self.master, *([self.arbiter] if self.arbiter else [])):
            node.stop(timeout=10)
            node.kill_standin()  # daemonized by the command backend: outside the lab's process groups
        kill_process_group(self.master_asterisk)
        if self.etcd is not None:
            self.etcd.destroy()


@pytest.fixture(name="ha_lab")
def ha_lab_fixture(make_netns_lab, tmp_path) -> Iterator:
    """Factory ``ha_lab(witness=False, bridge=False, **ha) -> HaPair`` (configured, daemons not started;
    ``bridge``: the three-host BridgeLab, the third host as the slave's witness)."""
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    pairs: list[HaPair] = []

    def factory(witness: bool = False, bridge: bool = False, **ha: Any) -> HaPair:
        lab = make_netns_lab(witness=witness, bridge=bridge)
        pair = HaPair(lab, tmp_path / f"pair{len(pairs)}")
        if witness or bridge:
            ha.setdefault("witnesses", [lab.witness.addr])
        pair.configure(**ha)
        pairs.append(pair)
        return pair

    yield factory
    for pair in pairs:
        pair.teardown()


def flap_link(lab: NetnsLab, seconds: float, period: float = 1.0) -> int:
    """Take the master<->slave link down and up every ``period`` s for ``seconds``; returns the cuts made."""
    end = time.monotonic() + seconds
    cuts = 0
    while time.monotonic() < end:
        lab.cut_link()
        cuts += 1
        time.sleep(period)
        lab.restore_link()
        time.sleep(period)
    return cuts
