"""ssh for file sync: the key, the other node's recorded host key, strict options.

Wazo's ``xivo-sync`` ran ssh with only ``PreferredAuthentications=publickey``:
the first connection trusted whatever host answered, and later a changed host
key either blocked the cron job silently or was accepted by hand. wazod keeps
its own known_hosts file for the other node (written by ``wazod sync
--init``), always connects with ``StrictHostKeyChecking=yes`` and
``BatchMode=yes``, and turns ssh's failures into sentences.
"""

from __future__ import annotations

import shlex
from pathlib import Path

HOST_KEY_CHANGED_MARKERS = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed",
                            "host key for", "No ED25519 host key is known", "No RSA host key is known",
                            "No ECDSA host key is known")
AUTH_FAILED_MARKERS = ("Permission denied",)
UNREACHABLE_MARKERS = ("Connection refused", "Connection timed out", "No route to host",
                       "Could not resolve hostname", "Network is unreachable", "Connection closed by")


def known_hosts_path(config) -> Path:
    return Path(config.sync.known_hosts) if config.sync.known_hosts else config.state_dir / "known_hosts"


def bracket(host: str) -> str:
    """``user@host`` needs brackets around an IPv6 address."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def remote_host(config) -> str:
    from wazod.errors import ConfigError

    host = config.ha.remote_address
    if not host:
        raise ConfigError("ha.remote_address is not set (nor in ha.ha_conf): file sync does not know the other node")
    return host


def ssh_options(config, *, batch: bool = True) -> list[str]:
    sc = config.sync
    opts = [
        "-i", sc.ssh_key, "-p", str(sc.ssh_port),
        "-o", "PreferredAuthentications=publickey",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts_path(config)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"ConnectTimeout={sc.connect_timeout}",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
    ]
    if batch:
        opts += ["-o", "BatchMode=yes"]
    return opts


def rsync_rsh(config) -> str:
    """Value of ``rsync -e``: rsync splits it itself (quotes honoured), no shell runs."""
    return " ".join(shlex.quote(a) for a in ["ssh", *ssh_options(config)])


def explain_ssh_failure(stderr: str, config, host: str) -> str | None:
    """A sentence for the administrator when ssh (not rsync) failed, else None."""
    kh = known_hosts_path(config)
    if any(m.lower() in stderr.lower() for m in HOST_KEY_CHANGED_MARKERS):
        return (f"the host key of {host} does not match the one recorded in {kh} (node reinstalled, or "
                f"someone in the middle?): check the key's fingerprint on {host}, then run `wazod sync --init` "
                "to record it")
    if any(m in stderr for m in AUTH_FAILED_MARKERS):
        return (f"{config.sync.remote_user}@{host} refused the key {config.sync.ssh_key}: run `wazod sync --init` "
                "to install it")
    lines = [line for line in stderr.splitlines() if any(m in line for m in UNREACHABLE_MARKERS)]
    if lines:
        return f"cannot reach {host} port {config.sync.ssh_port} over ssh: {lines[0].strip()}"
    return None


def preflight(config) -> str | None:
    """What is missing before any connection (None: ready)."""
    key, kh = Path(config.sync.ssh_key), known_hosts_path(config)
    if not key.exists():
        return f"ssh key {key} does not exist: run `wazod sync --init` to create and install it"
    if not kh.exists() or not kh.read_text().strip():
        return f"no host key recorded for the other node in {kh}: run `wazod sync --init`"
    return None
