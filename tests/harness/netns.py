"""Two (or three) "hosts" as Linux network namespaces joined by veth pairs.

Why: the HA daemon's core logic is about what happens when the peer becomes
unreachable (link cut, host frozen, lossy link) and whether a third party
(the "witness", e.g. the gateway) is still reachable.  Network namespaces
give each simulated host its own interfaces, addresses and nftables
ruleset, so tests can break connectivity precisely without touching the
machine's real network.

Safety: every address used lives in 10.231.X.0/24 and exists only inside the
lab's own namespaces; nothing is configured in the root namespace, and
nftables rules are only ever loaded inside the lab's namespaces.

Topology (X chosen per lab)::

    master 10.231.X.1/25 --veth-- 10.231.X.2/25 slave 10.231.X.129/25 --veth-- 10.231.X.130/25 witness
"""
from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .util import kill_process_group, register_cleanup, run, unregister_cleanup

__all__ = ["BridgeLab", "NetnsLab", "LabHost", "netns_unavailable_reason"]

_BLACKHOLE_TABLE = "wzt_blackhole"
_DROP_TABLE = "wzt_drop"


def netns_unavailable_reason() -> str | None:
    """Why a lab cannot be built here, or None if it can."""
    if os.geteuid() != 0:
        return "network namespace lab needs root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' not installed"
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if res.returncode != 0:
        return f"'ip netns' unavailable: {res.stderr.strip()}"
    return None


@dataclass
class LabHost:
    """One simulated host: namespace name, its lab address, its interfaces."""

    name: str          # role: "master", "slave", "witness"
    netns: str         # namespace name
    addr: str          # main address (on the master<->slave link for master/slave)
    ifaces: list[str] = field(default_factory=list)
    witness_addr: str | None = None  # slave's address on the witness link

    def __str__(self) -> str:
        return self.name


