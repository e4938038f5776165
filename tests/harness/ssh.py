"""A private sshd for rsync/ssh based tests.

Why: wazod copies files between the HA nodes with rsync over ssh and must
refuse a peer whose host key changed.  A real OpenSSH server with a
throw-away host key, a generated client key and its own known_hosts file lets
tests exercise exactly the argv wazod builds, without touching the system
sshd, /root/.ssh or the machine's known_hosts.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .util import (
    GiveUp,
    free_port,
    kill_process_group,
    register_cleanup,
    run,
    server_factory,
    start_moving_port_if_taken,
    tail_lines,
    unregister_cleanup,
    wait_for,
)

__all__ = ["Sshd"]


class Sshd:
    """``/usr/sbin/sshd -D -e -f <config>`` on ``listen:port``.

    Attributes: ``port``, ``host``, ``client_key`` (private key path, the
    public key is authorised), ``known_hosts`` (a file containing
    :meth:`known_hosts_line`), ``host_key_fingerprint`` (``SHA256:...``).
    Use :meth:`ssh_argv` / :meth:`rsync_rsh` for ready-made client options.

    ``netns`` runs the daemon inside a network namespace (two-host lab); then
    pass the namespace address as ``listen``.
    """

    binary = "/usr/sbin/sshd"

    def __init__(self, listen: str = "127.0.0.1", port: int | None = None,
                 netns: str | None = None, user: str = "root") -> None:
        self.host = listen
        self.netns = netns
        self.user = user
        self._fixed_port = port
        self._started_once = False
        self.port = port or (free_port(listen) if netns is None else free_port())
        self.base = Path(tempfile.mkdtemp(prefix="wzt-sshd-"))
        self.host_key = self.base / "ssh_host_ed25519_key"
        self.client_key = self.base / "client_ed25519"
        self.authorized_keys = self.base / "authorized_keys"
        self.known_hosts = self.base / "known_hosts"
        self.config = self.base / "sshd_config"
        self.pidfile = self.base / "sshd.pid"
        self.logfile = self.base / "sshd.log"
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self._cleanup_token = register_cleanup(self.destroy)
        self._destroyed = False
        # sshd insists on its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._keygen(self.client_key, "wazod-test-client")
        shutil.copy(self.client_key.with_suffix(".pub"), self.authorized_keys)
        os.chmod(self.authorized_keys, 0o600)
        self.regenerate_host_key(restart=False)
        self._write_config()

    @staticmethod
    def _keygen(path: Path, comment: str) -> None:
        for p in (path, path.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
             "-f", str(path)])

    def _write_config(self) -> None:
        self.config.write_text("\n".join([
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.pidfile}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
        ]) + "\n")

    # -- keys --------------------------------------------------------------
    def regenerate_host_key(self, restart: bool = True) -> None:
        """Replace the host key (and restart if running) to simulate a peer
        that was reinstalled or spoofed.  ``known_hosts`` is *not* updated, so
        strict clients must now refuse to connect; call
        :meth:`write_known_hosts` to accept the new key."""
        self._keygen(self.host_key, "wazod-test-host")
        self.host_key_fingerprint = run(
            ["ssh-keygen", "-l", "-f", str(self.host_key.with_suffix(".pub"))]
        ).stdout.split()[1]
        if not self.known_hosts.exists():
            self.write_known_hosts()
        if restart and self.running:
            self.restart()

    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` (without comment)."""
        parts = self.host_key.with_suffix(".pub").read_text().split()
        return f"{parts[0]} {parts[1]}"

    def known_hosts_line(self) -> str:
        """known_hosts entry for the current host key, ``[host]:port`` form."""
        return f"[{self.host}]:{self.port} {self.host_public_key()}"

    def write_known_hosts(self) -> Path:
        self.known_hosts.write_text(self.known_hosts_line() + "\n")
        return self.known_hosts

    # -- client helpers ----------------------------------------------------
    def ssh_options(self) -> list[str]:
        """Options for a strict, non-interactive client using our files."""
        return ["-p", str(self.port), "-i", str(self.client_key),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=5", "-F", "/dev/null"]

    def ssh_argv(self, *command: str) -> list[str]:
        """``ssh ... user@host command...`` argv."""
        return ["ssh", *self.ssh_options(), f"{self.user}@{self.host}", *command]

    def rsync_rsh(self) -> str:
        """Value for ``rsync -e`` (rsync splits it itself; no shell involved)."""
        return " ".join(["ssh", *self.ssh_options()])

    def target(self, path: str) -> str:
        """``user@host:path`` for rsync."""
        return f"{self.user}@{self.host}:{path}"

    # -- lifecycle ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Sshd:
        """Start sshd and wait for "Server listening".  The first start moves
        to a new port if the chosen one was taken meanwhile; restarts keep it
        (known_hosts entries name the port)."""
        if self.running:
            return self
        def reconfigure() -> None:
            self._write_config()
            self.write_known_hosts()

        return start_moving_port_if_taken(self, lambda: self._start_once(timeout), reconfigure)

    def _start_once(self, timeout: float) -> Sshd:
        argv = [self.binary, "-D", "-e", "-f", str(self.config)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.logfile.write_bytes(b"")
        self._log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def _listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise GiveUp("sshd exited")
            return "Server listening on" in self.logfile.read_text(errors="replace")

        try:
            wait_for(_listening, timeout=timeout, interval=0.05)
        except (TimeoutError, GiveUp):
            self.stop()
            raise RuntimeError(f"sshd failed to start:\n{self.log_tail()}") from None
        self._started_once = True
        return self

    def stop(self) -> None:
        """Stop sshd and any session processes it forked (same group)."""
        kill_process_group(self.proc, sig=15)
        self.proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def restart(self) -> Sshd:
        self.stop()
        return self.start()

    def log_tail(self, n: int = 40) -> str:
        return tail_lines(self.logfile, n)

    def destroy(self) -> None:
        if getattr(self, "_destroyed", True):
            return
        self._destroyed = True
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        unregister_cleanup(self._cleanup_token)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Sshd {self.host}:{self.port} running={self.running}>"


@pytest.fixture
def make_sshd() -> Iterator[Callable[..., Sshd]]:
    """Factory ``make_sshd(listen='127.0.0.1', port=None, netns=None,
    user='root', start=True) -> Sshd``; all destroyed at teardown.  Use it for
    an sshd inside a NetnsLab host (``listen=lab.master.addr,
    netns=lab.master.netns``)."""
    yield from server_factory(Sshd)


@pytest.fixture
def sshd() -> Iterator[Sshd]:
    """A started sshd on 127.0.0.1:<free port> accepting ``sshd.client_key``
    for root; ``sshd.known_hosts`` trusts its current host key."""
    server = Sshd()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
