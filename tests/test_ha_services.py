"""Services backends, the ``wazod services`` and ``wazod check-master`` commands, markers and config checks.

Wazo's own tools cannot run here, so the ``wazo`` backend is exercised with
real executables of the same names put first on PATH: each records its argv,
so the test sees the exact sequence Wazo runs, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import free_port

from wazod.config import load_config
from wazod.errors import ConfigError
from wazod.events import EventStore
from wazod.ha import services as svc
from wazod.ha.monitor import marker_problem
from wazod.locks import OperationLock

WAZO_TOOLS = ["xivo-create-config", "xivo-update-config", "dhcpd-update", "service", "update-rc.d",
              "wazo-confgen", "wazo-service", "wazo-agentd-cli"]


@pytest.fixture
def wazo_bin(tmp_path, monkeypatch):
    """Stand-ins for Wazo's tools that log their argv; ``wazo-service status all`` reads a state file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    running = tmp_path / "running"
    for tool in WAZO_TOOLS:
        extra = ""
        if tool == "wazo-service":
            extra = f'[ "$1" = status ] && {{ [ -e {running} ]; exit $?; }}\n'
        if tool == "dhcpd-update":
            extra = "exit 3\n"  # no DHCP configured on this node: Wazo goes on, so do we
        (bindir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{extra}exit 0\n')
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log, running


def _services(**kw):
    from wazod.config.sections.ha import ServicesSection

    return ServicesSection(**{"retry_backoff": 0.01, **kw})


async def test_wazo_backend_runs_wazos_exact_start_sequence_with_berofos_at_its_point(wazo_bin):
    log, _running = wazo_bin

    async def hook():
        with open(log, "a") as f:
            f.write("BEROFOS mode 0\n")
        return []

    report = await svc.run_action(_services(backend="wazo"), "start", hook=hook)
    assert report.ok and not report.skipped
    assert log.read_text().splitlines() == [
        "wazo-service status all",
        "xivo-create-config ",
        "xivo-update-config ",
        "dhcpd-update -dr",
        "service isc-dhcp-server start",
        "update-rc.d isc-dhcp-server defaults",
        "BEROFOS mode 0",
        "wazo-confgen asterisk/pjsip.conf --invalidate",
        "wazo-service enable",
        "wazo-service start",
        "wazo-agentd-cli -c relog all --timeout 60",
    ]
    dhcp = [s for s in report.steps if s.step == "dhcpd-update"][0]
    assert not dhcp.ok and dhcp.attempts == 1  # optional step: failure logged, sequence went on


async def test_wazo_backend_skips_start_when_everything_runs_but_still_switches_berofos(wazo_bin):
    log, running = wazo_bin
    running.touch()
    hooked = []

    async def hook():
        hooked.append(1)

    report = await svc.run_action(_services(backend="wazo"), "start", hook=hook)
    assert report.ok and report.skipped and hooked == [1]
    assert log.read_text().splitlines() == ["wazo-service status all"]


async def test_wazo_backend_stop_sequence(wazo_bin):
    log, _ = wazo_bin
    report = await svc.run_action(_services(backend="wazo"), "stop")
    assert report.ok
    assert log.read_text().splitlines() == [
        "wazo-service stop wazo", "wazo-service disable", "update-rc.d isc-dhcp-server remove",
        "service isc-dhcp-server stop", "wazo-service start",
    ]


async def test_systemd_backend_sequences():
    steps, status = svc.sequence(_services(backend="systemd", units=["a", "b"]), "stop")
    assert [s.argv for s in steps] == [("systemctl", "stop", "b"), ("systemctl", "stop", "a")]
    steps, status = svc.sequence(_services(backend="systemd", units=["a", "b"]), "start")
    assert [s.argv for s in steps] == [None, ("systemctl", "start", "a"), ("systemctl", "start", "b")]
    assert status == ("systemctl", "is-active", "--quiet", "a", "b")


async def test_command_backend_retries_a_failing_step_with_backoff(tmp_path):
    counter = tmp_path / "attempts"
    done = tmp_path / "done"
    flaky = tmp_path / "flaky"
    flaky.write_text(f'#!/bin/sh\necho x >> {counter}\n[ $(wc -l < {counter}) -ge 3 ] || exit 1\ntouch {done}\n')
    flaky.chmod(0o755)
    report = await svc.run_action(_services(backend="command", start=[[str(flaky)]], retries=3), "start")
    assert report.ok and done.exists()
    assert report.steps[-1].attempts == 3


async def test_command_backend_reports_the_failing_step_and_stops_there(tmp_path):
    after = tmp_path / "after"
    report = await svc.run_action(
        _services(backend="command", stop=[["true"], ["sh", "-c", "echo broken >&2; exit 4"], ["touch", str(after)]],
                  retries=2), "stop")
    assert not report.ok
    assert report.failed_step == "stop 2: sh"
    assert "exit 4" in report.error and "broken" in report.error
    assert not after.exists()


async def test_status_of_command_backend(tmp_path):
    flag = tmp_path / "up"
    s = _services(backend="command", status=["test", "-e", str(flag)])
    assert await svc.status(s) == "stopped"
    flag.touch()
    assert await svc.status(s) == "running"
    assert await svc.status(_services(backend="command")) == "unknown"


def test_markers_honoured_as_wazo_does(tmp_path):
    from wazod.config.sections.ha import HaSection

    ha = HaSection(marker_dir=str(tmp_path))
    assert "is-secondary is missing" in marker_problem(ha, "slave")
    (tmp_path / "is-secondary").touch()
    assert marker_problem(ha, "slave") is None
    (tmp_path / "is-primary").touch()
    assert "is-primary exists too" in marker_problem(ha, "slave")
    assert marker_problem(HaSection(marker_dir=str(tmp_path / "absent")), "slave") is None  # not a Wazo host


def _write_config(tmp_path: Path, ha: dict) -> Path:
    cfg = {"node": {"name": "t", "state_dir": str(tmp_path / "state"), "uuid_file": str(tmp_path / "uuid")},
           "ha": {"ha_conf": str(tmp_path / "ha.conf"), "marker_dir": None, **ha},
           "berofos": {"config": str(tmp_path / "bnfos.conf")}}
    (tmp_path / "bnfos.conf").write_text("")  # no device (a configured path that is missing is an error)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _wazod(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wazod", *argv], capture_output=True, text=True, timeout=60)


def test_config_errors_name_the_problem(tmp_path):
    path = _write_config(tmp_path, {"probes": ["icmp", "tcp"]})
    with pytest.raises(ConfigError, match="probes include tcp but tcp_ports is empty"):
        load_config(path)
    path = _write_config(tmp_path, {"services": {"backend": "command", "start": [[]]}})
    with pytest.raises(ConfigError, match=r"services.start\[0\] must be a non-empty list"):
        load_config(path)
    path = _write_config(tmp_path, {"probe_interval": 0.5, "round_timeout": 2})
    with pytest.raises(ConfigError, match="round_timeout"):
        load_config(path)


def test_services_command_runs_under_the_lock_and_emits(tmp_path):
    flag = tmp_path / "asterisk-up"
    path = _write_config(tmp_path, {"node_type": "slave", "remote_address": "127.0.0.1", "services": {
        "backend": "command", "start": [["touch", str(flag)]], "stop": [["rm", "-f", str(flag)]],
        "status": ["test", "-e", str(flag)]}})
    res = _wazod("services", "start", "--config", str(path))
    assert res.returncode == 0, res.stderr
    assert flag.exists() and "services start: ok" in res.stdout
    berofos_line = next(line for line in res.stdout.splitlines() if line.strip().startswith("berofos"))
    assert "(no berofos configured)" in berofos_line
    assert _wazod("services", "status", "--config", str(path)).returncode == 0
    store = EventStore(tmp_path / "state" / "events.sqlite3")
    try:
        names = [e["name"] for e in store.after(0)]
        assert names == ["ha_takeover_started", "ha_takeover_completed"]
        assert store.after(0)[-1]["data"]["manual"] is True
    finally:
        store.close()
    # a takeover in progress (the daemon holds the services lock): exit 3, nothing done
    lock = OperationLock(tmp_path / "state", "services")
    lock.acquire()
    try:
        res = _wazod("services", "stop", "--config", str(path))
    finally:
        lock.release()
    assert res.returncode == 3 and "services" in res.stderr
    assert flag.exists()
    assert _wazod("services", "stop", "--config", str(path)).returncode == 0
    assert not flag.exists()


def test_check_master_prints_each_probe_and_the_verdict(tmp_path):
    port = free_port()
    standin = subprocess.Popen([sys.executable, "-m", "wazod.lab.sip_standin", "--host", "127.0.0.1",
                                "--port", str(port)], start_new_session=True)
    try:
        path = _write_config(tmp_path, {"node_type": "slave", "remote_address": "127.0.0.1", "sip_port": port})

        def check():
            return _wazod("check-master", "--config", str(path))

        res = check()
        for _ in range(20):  # the stand-in may still be binding
            if res.returncode == 0:
                break
            asyncio.run(asyncio.sleep(0.1))
            res = check()
        assert res.returncode == 0, res.stdout + res.stderr
        assert "icmp" in res.stdout and "sip" in res.stdout and "verdict: UP" in res.stdout
        assert " ms " in res.stdout
    finally:
        standin.terminate()
        standin.wait(10)
    res = _wazod("check-master", "--config", str(path))
    assert res.returncode == 1
    assert "verdict: DOWN (sip_dead)" in res.stdout
    res = _wazod("check-master", "--config", str(_write_config(tmp_path, {"node_type": "slave"})))
    assert res.returncode == 2 and "remote_address" in res.stderr


async def test_tcp_and_peer_probes_against_real_servers():
    from aiohttp import web

    from wazod.ha.probes import peer_probe, tcp_probe

    state = {"status": "ok"}

    async def health(request):  # as wazod's /health: 503 when a check is critical
        return web.json_response({"status": state["status"], "checks": {}},
                                 status=503 if state["status"] == "critical" else 200)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        tcp = await tcp_probe("127.0.0.1", port, timeout=0.5, spacing=0.05)
        assert tcp.ok and tcp.rtt is not None and tcp.probe == f"tcp:{port}"
        peer = await peer_probe(f"http://127.0.0.1:{port}/health", timeout=1.0)
        assert peer.ok and peer.reachable
        state["status"] = "degraded"  # a warning (NTP, a certificate expiring soon): the peer is up
        peer = await peer_probe(f"http://127.0.0.1:{port}/health", timeout=1.0)
        assert peer.ok and peer.reachable and "degraded" in peer.detail
        state["status"] = "critical"
        peer = await peer_probe(f"http://127.0.0.1:{port}/health", timeout=1.0)
        assert not peer.ok and peer.reachable and "503" in peer.detail
    finally:
        await runner.cleanup()
    closed = await tcp_probe("127.0.0.1", port, timeout=0.5, spacing=0.05)
    assert not closed.ok and closed.reachable and closed.detail == "connection refused"
    gone = await peer_probe(f"http://127.0.0.1:{port}/health", timeout=1.0)
    assert not gone.ok and gone.reachable  # refused: the host is there, its wazod is not


async def test_peer_probe_sends_the_token_and_masks_the_url(tmp_path):
    from aiohttp import web

    from wazod.ha.probes import peer_probe, read_token

    async def health(request):
        if request.headers.get("X-Auth-Token") != "t0ken-value":
            return web.Response(status=401)
        return web.json_response({"status": "ok", "checks": {}})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    token_file = tmp_path / "peer-token"
    token_file.write_text("t0ken-value\n")
    try:
        url = f"http://u:hunter2@127.0.0.1:{port}/health"
        denied = await peer_probe(url, timeout=1.0)
        assert not denied.ok and denied.reachable and denied.detail == "HTTP 401"
        assert "hunter2" not in denied.target
        good = await peer_probe(url, timeout=1.0, token=read_token(str(token_file)))
        assert good.ok
    finally:
        await runner.cleanup()


def test_slave_without_witness_or_arbiter_is_warned_in_config_check_and_status(tmp_path):
    """Issue 21.8 / 19: a slave with no witness and no arbiter takes over with no split-brain guard; the
    administrator is told plainly, in ``config check`` (text and JSON) and ``status``."""
    path = _write_config(tmp_path, {"node_type": "slave", "remote_address": "127.0.0.1"})
    res = _wazod("config", "check", "--config", str(path))
    assert res.returncode == 0, res.stderr
    assert "warning: this slave has no witness and no arbiter" in res.stdout
    assert "a cut of the link between the two nodes alone makes both nodes active" in res.stdout
    res = _wazod("config", "check", "--json", "--config", str(path))
    warnings = json.loads(res.stdout)["warnings"]
    assert len(warnings) == 2 and "ha.arbiter" in warnings[0]
    res = _wazod("status", "--config", str(path))
    assert "warning: this slave has no witness and no arbiter" in res.stdout
    # with witnesses: only the link-cut warning remains
    path = _write_config(tmp_path, {"node_type": "slave", "remote_address": "127.0.0.1", "witnesses": ["10.0.0.1"]})
    res = _wazod("status", "--config", str(path))
    assert "no witness" not in res.stdout and "makes both nodes active" in res.stdout
    # a disabled node: nothing to say
    res = _wazod("config", "check", "--config", str(_write_config(tmp_path, {"node_type": "disabled"})))
    assert "warning:" not in res.stdout


def test_etcd_master_with_a_slow_own_services_check_is_warned_only_without_the_sip_probe(tmp_path):
    """The owner's duty: a master with an etcd arbiter probes its own Asterisk by SIP each round and reads its
    services at once when it fails: nothing to say with the shipped probes. Without the sip probe only the
    services check (30 s by default) finds the Asterisk dead: config check says so, not with 2 s."""
    ha = {"node_type": "master", "remote_address": "127.0.0.1", "arbiter": "etcd://127.0.0.1:2379",
          "etcd": {"pair_id": "p1"}}
    res = _wazod("config", "check", "--json", "--config", str(_write_config(tmp_path, ha)))
    assert json.loads(res.stdout)["warnings"] == []
    no_sip = {**ha, "probes": ["icmp"]}
    res = _wazod("config", "check", "--json", "--config", str(_write_config(tmp_path, no_sip)))
    warnings = json.loads(res.stdout)["warnings"]
    assert len(warnings) == 1 and "without the sip probe" in warnings[0] and "every 30 s" in warnings[0]
    res = _wazod("config", "check", "--json", "--config",
                 str(_write_config(tmp_path, {**no_sip, "services_check_interval": 2})))
    assert json.loads(res.stdout)["warnings"] == []


async def test_sip_watcher_counts_a_late_answer_and_judges_silence_after_its_budget(tmp_path):
    """Issue 19.3: an OPTIONS answered 0.6 s late (rounds of 0.2 s, a SIP budget of 3 s) is a live Asterisk: the rounds before the
    answer are pending, not dead; an Asterisk that never answers is dead once the budget has run out."""
    from wazod.ha.probes import SipWatcher, sip_probe

    port = free_port()
    delay = tmp_path / "delay"
    delay.write_text("0.6")
    standin = subprocess.Popen([sys.executable, "-m", "wazod.lab.sip_standin", "--host", "127.0.0.1",
                                "--port", str(port), "--delay-file", str(delay)], start_new_session=True)
    watcher = SipWatcher(port, budget=3.0)
    try:
        for _ in range(50):  # the stand-in is bound (a refused OPTIONS would be a verdict at once)
            if (await sip_probe("127.0.0.1", port, timeout=1.5, spacing=0.1, count=15)).ok:
                break
        seen = []
        for _ in range(15):
            r = await watcher.probe("127.0.0.1", timeout=0.2, spacing=0.05, count=4)
            seen.append("ok" if r.ok else ("pending" if r.pending else "dead"))
        assert "dead" not in seen and "ok" in seen and seen[0] == "pending"
        late = next(r for r in [await watcher.probe("127.0.0.1", timeout=0.7, spacing=0.05, count=4)] if r.ok)
        assert late.rtt is not None and late.rtt >= 0.5
        delay.write_text("30")  # hung: answers nothing any more
        verdicts = []
        while "dead" not in verdicts and len(verdicts) < 60:
            r = await watcher.probe("127.0.0.1", timeout=0.2, spacing=0.05, count=4)
            verdicts.append("ok" if r.ok else ("pending" if r.pending else "dead"))
        assert verdicts[-1] == "dead" and "pending" in verdicts
        assert "no answer to any OPTIONS" in r.detail
    finally:
        watcher.close()
        standin.terminate()
        standin.wait(10)
    # nothing listens: port unreachable is a verdict at once (Asterisk not running), and every round after
    # stays dead although the kernel rate-limits the port unreachables (about one a second per peer)
    watcher = SipWatcher(port, budget=30)
    try:
        r = await watcher.probe("127.0.0.1", timeout=0.3, spacing=0.05, count=4)
        assert not r.ok and not r.pending and r.reachable
        for _ in range(10):
            r = await watcher.probe("127.0.0.1", timeout=0.05, spacing=0.05, count=1)
            assert not r.ok and not r.pending
    finally:
        watcher.close()


def test_own_sip_streak_asks_for_one_services_read_per_dead_streak():
    """The owner's cheap trigger (wazod/ha/selfprobe.py): ``fall`` dead verdicts in a row ask for one read of
    the services; rounds without a verdict (an answer still within the SIP budget) neither extend nor end the
    streak; an answer ends it; nothing is asked while the services are not meant to run here."""
    from wazod.ha.policy import ProbeResult
    from wazod.ha.selfprobe import OwnSipStreak, verdict

    refused = ProbeResult("sip", "a:5060", False, True, detail="port unreachable: nothing listens")
    late = ProbeResult("sip", "a:5060", False, False, pending=True)
    alive = ProbeResult("sip", "a:5060", True, True)
    assert [verdict(r) for r in (refused, late, alive, None)] == [True, None, False, None]
    s = OwnSipStreak(fall=3)
    seen = [s.observe(verdict(r), armed=True) for r in (refused, late, refused, late, refused, refused, refused)]
    assert seen == [False, False, False, False, True, False, False]  # once, at the third dead round
    assert s.observe(False, armed=True) is False
    assert [s.observe(True, armed=True) for _ in range(3)] == [False, False, True]  # a new streak after an answer
    s = OwnSipStreak(fall=2)
    assert [s.observe(True, armed=a) for a in (False, False, True, True)] == [False, False, True, False]
