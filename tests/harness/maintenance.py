"""Helpers for the maintenance tests: wazod nodes on loopback and the ``wazod`` command line.

Why: maintenance is about two processes agreeing through files and HTTP (the
command writing the state file, the daemon noticing it, the peer's daemon
answering ``POST /maintenance``), so the tests run the real ``wazod run`` and
``wazod maintenance`` processes. A node here is a directory with its
config.yml, state dir and daemon log; its status endpoint listens on a free
loopback port and demands the pair's static token (``auth: always``), as a
real pair's endpoint on the network would.

Owned by the maintenance engineer; other tests may use them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from wazod.events import read_events

from .util import GiveUp, free_port, stop_process_group, tail_lines, wait_for

PY = sys.executable
TOKEN = "maintenance-test-token-0123456789"  # the read token (status.token_file)
ADMIN_TOKEN = "maintenance-test-admin-token-9876543210"  # the pair's admin token (status.admin_token_file)


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_wazod(config: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``wazod <args> --config <config>`` as the administrator would type it."""
    return subprocess.run([PY, "-m", "wazod", *args, "--config", str(config)], capture_output=True, text=True,
                          timeout=timeout)




class LoopNode:
    """One wazod node on loopback: config, state dir, optional daemon process."""

    def __init__(self, root: Path, name: str, *, token_file: Path, overrides: dict | None = None):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.dir / "state"
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "daemon.log"
        self.port = free_port()
        self.token_file = token_file
        self.admin_token_file = admin_token_file(token_file.parent)
        self.proc: subprocess.Popen | None = None
        self.write_config(overrides or {})

    def write_config(self, overrides: dict) -> None:
        base = {
            "node": {"name": self.name, "state_dir": str(self.state_dir), "uuid_file": str(self.dir / "uuid.sh"),
                     "stop_timeout": 10},
            "ha": {"node_type": "disabled", "ha_conf": str(self.dir / "ha.conf")},
            "status": {"listen": f"127.0.0.1:{self.port}", "auth": "always", "token_file": str(self.token_file),
                       "admin_token_file": str(self.admin_token_file)},
            "health": {name: {"enabled": False} for name in ("disk", "process", "ntp", "certificate", "postgresql")},
            "maintenance": {"watch_interval": 0.2},
            "logging": {"level": "info"},
        }
        self.config_path.write_text(yaml.safe_dump(deep_merge(base, overrides), sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run_wazod(self.config_path, *args)

    # --- the daemon -----------------------------------------------------------------
    def start(self, wrapper: list[str] | None = None) -> None:
        """Start ``wazod run``, under ``wrapper`` (an argv prefix such as ``prlimit --nofile=N:N --``) if given."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*(wrapper or []), PY, "-m", "wazod", "run", "--config", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._alive() and self.status().get("daemon") == "running"
                 and self._listening(), timeout=20, message=f"{self.name} daemon not up:\n{self.log_tail()}")

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise GiveUp(f"{self.name} daemon exited:\n{self.log_tail()}")
        return True

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, timeout: float = 20.0) -> int | None:
        return stop_process_group(self.proc, timeout)

    def log_tail(self, n: int = 40) -> str:
        return tail_lines(self.log_path, n)

    # --- observation ----------------------------------------------------------------------
    def events(self, name: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        return read_events(self.state_dir, name, after)

    def status(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.state_dir / "status.json").read_text())
        return {}

    def maintenance_file(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.state_dir / "maintenance.json").read_text())
        return {}


def token_file(root: Path) -> Path:
    path = root / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def admin_token_file(root: Path) -> Path:
    """The admin token both nodes of a pair share (mode 600: the endpoint refuses it otherwise)."""
    path = root / "admin-token"
    path.write_text(ADMIN_TOKEN + "\n")
    path.chmod(0o600)
    return path
