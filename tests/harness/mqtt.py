"""A real mosquitto broker per test.

Why: wazod talks MQTT (aiomqtt) and must cope with the broker restarting.
What matters in those tests is mosquitto's own behaviour on restart:
retained messages and QoS1 messages queued for persistent sessions are
written to the persistence file on shutdown and reloaded on start.  The
broker therefore keeps its persistence directory across ``stop()``/``start()``
and always comes back on the same port.
"""
from __future__ import annotations

import os
import shutil
import signal
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
    server_factory,
    start_moving_port_if_taken,
    tail_lines,
    unregister_cleanup,
    wait_for,
)

__all__ = ["Mosquitto"]


class Mosquitto:
    """mosquitto on ``host:port`` with anonymous access and persistence."""

    binary = "/usr/sbin/mosquitto"

    def __init__(self, host: str = "127.0.0.1", port: int | None = None,
                 netns: str | None = None) -> None:
        """``netns``: run inside that network namespace (then ``host`` is one
        of the lab's addresses)."""
        self.host = host
        self.netns = netns
        self._fixed_port = port
        self._started_once = False
        self.port = port or (free_port(host) if netns is None else free_port())
        self.base = Path(tempfile.mkdtemp(prefix="wzt-mqtt-"))
        self.persist_dir = self.base / "persist"
        self.persist_dir.mkdir()
        self.conf = self.base / "mosquitto.conf"
        self.logfile = self.base / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self._write_conf()
        self._cleanup_token = register_cleanup(self.destroy)
        self._destroyed = False

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.persist_dir}/",
            "persistence_file mosquitto.db",
            # Save often too, so even a SIGKILL loses at most ~1 s of state.
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # Otherwise mosquitto drops to the 'mosquitto' user, which cannot
            # write our root-owned temporary persistence directory.
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start the broker (again on the same port) and wait until it listens.

        Only the very first start may move to another port, if the one picked
        by free_port() was grabbed in the meantime; restarts keep the port
        because clients under test reconnect to it.
        """
        if self.running:
            return self
        return start_moving_port_if_taken(self, lambda: self._start_once(timeout), self._write_conf)

    def _start_once(self, timeout: float) -> Mosquitto:
        offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        self._log_fh = open(self.logfile, "ab")
        argv = [self.binary, "-c", str(self.conf)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.proc = subprocess.Popen(
            argv, stdout=self._log_fh,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def _up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise GiveUp("mosquitto exited")
            # "... running" is logged only once every listener is bound (a
            # TCP probe alone could hit whoever else holds the port).
            with open(self.logfile, "rb") as fh:
                fh.seek(offset)
                return b" running" in fh.read()

        try:
            wait_for(_up, timeout=timeout, interval=0.05)
        except (TimeoutError, GiveUp):
            self.kill()
            raise RuntimeError(f"mosquitto failed to start:\n{self.log_tail()}") from None
        self._started_once = True
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): mosquitto writes its persistence file."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_process_group(self.proc)
        self.proc = None
        self._close_log()

    def kill(self) -> None:
        """Crash the broker (SIGKILL); unsaved state since last autosave is lost."""
        kill_process_group(self.proc)
        self.proc = None
        self._close_log()

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def log_tail(self, n: int = 40) -> str:
        return tail_lines(self.logfile, n)

    def destroy(self) -> None:
        """Kill the broker and remove its directory (idempotent)."""
        if getattr(self, "_destroyed", True):
            return
        self._destroyed = True
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)
        unregister_cleanup(self._cleanup_token)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<Mosquitto {self.host}:{self.port} running={self.running}>"


@pytest.fixture
def make_mosquitto() -> Iterator[Callable[..., Mosquitto]]:
    """Factory ``make_mosquitto(host='127.0.0.1', port=None, netns=None,
    start=True) -> Mosquitto``; every broker made is destroyed at teardown."""
    yield from server_factory(Mosquitto)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A started broker; ``mosquitto.host``/``.port``; stop/start/restart keep
    the port and persisted messages."""
    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.destroy()
