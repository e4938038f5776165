"""The demo's two-node lab: hosts, PostgreSQL clusters, sshd, broker, berofos simulator.

Everything is made under one temporary directory and torn down by
``Lab.close()``, whatever happened. As root the two nodes live in two network
namespaces joined by a veth pair (plus a management link each to this host,
for the broker and the berofos simulator), and the master is failed by
cutting it off with nftables. Without root they share loopback addresses
(127.0.0.2 and 127.0.0.3) and the master is failed by stopping its services
and daemon. Only loopback and the namespaces' own addresses are ever used.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PY = sys.executable


class LabError(Exception):
    """A lab component could not be set up; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 20.0, netns: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if netns:
            ok = subprocess.run(["ip", "netns", "exec", netns, PY, "-c",
                                 f"import socket; socket.create_connection(({host!r}, {port}), 0.5).close()"],
                                capture_output=True).returncode == 0
        else:
            try:
                socket.create_connection((host, port), 0.5).close()
                ok = True
            except OSError:
                ok = False
        if ok:
            return
        time.sleep(0.1)
    raise LabError(f"nothing listens on {host}:{port} after {timeout:g} s")


def pg_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise LabError("PostgreSQL server binaries (pg_ctl, initdb) are not installed: apt-get install postgresql")


@dataclass
class Host:
    """One node of the lab: its address and, as root, its network namespace."""

    name: str
    addr: str
    netns: str | None = None
    mgmt_addr: str | None = None  # this host's side of the management link (root mode)

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)