class NetnsLab:
    """Master and slave namespaces joined by a veth pair, plus an optional
    witness namespace linked to the slave.

    Build with :meth:`setup` (the fixtures do this) and always call
    :meth:`teardown`, which kills tracked processes and deletes the
    namespaces (which destroys the veths and nftables rules with them).
    """

    def __init__(self, witness: bool = False) -> None:
        self.with_witness = witness
        self.tag = secrets.token_hex(3)              # 6 hex chars
        self.subnet_octet = random.randint(0, 255)   # the X in 10.231.X.0/24
        prefix = f"10.231.{self.subnet_octet}"
        self.master = LabHost("master", f"wzt-{self.tag}-m", f"{prefix}.1")
        self.slave = LabHost("slave", f"wzt-{self.tag}-s", f"{prefix}.2",
                             witness_addr=f"{prefix}.129" if witness else None)
        self.witness: LabHost | None = (
            LabHost("witness", f"wzt-{self.tag}-w", f"{prefix}.130") if witness else None)
        # Interface names: at most 15 chars (IFNAMSIZ-1); these are 10.
        self.veth_master = f"wzt{self.tag}m"
        self.veth_slave = f"wzt{self.tag}s"
        self.veth_slave_w = f"wzt{self.tag}v"
        self.veth_witness = f"wzt{self.tag}w"
        self._procs: list[subprocess.Popen] = []
        self._created: list[str] = []
        self._cleanup_token: int | None = None

    # -- building ------------------------------------------------------------
    @property
    def hosts(self) -> list[LabHost]:
        return [h for h in (self.master, self.slave, self.witness) if h is not None]

    def host(self, host: LabHost | str) -> LabHost:
        """Resolve a role name ("master"/"slave"/"witness") or LabHost."""
        if isinstance(host, LabHost):
            return host
        for h in self.hosts:
            if h.name == host or h.netns == host:
                return h
        raise KeyError(f"no host {host!r} in lab")

    def _link_pair(self, a: LabHost, a_if: str, a_cidr: str,
                   b: LabHost, b_if: str, b_cidr: str) -> None:
        # Create the pair directly inside the namespaces so nothing ever
        # appears in the root namespace.
        run(["ip", "link", "add", a_if, "netns", a.netns, "type", "veth",
             "peer", "name", b_if, "netns", b.netns])
        for host, ifname, cidr in ((a, a_if, a_cidr), (b, b_if, b_cidr)):
            run(["ip", "-n", host.netns, "addr", "add", cidr, "dev", ifname])
            run(["ip", "-n", host.netns, "link", "set", ifname, "up"])
            host.ifaces.append(ifname)

    def setup(self) -> NetnsLab:
        self._cleanup_token = register_cleanup(self.teardown)
        try:
            for h in self.hosts:
                run(["ip", "netns", "add", h.netns])
                self._created.append(h.netns)
                run(["ip", "-n", h.netns, "link", "set", "lo", "up"])
            self._link_pair(self.master, self.veth_master, f"{self.master.addr}/25",
                            self.slave, self.veth_slave, f"{self.slave.addr}/25")
            if self.witness is not None:
                self._link_pair(self.slave, self.veth_slave_w, f"{self.slave.witness_addr}/25",
                                self.witness, self.veth_witness, f"{self.witness.addr}/25")
        except Exception:
            self.teardown()
            raise
        return self

    def teardown(self) -> None:
        """Kill every process started with :meth:`popen`, delete namespaces."""
        procs, self._procs = self._procs, []
        for proc in procs:
            try:
                kill_process_group(proc)
            except Exception:  # noqa: BLE001 - keep tearing down
                pass
        created, self._created = self._created, []
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        unregister_cleanup(self._cleanup_token)
        self._cleanup_token = None

    def __enter__(self) -> NetnsLab:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- running things --------------------------------------------------------
    def _argv(self, host: LabHost | str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.host(host).netns, *argv]

    def exec(self, host: LabHost | str, argv: list[str], *, check: bool = False,
             timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``host``'s namespace and wait for it
        (``subprocess.run``, text mode, output captured unless overridden)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self._argv(host, argv), check=check, timeout=timeout, **kw)

    def popen(self, host: LabHost | str, argv: list[str], **kw: Any) -> subprocess.Popen:
        """Start a long-running process in ``host``'s namespace.  It gets its
        own process group and is killed (with its children) at teardown."""
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._argv(host, argv), **kw)
        self._procs.append(proc)
        return proc

    def reap(self, pid: int, timeout: float = 5.0) -> None:
        """Wait for a process this lab started (by pid) once it was killed, so it leaves no zombie."""
        for proc in self._procs:
            if proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout)

    def can_ping(self, src: LabHost | str, dst_addr: str, count: int = 1,
                 wait: float = 1.0) -> bool:
        """True if ``src`` gets at least one echo reply from ``dst_addr``."""
        res = self.exec(src, ["ping", "-n", "-q", "-c", str(count), "-W", str(wait),
                              "-i", "0.2", dst_addr], timeout=count * wait + 10)
        return res.returncode == 0

    # -- breaking things -------------------------------------------------------
    def _set_links(self, state: str, pairs: list[tuple[LabHost, str]]) -> None:
        for host, ifname in pairs:
            run(["ip", "-n", host.netns, "link", "set", ifname, state])

    def cut_link(self) -> None:
        """Take the master<->slave veth down on both ends (cable pulled)."""
        self._set_links("down", [(self.master, self.veth_master), (self.slave, self.veth_slave)])

    def restore_link(self) -> None:
        self._set_links("up", [(self.master, self.veth_master), (self.slave, self.veth_slave)])

    def cut_witness(self) -> None:
        """Take the slave<->witness veth down (slave loses its witness)."""
        self._require_witness()
        self._set_links("down", [(self.slave, self.veth_slave_w),
                                 (self.witness, self.veth_witness)])  # type: ignore[list-item]

    def restore_witness(self) -> None:
        self._require_witness()
        self._set_links("up", [(self.slave, self.veth_slave_w),
                               (self.witness, self.veth_witness)])  # type: ignore[list-item]

    def _require_witness(self) -> None:
        if self.witness is None:
            raise RuntimeError("lab built without witness=True")

    def _nft(self, host: LabHost | str, ruleset: str) -> None:
        run(self._argv(host, ["nft", "-f", "-"]), input=ruleset)

    def _nft_delete_table(self, host: LabHost | str, table: str) -> None:
        # Absent table -> non-zero exit; that is fine (idempotent restore).
        subprocess.run(self._argv(host, ["nft", "delete", "table", "inet", table]),
                       capture_output=True)

    def blackhole(self, host: LabHost | str) -> None:
        """Drop every packet in and out of ``host`` except on loopback: the
        host is "frozen" from the network's point of view while its processes
        keep running (sending fails with EPERM)."""
        self._nft_delete_table(host, _BLACKHOLE_TABLE)
        self._nft(host, f"""
table inet {_BLACKHOLE_TABLE} {{
    chain input {{
        type filter hook input priority -300; policy drop;
        iif "lo" accept
    }}
    chain output {{
        type filter hook output priority -300; policy drop;
        oif "lo" accept
    }}
}}
""")

    def unblackhole(self, host: LabHost | str) -> None:
        self._nft_delete_table(host, _BLACKHOLE_TABLE)

    def drop_share(self, host: LabHost | str, percent: int) -> None:
        """Randomly drop ``percent`` % of packets arriving at ``host``
        (non-loopback), to simulate a lossy link.  Replaces any earlier rate."""
        percent = int(percent)
        if not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        # numgen's range is 0..99, so "< 100" is rejected: 100 % is "drop all".
        match = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
        self._nft_delete_table(host, _DROP_TABLE)
        self._nft(host, f"""
table inet {_DROP_TABLE} {{
    chain input {{
        type filter hook input priority -250; policy accept;
        iif != "lo" {match}drop
    }}
}}
""")

    def clear_drop(self, host: LabHost | str) -> None:
        self._nft_delete_table(host, _DROP_TABLE)

    def __repr__(self) -> str:
        return (f"<NetnsLab 10.231.{self.subnet_octet}.0/24 "
                f"{[h.netns for h in self.hosts]}>")


