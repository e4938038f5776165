"""The supervisor as a real process: systemd notify, SIGHUP reload, ha.conf watching, SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.util import free_port, wait_for

from wazod.events import read_events


class Daemon:
    """``wazod run`` in a subprocess, with a real datagram NOTIFY_SOCKET."""

    def __init__(self, tmp: Path, config_text: str, abstract: bool = False, watchdog_usec: int | None = None):
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.config = tmp / "etc" / "config.yml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        (self.config.parent / "conf.d").mkdir(exist_ok=True)
        self.config.write_text(config_text.replace("@STATE@", str(self.state_dir)).replace("@PORT@", str(free_port())))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"wazod-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.notify_address = "@" + name
        else:
            path = str(tmp / "notify.sock")
            self.sock.bind(path)
            self.notify_address = path
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_address)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.proc = subprocess.Popen([sys.executable, "-m", "wazod", "run", "--config", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)

    def read_notify(self, seconds: float = 0.5) -> list[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.extend(data.split("\n"))
        return self.messages

    def wait_notify(self, line: str, timeout: float = 20) -> bool:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output()[-2000:]}")
            return line in self.read_notify(0.2)
        return wait_for(seen, timeout=timeout)

    def events(self, name: str | None = None) -> list[dict]:
        return read_events(self.state_dir, name)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        self.read_notify(0.1)
        return code

    def output(self) -> str:
        return self.proc.stdout.read().decode() if self.proc.poll() is not None else ""


BASE = """
node: {name: testnode, state_dir: "@STATE@", uuid_file: /nonexistent}
ha: {node_type: disabled, ha_conf: /nonexistent/ha.conf}
status: {listen: "127.0.0.1:@PORT@"}
"""


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[Daemon] = []

    def make(config_text: str = BASE, **kw) -> Daemon:
        d = Daemon(tmp_path, config_text, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.sock.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path-socket", "abstract-socket"])
def test_ready_watchdog_and_stopping_notifications(daemon_factory, abstract):
    d = daemon_factory(abstract=abstract, watchdog_usec=400_000)
    assert d.wait_notify("READY=1"), d.messages
    assert any(m.startswith("STATUS=running as disabled") for m in d.messages)
    # half of WATCHDOG_USEC = 0.2 s: several pings arrive while the loop is healthy
    assert wait_for(lambda: d.read_notify(0.3).count("WATCHDOG=1") >= 3, timeout=10)
    assert d.stop() == 0
    assert "STOPPING=1" in d.messages
    names = [e["name"] for e in d.events()]
    assert names[0] == "daemon_started" and names[-1] == "daemon_stopping"


def test_sigterm_stops_cleanly_and_logs_json(daemon_factory):
    d = daemon_factory()
    assert d.wait_notify("READY=1")
    assert d.stop() == 0
    lines = [line for line in d.output().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    for line in lines:
        assert line.startswith("<"), line
        prio, _, body = line[1:].partition(">")
        assert prio.isdigit()
        json.loads(body)  # one JSON object per line
    assert any('"daemon stopped"' in line for line in lines)
    status = json.loads((d.state_dir / "status.json").read_text())
    assert status["daemon"] == "not running"


def _next_purge(d: Daemon):
    """The daemon's next purge run as it publishes it (status.json, written by the running scheduler)."""
    with open(d.state_dir / "status.json") as f:
        nxt = json.load(f).get("next_runs", {}).get("purge")
    return dt.datetime.fromisoformat(nxt) if nxt else None


def test_sighup_reload_applies_a_valid_change(daemon_factory):
    d = daemon_factory()
    assert d.wait_notify("READY=1")
    first = wait_for(lambda: _next_purge(d), timeout=15)
    assert (first.hour, first.minute) == (3, 25)  # the shipped schedule, 25 3 * * *
    (d.config.parent / "conf.d" / "10-purge.yml").write_text("purge: {days_to_keep: 42, schedule: '17 4 * * *'}\n")
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.events("config_reloaded"), timeout=15)
    ev = d.events("config_reloaded")[-1]
    assert ev["data"]["ok"] is True and "purge" in ev["data"]["changed"]
    # the new value is the one in use: the running scheduler now plans the purge at 04:17
    nxt = wait_for(lambda: (n := _next_purge(d)) and (n.hour, n.minute) == (4, 17) and n, timeout=15)
    assert nxt.second == 0
    assert d.proc.poll() is None
    assert d.stop() == 0
    lines = d.output().splitlines()
    # the journal's HA story at notice (<5>), each line's human message first
    reloaded = next(line for line in lines if '"name": "config_reloaded"' in line)
    assert reloaded.startswith('<5>{"event": "configuration reloaded (') and "purge" in reloaded.split(",")[0]
    assert next(line for line in lines if '"name": "daemon_started"' in line).startswith('<5>{"event": "wazod started"')


