"""A real etcd v3 cluster (Debian's etcd-server) of one or three members on loopback.

Why: the etcd form of the HA arbiter relies on etcd's own semantics (leases
expiring on the server, linearizable reads needing a quorum, leader
elections extending leases), which no stand-in reproduces. Each member runs
in its own session (process group) with its data directory in a temporary
tree, on ports picked by free_port(); members are stopped or killed by pid
only, and nothing listens on 2379.

``cluster.kill(i)`` SIGKILLs member i, ``cluster.start_member(i)`` brings it
back with its data; ``cluster.etcdctl(...)`` runs Debian's etcdctl (API v3)
against the members still running; ``cluster.leader_index()`` says which
member leads.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .util import (
    GiveUp,
    free_port,
    kill_process_group,
    register_cleanup,
    run,
    stop_process_group,
    tail_lines,
    unregister_cleanup,
    wait_for,
)

__all__ = ["EtcdCluster", "etcd_unavailable_reason"]

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


def etcd_unavailable_reason() -> str | None:
    """Why the etcd tests cannot run here (None: they can)."""
    for binary in (ETCD, ETCDCTL):
        if not os.access(binary, os.X_OK):
            return f"{binary} missing (apt-get install etcd-server etcd-client; scripts/setup.sh does)"
    return None


class _Member:
    def __init__(self, base: Path, index: int, host: str, tls: bool = False) -> None:
        self.index = index
        self.scheme = "https" if tls else "http"
        self.name = f"m{index}"
        self.host = host
        self.data_dir = base / self.name
        self.logfile = base / f"{self.name}.log"
        self.client_port = 0
        self.peer_port = 0
        self.proc: subprocess.Popen | None = None
        self._log_fh = None

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


class EtcdCluster:
    """``size`` etcd members on ``host``; ``endpoints`` is what EtcdArbiter takes."""

    def __init__(self, size: int = 1, host: str = "127.0.0.1",
                 heartbeat_ms: int = 100, election_ms: int = 1000,
                 tls: dict[str, Path] | None = None, extra_args: list[str] | None = None,
                 netns: str | None = None) -> None:
        """``tls``: harness.bus.make_tls_files() output: clients then need TLS and a client certificate.
        ``extra_args``: more etcd flags for every member (e.g. ``--auth-token-ttl``).
        ``netns``: run the members (and etcdctl) inside that network namespace (a lab host's), on fixed ports
        (a fresh namespace has them all free; ``host`` is then that host's address)."""
        self.size = size
        self.netns = netns
        self.tls = tls
        self.extra_args = list(extra_args or [])
        self.host = host
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.base = Path(tempfile.mkdtemp(prefix="wzt-etcd-"))
        self.token = f"wzt-{uuid.uuid4().hex[:12]}"
        self.members = [_Member(self.base, i, host, tls=tls is not None) for i in range(size)]
        self._started_once = False
        self._cleanup_token = register_cleanup(self.destroy)

    # -- addresses -------------------------------------------------------
    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(m.host, m.client_port) for m in self.members]

    @property
    def url(self) -> str:
        """The ``ha.arbiter`` value naming every member."""
        return "etcd://" + ",".join(f"{h}:{p}" for h, p in self.endpoints)

    # -- life cycle ------------------------------------------------------
    def _pick_ports(self) -> None:
        if self.netns is not None:  # free_port() cannot bind an address of another namespace
            for m in self.members:
                m.client_port, m.peer_port = 23790 + m.index, 23800 + m.index
            return
        taken: set[int] = set()
        for m in self.members:
            for attr in ("client_port", "peer_port"):
                port = free_port(self.host)
                while port in taken:
                    port = free_port(self.host)
                taken.add(port)
                setattr(m, attr, port)

    def _in_netns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns is not None else argv

    def _argv(self, m: _Member) -> list[str]:
        initial = ",".join(f"{o.name}={o.peer_url}" for o in self.members)
        return self._in_netns([
            ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial, "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--snapshot-count", "10000",
            *self._tls_server_args(), *self.extra_args,
        ])

    def _tls_server_args(self) -> list[str]:
        if not self.tls:
            return []
        return ["--cert-file", str(self.tls["server"]), "--key-file", str(self.tls["server_key"]),
                "--trusted-ca-file", str(self.tls["ca"]), "--client-cert-auth"]

    def _spawn(self, m: _Member) -> None:
        m._log_fh = open(m.logfile, "ab")
        m.proc = subprocess.Popen(self._argv(m), stdout=m._log_fh, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)

    def _ready(self, m: _Member, offset: int) -> bool:
        if m.proc is not None and m.proc.poll() is not None:
            raise GiveUp(f"etcd {m.name} exited")
        with open(m.logfile, "rb") as fh:
            fh.seek(offset)
            return b"ready to serve client requests" in fh.read()

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        """Start every member and wait until each serves clients (a quorum formed).

        The first start picks new ports when one was taken meanwhile.
        """
        for attempt in range(3):
            if not self._started_once:
                self._pick_ports()
            offsets = {m.index: (m.logfile.stat().st_size if m.logfile.exists() else 0) for m in self.members}
            for m in self.members:
                if not m.running:
                    self._spawn(m)
            try:
                for m in self.members:
                    wait_for(lambda m=m, o=offsets[m.index]: self._ready(m, o), timeout=timeout, interval=0.05)
                self._started_once = True
                return self
            except (TimeoutError, GiveUp) as exc:
                logs = "\n".join(tail_lines(m.logfile, 15) for m in self.members)
                in_use = "address already in use" in logs
                for m in self.members:
                    kill_process_group(m.proc)
                    m.close_log()
                    shutil.rmtree(m.data_dir, ignore_errors=True)
                if self._started_once or not in_use or attempt == 2:
                    raise RuntimeError(f"etcd cluster did not start: {exc}\n{logs}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def start_member(self, i: int, timeout: float = 30.0) -> None:
        """Start member ``i`` again (same ports, same data) and wait until it serves."""
        m = self.members[i]
        if m.running:
            return
        offset = m.logfile.stat().st_size if m.logfile.exists() else 0
        self._spawn(m)
        wait_for(lambda: self._ready(m, offset), timeout=timeout, interval=0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (its process group) and reap it."""
        m = self.members[i]
        kill_process_group(m.proc)
        m.close_log()

    def stop(self, i: int) -> None:
        m = self.members[i]
        stop_process_group(m.proc)
        m.close_log()

    # -- looking at it ---------------------------------------------------
    def etcdctl(self, *args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess:
        """Debian's etcdctl (API v3) on the running members."""
        live = ",".join(m.client_url for m in self.members if m.running)
        env = {**os.environ, "ETCDCTL_API": "3"}
        tls = ([f"--cacert={self.tls['ca']}", f"--cert={self.tls['client']}", f"--key={self.tls['client_key']}"]
               if self.tls else [])
        return run(self._in_netns([ETCDCTL, f"--endpoints={live}", "--dial-timeout=2s", "--command-timeout=5s",
                                   *tls, *args]), check=check, timeout=timeout, env=env)

    def get(self, key: str) -> dict | None:
        """The key as etcd has it, read by etcdctl: {"value": str, "lease": int} or None when absent."""
        out = json.loads(self.etcdctl("get", key, "-w", "json").stdout)
        kvs = out.get("kvs") or []
        if not kvs:
            return None
        kv = kvs[0]
        return {"value": base64.b64decode(kv["value"]).decode(), "lease": int(kv.get("lease", 0))}

    def lease_ttl(self, lease_id: int) -> int:
        """Remaining TTL of a lease as the server counts it (-1: expired or revoked)."""
        out = json.loads(self.etcdctl("lease", "timetolive", format(lease_id, "x"), "-w", "json").stdout)
        return int(out.get("ttl", -1))

    def leader_index(self) -> int:
        """Index of the member that leads now (read from the running members' status)."""
        out = json.loads(self.etcdctl("endpoint", "status", "-w", "json").stdout)
        for entry in out:
            header = entry["Status"]["header"]
            if header["member_id"] == entry["Status"]["leader"]:
                for m in self.members:
                    if m.client_url == entry["Endpoint"]:
                        return m.index
        raise RuntimeError(f"no leader among {out!r}")

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(f"--- {m.name}\n{tail_lines(m.logfile, n)}" for m in self.members)

    def destroy(self) -> None:
        for m in self.members:
            kill_process_group(m.proc)
            m.close_log()
        shutil.rmtree(self.base, ignore_errors=True)
        unregister_cleanup(self._cleanup_token)
        self._cleanup_token = None

    def __repr__(self) -> str:
        return f"EtcdCluster({self.url})"


def _skip_if_unavailable() -> None:
    reason = etcd_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """One etcd member, shared by a test module (tests use distinct pair ids)."""
    _skip_if_unavailable()
    cluster = EtcdCluster(1).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def etcd_cluster3() -> Iterator[EtcdCluster]:
    """Three etcd members, for one test (tests kill members)."""
    _skip_if_unavailable()
    cluster = EtcdCluster(3).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def make_etcd_cluster() -> Iterator:
    """Factory: ``make_etcd_cluster(size=3, election_ms=...)``; every cluster made is destroyed at teardown."""
    _skip_if_unavailable()
    made: list[EtcdCluster] = []

    def factory(size: int = 1, **kw) -> EtcdCluster:
        cluster = EtcdCluster(size, **kw)
        made.append(cluster)
        return cluster.start()

    yield factory
    for cluster in reversed(made):
        cluster.destroy()