def _require_netns() -> None:
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def make_netns_lab() -> Iterator[Callable[..., NetnsLab]]:
    """Factory ``make_netns_lab(witness=False, bridge=False) -> NetnsLab`` (set up; ``bridge``: a BridgeLab).
    Skips the test when not root / no ``ip netns``; tears every lab down."""
    _require_netns()
    labs: list[NetnsLab] = []

    def factory(witness: bool = False, bridge: bool = False) -> NetnsLab:
        lab = BridgeLab() if bridge else NetnsLab(witness=witness)
        labs.append(lab)
        try:
            lab.setup()
        except RuntimeError as exc:
            if "Operation not permitted" in str(exc):
                pytest.skip(f"cannot create network namespaces here: {exc}")
            raise
        return lab

    yield factory
    for lab in reversed(labs):
        lab.teardown()


@pytest.fixture
def netns_lab(make_netns_lab) -> NetnsLab:
    """Master + slave namespaces joined by a veth pair."""
    return make_netns_lab()


@pytest.fixture
def netns_lab_witness(make_netns_lab) -> NetnsLab:
    """Like ``netns_lab`` plus a witness namespace linked to the slave."""
    return make_netns_lab(witness=True)


_CUT_TABLE = "wzt_cut"


class BridgeLab(NetnsLab):
    """Three hosts on one bridge: master, slave and a third host (witness, arbiter, berofos) all see each other.

    Why: a cut of the link between the two nodes alone (a switch port, a VLAN between two rooms) leaves both
    nodes reaching the third host; a chain topology cannot express it. The bridge lives in a fourth namespace
    (the "switch"); faults are nftables rules inside the hosts' namespaces:

    * :meth:`cut` / :meth:`heal`: drop everything between two hosts (both directions, both ends);
    * :meth:`blackhole` (inherited): a host answers nobody; :meth:`heal_all` undoes every cut and blackhole.

    Addresses: master 10.231.X.1, slave .2, witness .3 (/24). The NetnsLab names keep working: ``cut_link``
    is ``cut("master", "slave")``, ``cut_witness`` is ``cut("slave", "witness")``.
    """

    def __init__(self) -> None:
        super().__init__(witness=True)
        prefix = f"10.231.{self.subnet_octet}"
        self.master = LabHost("master", f"wzt-{self.tag}-m", f"{prefix}.1")
        self.slave = LabHost("slave", f"wzt-{self.tag}-s", f"{prefix}.2", witness_addr=f"{prefix}.2")
        self.witness = LabHost("witness", f"wzt-{self.tag}-w", f"{prefix}.3")
        self.switch_ns = f"wzt-{self.tag}-b"
        self._cuts: set[frozenset[str]] = set()

    def setup(self) -> BridgeLab:
        self._cleanup_token = register_cleanup(self.teardown)
        try:
            run(["ip", "netns", "add", self.switch_ns])
            self._created.append(self.switch_ns)
            run(["ip", "-n", self.switch_ns, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", self.switch_ns, "link", "set", "br0", "up"])
            for h in self.hosts:
                run(["ip", "netns", "add", h.netns])
                self._created.append(h.netns)
                run(["ip", "-n", h.netns, "link", "set", "lo", "up"])
                port = f"wzt{self.tag}{h.name[0]}"
                inside = f"wzt{self.tag}{h.name[0]}i"
                run(["ip", "link", "add", inside, "netns", h.netns, "type", "veth",
                     "peer", "name", port, "netns", self.switch_ns])
                run(["ip", "-n", h.netns, "addr", "add", f"{h.addr}/24", "dev", inside])
                run(["ip", "-n", h.netns, "link", "set", inside, "up"])
                run(["ip", "-n", self.switch_ns, "link", "set", port, "master", "br0"])
                run(["ip", "-n", self.switch_ns, "link", "set", port, "up"])
                h.ifaces.append(inside)
        except Exception:
            self.teardown()
            raise
        return self

    def _render_cuts(self, host: LabHost) -> None:
        peers = sorted(self.host(n).addr for cut in self._cuts if host.name in cut for n in cut if n != host.name)
        rules = "".join(f"        ip saddr {a} drop\n" for a in peers)
        out = "".join(f"        ip daddr {a} drop\n" for a in peers)
        self._nft(host, f"table inet {_CUT_TABLE} {{}}\ndelete table inet {_CUT_TABLE}\n"
                        f"table inet {_CUT_TABLE} {{\n"
                        f"    chain input {{\n        type filter hook input priority -290; policy accept;\n{rules}    }}\n"
                        f"    chain output {{\n        type filter hook output priority -290; policy accept;\n{out}    }}\n}}\n")

    def cut(self, a: LabHost | str, b: LabHost | str) -> None:
        """Nothing passes between ``a`` and ``b`` any more (each still reaches the third host)."""
        a, b = self.host(a), self.host(b)
        self._cuts.add(frozenset((a.name, b.name)))
        self._render_cuts(a)
        self._render_cuts(b)

    def heal(self, a: LabHost | str, b: LabHost | str) -> None:
        a, b = self.host(a), self.host(b)
        self._cuts.discard(frozenset((a.name, b.name)))
        self._render_cuts(a)
        self._render_cuts(b)

    def heal_all(self) -> None:
        self._cuts.clear()
        for h in self.hosts:
            self._render_cuts(h)
            self.unblackhole(h)

    def cut_link(self) -> None:
        self.cut("master", "slave")

    def restore_link(self) -> None:
        self.heal("master", "slave")

    def cut_witness(self) -> None:
        self.cut("slave", "witness")

    def restore_witness(self) -> None:
        self.heal("slave", "witness")
