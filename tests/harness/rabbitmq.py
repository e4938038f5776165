"""A private RabbitMQ node per test module, with a vhost and a user of its own.

Why a node of our own rather than the machine's broker on 5672: the tests
must restart the broker mid-stream, and the machine's broker must keep
running for everybody else. Debian's rabbitmq-server runs a second node
happily beside the first: its own node name, AMQP and distribution ports,
data and log directories, and HOME (so its Erlang cookie is its own). The
users, vhost and permissions come from a definitions file loaded at boot.
The data directory survives ``restart()`` so durable queues and persistent
messages do too, as on a real broker restart.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .util import (
    GiveUp,
    free_port,
    kill_process_group,
    register_cleanup,
    stop_process_group,
    tail_lines,
    unregister_cleanup,
    wait_for,
)

__all__ = ["RabbitMQ", "rabbitmq"]

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class RabbitMQ:
    """rabbitmq-server on 127.0.0.1:``port``; vhost ``vhost`` where ``user``/``password`` may do anything."""

    def __init__(self, vhost: str = "wazod-test", user: str = "wazod", password: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dist_port = free_port()
        self.vhost = vhost
        self.user = user
        self.password = password or secrets.token_hex(8)
        self.node = f"wzt{secrets.token_hex(4)}@localhost"
        self.base = Path(tempfile.mkdtemp(prefix="wzt-rabbit-"))
        self.logfile = self.base / "server.log"
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self._write_files()
        self._cleanup_token = register_cleanup(self.destroy)
        self._destroyed = False

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{self.vhost}"

    def _write_files(self) -> None:
        definitions = {
            "users": [{"name": self.user, "password_hash": password_hash(self.password),
                       "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}],
            "vhosts": [{"name": self.vhost}],
            "permissions": [{"user": self.user, "vhost": self.vhost,
                             "configure": ".*", "write": ".*", "read": ".*"}],
        }
        (self.base / "definitions.json").write_text(json.dumps(definitions))
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.host}:{self.port}\n"
            f"load_definitions = {self.base / 'definitions.json'}\n"
            "loopback_users = none\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "home").mkdir(exist_ok=True)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.base / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=self.host,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.base / "pid"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq"),
        )
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> RabbitMQ:
        if self.running:
            return self
        self._log_fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen([SERVER], env=self._env(), stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def _up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise GiveUp("rabbitmq-server exited")
            # the AMQP listener opens last, once definitions are loaded
            import socket
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex((self.host, self.port)) == 0

        try:
            wait_for(_up, timeout=timeout, interval=0.2)
        except (TimeoutError, GiveUp):
            self.kill()
            raise RuntimeError(f"rabbitmq-server failed to start:\n{self.log_tail()}") from None
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """A clean broker stop (SIGTERM to its process group): durable queues are kept on disk."""
        if self.proc is None:
            return
        stop_process_group(self.proc, timeout)
        # epmd-registered children (erl_child_setup) go with the group
        kill_process_group(self.proc)
        self.proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def kill(self) -> None:
        kill_process_group(self.proc)
        self.proc = None

    def restart(self) -> RabbitMQ:
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

    def __repr__(self) -> str:
        return f"<RabbitMQ {self.node} {self.host}:{self.port} running={self.running}>"


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitMQ]:
    """A started private RabbitMQ node (module-wide: it takes ~5 s to boot); ``.url``, ``.restart()``."""
    if not Path(SERVER).exists():
        pytest.skip("rabbitmq-server is not installed (scripts/setup.sh installs it)")
    broker = RabbitMQ()
    try:
        broker.start()
        yield broker
    finally:
        broker.destroy()