def test_sighup_with_invalid_config_keeps_running_config(daemon_factory):
    d = daemon_factory()
    assert d.wait_notify("READY=1")
    (d.config.parent / "conf.d" / "20-bad.yml").write_text("purge: {days_to_keep: [oops\n")
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: d.events("config_reloaded"), timeout=15)
    ev = d.events("config_reloaded")[-1]
    assert ev["data"]["ok"] is False
    assert "20-bad.yml" in ev["data"]["error"]
    # still running on its config, and still listening: the file fixed, the next SIGHUP applies it
    (d.config.parent / "conf.d" / "20-bad.yml").write_text("purge: {days_to_keep: 42}\n")
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: len(d.events("config_reloaded")) == 2, timeout=15)
    assert d.events("config_reloaded")[-1]["data"]["ok"] is True
    assert d.proc.poll() is None, "an invalid reload must not stop the daemon"
    assert d.stop() == 0
    refused = next(line for line in d.output().splitlines() if '"name": "config_reloaded"' in line)
    assert refused.startswith('<4>{"event": "configuration reload REFUSED, the running configuration is kept: ')


def test_ha_conf_rewrite_is_noticed_without_restart(daemon_factory, tmp_path):
    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_text(json.dumps({"node_type": "disabled", "remote_address": "192.0.2.1"}))
    text = BASE.replace("ha: {node_type: disabled, ha_conf: /nonexistent/ha.conf}", f"ha: {{ha_conf: {ha_conf}}}")
    d = daemon_factory(text)
    assert d.wait_notify("READY=1")
    time.sleep(0.1)
    ha_conf.write_text(json.dumps({"node_type": "disabled", "remote_address": "192.0.2.2"}))
    os.utime(ha_conf, (time.time() + 5, time.time() + 5))  # a distinct mtime even on coarse clocks
    assert wait_for(lambda: d.events("config_reloaded"), timeout=15)
    ev = d.events("config_reloaded")[-1]
    assert ev["data"]["ok"] is True and ev["data"]["reason"] == "ha.conf changed" and "ha" in ev["data"]["changed"]
    assert d.stop() == 0


def test_second_daemon_on_same_state_dir_exits_3(daemon_factory, tmp_path):
    d = daemon_factory()
    assert d.wait_notify("READY=1")
    out = subprocess.run([sys.executable, "-m", "wazod", "run", "--config", str(d.config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "lock" in out.stderr
    assert d.stop() == 0


def test_status_answers_from_saved_state_when_daemon_is_down(daemon_factory):
    d = daemon_factory()
    assert d.wait_notify("READY=1")
    live = subprocess.run([sys.executable, "-m", "wazod", "status", "--json", "--config", str(d.config)],
                          capture_output=True, text=True, timeout=60)
    assert live.returncode == 0
    assert json.loads(live.stdout)["daemon"] == "running"
    assert d.stop() == 0
    down = subprocess.run([sys.executable, "-m", "wazod", "status", "--json", "--config", str(d.config)],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0
    doc = json.loads(down.stdout)
    assert doc["daemon"] == "not running"
    assert doc["node"] == "testnode" and doc["role"] == "disabled"
    assert set(doc["jobs"]) >= {"replication", "sync", "backup", "purge"}
    text = subprocess.run([sys.executable, "-m", "wazod", "status", "--config", str(d.config)],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "NOT RUNNING" in text.stdout.splitlines()[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="the shipped config keeps state in /var/lib/wazod")
def test_shipped_config_starts_on_a_plain_machine_and_stops_on_sigterm():
    """`wazod run --config etc/wazod/config.yml`: HA disabled, no broker, JSON logs, clean SIGTERM."""
    root = Path(__file__).resolve().parents[1]
    if Path("/etc/xivo/ha.conf").exists():
        pytest.skip("this machine is a Wazo node: its ha.conf would apply")
    proc = subprocess.Popen([sys.executable, "-m", "wazod", "run", "--config", str(root / "etc/wazod/config.yml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        deadline = time.monotonic() + 30
        lines = [first]
        while '"daemon started"' not in lines[-1] and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        assert '"daemon started"' in lines[-1], lines
        assert '"role": "disabled"' in lines[-1]
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    for line in (lines + rest.splitlines()):
        if line.strip():
            assert line.startswith("<") and json.loads(line.split(">", 1)[1])


def test_status_shows_maintenance_expired_while_the_daemon_was_down(tmp_path):
    """The maintenance file decides: an expiry during the daemon's absence shows as ended."""
    from wazod.config import load_config
    from wazod.maintenance.state import MaintenanceState
    from wazod.status_view import collect_status

    cfg_path = tmp_path / "config.yml"
    cfg_path.write_text(BASE.replace("@STATE@", str(tmp_path / "state")).replace("@PORT@", str(free_port())))
    config = load_config(cfg_path).config
    state = MaintenanceState(config.node.state_dir, config.node_name)
    state.switch_on(duration=60, reason="upgrade", user="root", node="testnode", now=time.time() - 120)
    doc = collect_status(config)
    assert doc["daemon"] == "not running"
    assert doc["maintenance"]["active"] is False and doc["maintenance"]["last"]["reason"] == "upgrade"
    state.switch_on(duration=3600, reason="repair", user="root", node="testnode")
    doc = collect_status(config)
    assert doc["maintenance"]["active"] is True and doc["maintenance"]["reason"] == "repair"