@dataclass
class Lab:
    root: Path
    netns_mode: bool
    master: Host
    slave: Host
    broker_addr: str  # where both nodes reach the broker and the berofos simulator
    procs: list[subprocess.Popen] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    pg_dirs: list[Path] = field(default_factory=list)
    # pid files of daemons that detach themselves (the Asterisk stand-in started by a services 'start'
    # step forks and calls setsid): no Popen of ours holds them, so close() stops them by pid file
    pidfiles: list[Path] = field(default_factory=list)

    # --- construction -------------------------------------------------------
    @classmethod
    def create(cls, force_loopback: bool = False) -> Lab:
        root = Path(tempfile.mkdtemp(prefix="wazod-demo-"))
        os.chmod(root, 0o755)  # the postgres user must traverse it
        use_netns = not force_loopback and os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft")
        if use_netns:
            try:
                return cls._create_netns(root)
            except (LabError, subprocess.CalledProcessError, OSError) as e:
                print(f"  (network namespaces unavailable: {e}; using loopback)", flush=True)
        return cls(root, False, Host("pbx-master", "127.0.0.2"), Host("pbx-slave", "127.0.0.3"), "127.0.0.1")

    @classmethod
    def _create_netns(cls, root: Path) -> Lab:
        tag = f"{os.getpid() % 10000:04d}{random.randint(0, 99):02d}"
        net = random.randint(200, 250)
        m_ns, s_ns = f"wzdm{tag}", f"wzds{tag}"
        lab = cls(root, True,
                  Host("pbx-master", f"10.231.{net}.1", m_ns, f"10.231.{net}.66"),
                  Host("pbx-slave", f"10.231.{net}.2", s_ns, f"10.231.{net}.70"),
                  f"10.231.{net}.65")
        slave_side_host = f"10.231.{net}.69"

        def ip(*args: str) -> None:
            subprocess.run(["ip", *args], check=True, capture_output=True)

        try:
            for ns in (m_ns, s_ns):
                ip("netns", "add", ns)
                lab.namespaces.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "add", f"vm{tag}", "netns", m_ns, "type", "veth", "peer", "name", f"vs{tag}", "netns", s_ns)
            ip("-n", m_ns, "addr", "add", f"{lab.master.addr}/26", "dev", f"vm{tag}")
            ip("-n", s_ns, "addr", "add", f"{lab.slave.addr}/26", "dev", f"vs{tag}")
            ip("-n", m_ns, "link", "set", f"vm{tag}", "up")
            ip("-n", s_ns, "link", "set", f"vs{tag}", "up")
            # management links: this host <-> each node, for the broker and the berofos simulator
            for host, here, ifname in ((lab.master, lab.broker_addr, f"hm{tag}"), (lab.slave, slave_side_host, f"hs{tag}")):
                ip("link", "add", ifname, "type", "veth", "peer", "name", f"n{ifname}", "netns", host.netns)
                ip("addr", "add", f"{here}/30", "dev", ifname)
                ip("link", "set", ifname, "up")
                ip("-n", host.netns, "addr", "add", f"{host.mgmt_addr}/30", "dev", f"n{ifname}")
                ip("-n", host.netns, "link", "set", f"n{ifname}", "up")
            # the slave reaches this host's master-side address too (a host answers on any of its
            # addresses), so the broker and the simulator listen on one address for both nodes
            ip("-n", s_ns, "route", "add", f"{lab.broker_addr}/32", "via", slave_side_host)
            lab._host_ifaces = [f"hm{tag}", f"hs{tag}"]
            lab.slave_side_host = slave_side_host
        except BaseException:
            lab.close()
            raise
        return lab

    # --- processes ----------------------------------------------------------
    def spawn(self, argv: list[str], host: Host | None = None, log: str | None = None, env=None,
              user: str | None = None) -> subprocess.Popen:
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        if host is not None:
            argv = host.wrap(argv)
        out = open(self.root / log, "ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], host: Host | None = None, user: str | None = None, check: bool = True,
            input: str | None = None, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        if host is not None:
            argv = host.wrap(argv)
        out = subprocess.run(argv, capture_output=True, text=True, input=input, env=env, timeout=timeout)
        if check and out.returncode != 0:
            raise LabError(f"{' '.join(argv[:6])}... failed ({out.returncode}): {out.stderr.strip()[-400:]}")
        return out

    @staticmethod
    def stop_proc(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    # --- PostgreSQL -----------------------------------------------------------
    def start_postgres(self, host: Host, name: str) -> int:
        """A fresh cluster for ``host`` (trust auth), listening on its address; returns the port."""
        bindir = pg_bindir()
        datadir = self.root / f"pg-{name}"
        sockdir = self.root / f"pgsock-{name}"
        sockdir.mkdir()
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                raise LabError("running as root needs the 'postgres' system user to run PostgreSQL") from None
            datadir.mkdir()
            os.chown(datadir, pw.pw_uid, pw.pw_gid)
            os.chown(sockdir, pw.pw_uid, pw.pw_gid)
        self.run([str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions"], user=user)
        with open(datadir / "pg_hba.conf", "a") as f:
            f.write("host all all 0.0.0.0/0 trust\n")
        port = 5432 if self.netns_mode else free_port(host.addr)
        self.run([str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(sockdir / "postgres.log"), "-w", "-t", "60",
                  "-o", f"-p {port} -k {sockdir} -c listen_addresses={host.addr} -c fsync=off "
                        f"-c synchronous_commit=off -c full_page_writes=off", "start"], host=host, user=user)
        self.pg_dirs.append(datadir)
        self._pg_user = user
        return port

    def stop_postgres(self) -> None:
        with contextlib.suppress(LabError):
            bindir = pg_bindir()
            for datadir in self.pg_dirs:
                host = None
                if self.netns_mode:
                    host = self.master if "master" in datadir.name else self.slave
                with contextlib.suppress(LabError, subprocess.TimeoutExpired):
                    self.run([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                             host=host, user=getattr(self, "_pg_user", None), check=False, timeout=30)

    # --- faults -------------------------------------------------------------
    def cut_off(self, host: Host) -> None:
        """Drop everything in and out of ``host`` but its loopback (nftables in its namespace)."""
        ruleset = ("table inet wazod_demo {\n"
                   " chain in { type filter hook input priority -10; policy drop; iif lo accept; }\n"
                   " chain out { type filter hook output priority -10; policy drop; oif lo accept; }\n}\n")
        self.run(["nft", "-f", "-"], host=host, input=ruleset)

    def reconnect(self, host: Host) -> None:
        self.run(["nft", "delete", "table", "inet", "wazod_demo"], host=host, check=False)

    # --- teardown -------------------------------------------------------------
    def track_pidfile(self, path: Path) -> None:
        """``close()`` stops the daemon whose pid ``path`` holds, whoever started it."""
        self.pidfiles.append(Path(path))

    def stop_detached(self, timeout: float = 10.0) -> list[int]:
        """Stop the detached daemons of the tracked pid files (their whole process group, as each
        leads its session); returns the pids stopped. A pid is ours only while its command line
        names the pid file, so a pid reused by another process is never signalled."""
        stopped = []
        for path in self.pidfiles:
            try:
                pid = int(path.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if str(path).encode() not in cmdline.split(b"\0"):
                continue
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _alive(pid):
                    break
            stopped.append(pid)
        return stopped

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop_proc(proc, timeout=10)
        with contextlib.suppress(Exception):
            self.stop_detached()
        self.stop_postgres()
        if self.netns_mode or self.namespaces:
            for ns in self.namespaces:
                # anything still running in the namespace (daemonized stand-ins) goes with it
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            for ifname in getattr(self, "_host_ifaces", []):
                subprocess.run(["ip", "link", "del", ifname], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def www_data_gid() -> int | None:
    with contextlib.suppress(KeyError):
        return grp.getgrnam("www-data").gr_gid
    return None


# --- sshd ---------------------------------------------------------------------
def make_keypair(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wazod demo", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def start_sshd(lab: Lab, host: Host, name: str, client_pub: Path) -> tuple[int, str]:
    """A real sshd for ``host`` accepting the demo key; returns (port, host public key line)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        raise LabError("sshd is not installed: apt-get install openssh-server")
    d = lab.root / f"sshd-{name}"
    d.mkdir()
    make_keypair(d / "host_key")
    shutil.copy(client_pub, d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    port = 22 if lab.netns_mode else free_port(host.addr)
    (d / "sshd_config").write_text(
        f"ListenAddress {host.addr}\nPort {port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n")
    lab.spawn([sshd, "-D", "-e", "-f", str(d / "sshd_config")], host=host, log=f"sshd-{name}.log")
    wait_port(host.addr, port, netns=host.netns)
    return port, (d / "host_key.pub").read_text().split(" ")[0] + " " + (d / "host_key.pub").read_text().split(" ")[1]


def start_mosquitto(lab: Lab, listen: list[str]) -> int | None:
    broker = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(broker).exists():
        return None
    port = free_port(listen[0])
    conf = lab.root / "mosquitto.conf"
    lines = ["allow_anonymous true", "persistence false"]
    for addr in listen:
        lines += [f"listener {port} {addr}"]
    conf.write_text("\n".join(lines) + "\n")
    lab.spawn([broker, "-c", str(conf)], log="mosquitto.log")
    wait_port(listen[0], port)
    return port
