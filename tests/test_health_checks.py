"""Health checks against the real things: file systems, processes, chronyd, certificates, PostgreSQL."""
from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
import uuid
from types import SimpleNamespace

import psutil
import pytest
from harness import pg_bindir, wait_for, wait_for_async
from harness.health import (
    Chronyd,
    NamedProcess,
    events_named,
    make_certificate,
    make_context,
    quiet_health,
    write_config,
)

from wazod.config.sections.health import (
    CertificateCheckSection,
    DiskCheckSection,
    NtpCheckSection,
    PostgresCheckSection,
)
from wazod.health.certificates import check_certificates
from wazod.health.checks import HealthChecks
from wazod.health.disk import check_disk
from wazod.health.ntp import check_ntp, parse_chronyc_tracking, parse_ntpq_peers, parse_timedatectl
from wazod.health.postgres import check_postgres
from wazod.health.processes import check_processes

# --- disk -------------------------------------------------------------------


def test_disk_levels_follow_the_configured_thresholds(tmp_path):
    free = 100.0 * psutil.disk_usage(str(tmp_path)).free / psutil.disk_usage(str(tmp_path)).total
    paths = [str(tmp_path), str(tmp_path / "absent")]
    ok = check_disk(DiskCheckSection(paths=paths, warning_free_percent=0, critical_free_percent=0))
    assert ok.level == "ok" and list(ok.values["paths"]) == [str(tmp_path)]  # the absent path is skipped
    assert ok.values["paths"][str(tmp_path)]["free_percent"] == pytest.approx(free, abs=1)

    warn = check_disk(DiskCheckSection(paths=paths, warning_free_percent=min(100, free + 1), critical_free_percent=0))
    assert warn.level == "warning" and str(tmp_path) in warn.summary

    crit = check_disk(DiskCheckSection(paths=paths, warning_free_percent=100, critical_free_percent=min(100, free + 1)))
    assert crit.level == "critical" and "below" in crit.summary


def test_thresholds_must_be_ordered_and_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="critical_free_percent"):
        DiskCheckSection(warning_free_percent=5, critical_free_percent=10)
    with pytest.raises(ValueError, match="critical_offset"):
        NtpCheckSection(warning_offset=1.0, critical_offset=0.1)
    with pytest.raises(ValueError, match="critical_days"):
        CertificateCheckSection(critical_days=40)
    from wazod.config import load_config
    from wazod.errors import ConfigError

    cfg = write_config(tmp_path, {"health": {"ntp": {"tool": "ntpdate"}, "disk": {"pathz": []}}})
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert str(cfg) in str(err.value) and "health.ntp.tool" in str(err.value) and "health.disk.pathz" in str(err.value)


# --- hysteresis and events, through the daemon component ------------------------


async def _more_runs(checks, name: str, n: int) -> None:
    """Until the check ``name`` has run ``n`` more times (each run stamps ``checked_at``)."""
    for _ in range(n):
        before = checks.trackers[name].checked_at
        await wait_for_async(lambda before=before: checks.trackers[name].checked_at != before, timeout=10,
                             interval=0.01)


async def test_level_changes_emit_one_event_each_with_hysteresis(tmp_path):
    cfg = write_config(tmp_path, {"health": {
        "interval": 0.05, "fall": 3, "rise": 2,
        **quiet_health(disk={"paths": [str(tmp_path)], "warning_free_percent": 0, "critical_free_percent": 0})}})
    ctx = make_context(cfg)
    checks = HealthChecks(ctx)
    assert ctx.registry["health"] is checks
    task = asyncio.create_task(checks.run())
    try:
        await wait_for_async(lambda: checks.trackers["disk"].level == "ok", timeout=10)
        assert ctx.status.get("health")["disk"]["level"] == "ok"
        disk = ctx.config.health.disk
        disk.warning_free_percent = 100
        disk.critical_free_percent = 100  # every run now observes "critical"
        await wait_for_async(lambda: events_named(ctx, "health_degraded"), timeout=10)
        assert checks.trackers["disk"].level == "critical" and checks.overall() == "critical"
        await _more_runs(checks, "disk", 3)  # several more critical runs
        degraded = events_named(ctx, "health_degraded")
        assert len(degraded) == 1, "one event per level change, never one per run"
        assert degraded[0]["data"]["check"] == "disk" and degraded[0]["data"]["previous"] == "ok"
        assert degraded[0]["data"]["level"] == "critical"
        assert degraded[0]["data"]["values"]["paths"][str(tmp_path)]["level"] == "critical"
        assert ctx.status.get("health")["disk"]["level"] == "critical"
        assert ctx.state.read("status")["health"]["disk"]["level"] == "critical"  # saved for `wazod status`

        disk.critical_free_percent = 0
        disk.warning_free_percent = 0
        await wait_for_async(lambda: events_named(ctx, "health_recovered"), timeout=10)
        await _more_runs(checks, "disk", 3)
        recovered = events_named(ctx, "health_recovered")
        assert len(recovered) == 1 and recovered[0]["data"]["level"] == "ok"
        assert recovered[0]["data"]["previous"] == "critical"
    finally:
        ctx.stopping.set()
        await task
        ctx.emitter.store.close()


async def test_flapping_observation_never_reaches_the_reported_level(tmp_path):
    """One bad run between good ones (fall=2) is not reported: no event, level stays ok."""
    cfg = write_config(tmp_path, {"health": {"fall": 2, "rise": 2, **quiet_health(
        disk={"paths": [str(tmp_path)], "warning_free_percent": 0, "critical_free_percent": 0})}})
    ctx = make_context(cfg)
    checks = HealthChecks(ctx)
    disk = ctx.config.health.disk
    for bad in (False, True, False, True, False, True, False):
        disk.warning_free_percent = 100 if bad else 0
        await checks.run_once("disk")
        assert checks.trackers["disk"].level == "ok"
    assert checks.trackers["disk"].last.level == "ok"
    assert events_named(ctx, "health_degraded", "health_recovered") == []
    ctx.emitter.store.close()


async def test_a_restart_does_not_announce_a_known_problem_again(tmp_path):
    cfg = write_config(tmp_path, {"health": {"fall": 1, "rise": 1, **quiet_health(
        disk={"paths": [str(tmp_path)], "warning_free_percent": 100, "critical_free_percent": 0})}})
    ctx = make_context(cfg)
    await HealthChecks(ctx).run_once("disk")
    assert [e["data"]["level"] for e in events_named(ctx, "health_degraded")] == ["warning"]
    ctx.emitter.store.close()

    ctx2 = make_context(cfg)  # the daemon restarted: same state_dir
    checks = HealthChecks(ctx2)
    assert checks.trackers["disk"].level == "warning"
    await checks.run_once("disk")
    assert len(events_named(ctx2, "health_degraded")) == 1
    ctx2.config.health.disk.warning_free_percent = 0
    await checks.run_once("disk")
    assert [e["data"]["level"] for e in events_named(ctx2, "health_recovered")] == ["ok"]
    ctx2.emitter.store.close()


# --- processes --------------------------------------------------------------


def test_processes_on_the_active_and_the_standby_node(tmp_path):
    name = f"wzt-ast-{uuid.uuid4().hex[:5]}"
    proc = NamedProcess(tmp_path, name)
    names = {"names": [name]}
    master = SimpleNamespace(role="master", health=SimpleNamespace(process=SimpleNamespace(**names)))
    slave = SimpleNamespace(role="slave", health=SimpleNamespace(process=SimpleNamespace(
        unexpected_level="warning", **names)))

    missing = check_processes(master, {})
    assert missing.level == "critical" and missing.values["missing"] == [name]
    assert check_processes(slave, {"services": "stopped"}).level == "ok"
    proc.start()
    try:
        wait_for(lambda: check_processes(master, {}).level == "ok", timeout=5)
        running = check_processes(master, {})
        assert running.values["pids"][name] == [proc.proc.pid]
        standby = check_processes(slave, {"services": "stopped"})
        assert standby.level == "warning" and standby.values["unexpected"] == [name]
        assert check_processes(slave, {"services": "running"}).level == "ok"  # the slave took over
    finally:
        proc.stop()
    dead = check_processes(master, {})
    assert dead.level == "critical" and name in dead.summary
    assert check_processes(slave, {"services": "running"}).level == "critical"


def test_process_names_longer_than_comm_are_found(tmp_path):
    name = f"wzt-long-daemon-{uuid.uuid4().hex[:6]}"  # > 15 characters: comm is truncated
    cfg = SimpleNamespace(role="disabled", health=SimpleNamespace(process=SimpleNamespace(names=[name])))
    proc = NamedProcess(tmp_path, name).start()
    try:
        wait_for(lambda: check_processes(cfg, {}).level == "ok", timeout=5)
    finally:
        proc.stop()


# --- NTP ----------------------------------------------------------------------

CHRONYC_UNSYNC = """Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 0.000000000 seconds fast of NTP time
Last offset     : +0.000000000 seconds
RMS offset      : 0.000000000 seconds
Frequency       : 0.000 ppm slow
Residual freq   : +0.000 ppm
Skew            : 0.000 ppm
Root delay      : 1.000000000 seconds
Root dispersion : 1.000000000 seconds
Update interval : 0.0 seconds
Leap status     : Not synchronised
"""

CHRONYC_SLOW = """Reference ID    : C0A80001 (192.168.0.1)
Stratum         : 3
Ref time (UTC)  : Fri Nov 27 10:13:35 2026
System time     : 12.500000000 seconds slow of NTP time
Last offset     : -0.000000036 seconds
Leap status     : Normal
"""

# `ntpq -p` on a Wazo node (ntpd 4.2.8), as the administration guide asks to run it
NTPQ_SYNCED = """     remote           refid      st t when poll reach   delay   offset  jitter
==============================================================================
*192.168.0.1     .GPS.            1 u   34   64  377    0.512   -0.123   0.045
+0.debian.pool.n 193.190.230.65   2 u   12   64  377   12.345    1.234   0.567
 127.127.1.0     .LOCL.          10 l  658   64    0    0.000    0.000   0.000
"""
NTPQ_UNSYNCED = """     remote           refid      st t when poll reach   delay   offset  jitter
==============================================================================
 192.168.0.1     .INIT.          16 u    -   64    0    0.000    0.000   0.000
"""
TIMEDATECTL = """Timezone=Europe/Paris
LocalRTC=no
CanNTP=yes
NTP=yes
NTPSynchronized=yes
TimeUSec=Fri 2026-11-27 11:13:35 CET
RTCTimeUSec=Fri 2026-11-27 11:13:35 CET
"""


def test_ntp_parsers_on_recorded_outputs():
    r = parse_chronyc_tracking(CHRONYC_UNSYNC)
    assert (r.synchronised, r.offset) == (False, 0.0)
    r = parse_chronyc_tracking(CHRONYC_SLOW)
    assert r.synchronised and r.offset == -12.5 and r.source == "192.168.0.1" and r.stratum == 3
    r = parse_ntpq_peers(NTPQ_SYNCED)
    assert r.synchronised and r.source == "192.168.0.1" and r.offset == pytest.approx(-0.000123) and r.stratum == 1
    assert parse_ntpq_peers(NTPQ_UNSYNCED).synchronised is False
    assert parse_timedatectl(TIMEDATECTL).synchronised is True
    assert parse_timedatectl(TIMEDATECTL.replace("NTPSynchronized=yes", "NTPSynchronized=no")).synchronised is False
    with pytest.raises(ValueError, match="Leap status"):
        parse_chronyc_tracking("506 Cannot talk to daemon\n")
    with pytest.raises(ValueError, match="peer table"):
        parse_ntpq_peers("ntpq: read: Connection refused\n")


@pytest.fixture
def chrony_server():
    server = Chronyd(serve=True).start()
    yield server
    server.stop()


async def test_ntp_from_a_real_chronyd_synchronised_then_unsynchronised(tmp_path, chrony_server):
    client = Chronyd(server_port=chrony_server.port).start()
    try:
        section = NtpCheckSection(tool="chronyc", chronyc_host=client.socket,
                                  ntp_conf=str(tmp_path / "ntp.conf"), dhcp_conf=str(tmp_path / "ntp.conf.dhcp"))
        await wait_for_async(lambda: "Normal" in client.tracking() and "127.0.0.1" in client.tracking(), timeout=20)
        result = await check_ntp(section)
        assert result.level == "ok", result.summary
        assert result.values["source"] == "127.0.0.1" and result.values["stratum"] == 9
        assert abs(result.values["offset"]) < 0.5
    finally:
        client.stop()
    # a chronyd whose only server does not answer: running, but not synchronised
    lonely = Chronyd(server_port=9).start()
    try:
        section = NtpCheckSection(tool="chronyc", chronyc_host=lonely.socket,
                                  ntp_conf=str(tmp_path / "ntp.conf"), dhcp_conf=str(tmp_path / "ntp.conf.dhcp"))
        await wait_for_async(lambda: "Leap status" in lonely.tracking(), timeout=10)
        result = await check_ntp(section)
        assert result.level == "warning" and "not synchronised" in result.summary
    finally:
        lonely.stop()
    # no daemon behind the socket any more
    result = await check_ntp(section)
    assert result.level == "warning" and "chronyc could not read" in result.summary


async def test_ntp_dhcp_file_overriding_ntp_conf_is_reported(tmp_path, chrony_server):
    ntp_conf = tmp_path / "ntp.conf"
    dhcp_conf = tmp_path / "ntp.conf.dhcp"
    ntp_conf.write_text("server 192.168.0.1 iburst\nserver 0.debian.pool.ntp.org iburst dynamic\n")
    section = NtpCheckSection(tool="chronyc", chronyc_host=chrony_server.socket,
                              ntp_conf=str(ntp_conf), dhcp_conf=str(dhcp_conf))
    await wait_for_async(lambda: "Normal" in chrony_server.tracking(), timeout=10)
    assert (await check_ntp(section)).level == "ok"
    dhcp_conf.write_text("# written by dhclient\nserver 10.0.0.254\n")
    result = await check_ntp(section)
    assert result.level == "warning"
    assert str(dhcp_conf) in result.summary and str(ntp_conf) in result.summary
    assert result.values["dhcp_override"]["servers"] == ["10.0.0.254"]
    assert result.values["dhcp_override"]["ignored_servers"] == ["192.168.0.1", "0.debian.pool.ntp.org"]
    # DHCP handing out the very servers configured: nothing is overridden
    dhcp_conf.write_text("server 0.debian.pool.ntp.org\nserver 192.168.0.1\n")
    assert (await check_ntp(section)).level == "ok"


async def test_ntp_auto_skips_an_idle_chronyc_for_the_ntpd_that_runs(tmp_path, monkeypatch):
    """chrony installed but not running, ntpd running: auto mode must read ntpd (recorded `ntpq -p`)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "ntpq.out").write_text(NTPQ_SYNCED)
    ntpq = bindir / "ntpq"
    ntpq.write_text(f"#!/bin/sh\nexec cat {tmp_path / 'ntpq.out'}\n")
    ntpq.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    section = NtpCheckSection(chronyc_host=str(tmp_path / "no-chronyd.sock"), dhcp_conf=str(tmp_path / "none"))
    result = await check_ntp(section)
    assert result.level == "ok" and result.values["tool"] == "ntpq" and result.values["source"] == "192.168.0.1"
    ntpq.unlink()
    result = await check_ntp(section)
    assert result.level == "warning" and "chronyc could not read" in result.summary


async def test_ntp_with_a_missing_tool_is_a_clear_warning(tmp_path):
    section = NtpCheckSection(tool="ntpq", dhcp_conf=str(tmp_path / "none"))
    result = await check_ntp(section)
    assert result.level == "warning" and "ntpq" in result.summary


# --- certificates -------------------------------------------------------------


def test_certificate_expiry_and_names(tmp_path):
    host = "pbx1.example.test"
    good = make_certificate(tmp_path / "good.crt", common_name="wrong", san=[host, "pbx1"], days=200)
    soon = make_certificate(tmp_path / "soon.crt", common_name=host, days=5)
    month = make_certificate(tmp_path / "month.crt", common_name=host, days=20)
    other = make_certificate(tmp_path / "other.crt", common_name="pbx9.example.test", days=200)
    wildcard = make_certificate(tmp_path / "wild.crt", common_name="x", san=["*.example.test"], days=200)
    chain = make_certificate(tmp_path / "chain.crt", common_name=host, days=300, chain_days=3)

    def check(*paths, **kw):
        return check_certificates(CertificateCheckSection(files=[str(p) for p in paths], hostname=host, **kw))

    assert check(good).level == "ok"
    assert check(wildcard).level == "ok"
    r = check(soon)
    assert r.level == "critical" and "expires in 5 days" in r.summary
    assert r.values["files"][str(soon)]["days_left"] == pytest.approx(5, abs=0.1)
    assert check(month).level == "warning"
    r = check(other)
    assert r.level == "warning" and "does not name this host" in r.summary
    assert r.values["files"][str(other)]["name_mismatch"]["certificate"] == ["pbx9.example.test"]
    assert check(other, check_hostname=False).level == "ok"
    r = check(chain)
    assert r.level == "critical" and "Intermediate" in r.values["files"][str(chain)]["expiring_subject"]
    r = check(good, soon, other)
    assert r.level == "critical" and str(soon) in r.summary and str(other) in r.summary
    expired = make_certificate(tmp_path / "expired.crt", common_name=host, days=-1)
    assert "expired" in check(expired).summary


def test_certificate_default_hostname_and_bad_files(tmp_path):
    fqdn = socket.getfqdn()
    mine = make_certificate(tmp_path / "mine.crt", common_name=fqdn, days=90)
    assert check_certificates(CertificateCheckSection(files=[str(mine)])).level == "ok"
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    r = check_certificates(CertificateCheckSection(files=[str(tmp_path / "junk.crt"), str(tmp_path / "none.crt")]))
    assert r.level == "warning" and "not a PEM certificate" in r.summary and "missing" in r.summary


# --- PostgreSQL ----------------------------------------------------------------


@pytest.mark.pg
async def test_postgresql_stopped_and_started(pg_cluster):
    section = PostgresCheckSection(dsn=pg_cluster.dsn(), timeout=3.0)
    # the version of the server binary the harness started, whatever PostgreSQL is installed
    binary = subprocess.run([str(pg_bindir() / "postgres"), "--version"], capture_output=True, text=True,
                            check=True).stdout  # "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)"
    installed = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", binary).group(1)
    up = await check_postgres(section)
    assert up.level == "ok" and up.values["in_recovery"] is False and up.values["version"].split()[0] == installed
    pg_cluster.stop()
    down = await check_postgres(section)
    assert down.level == "critical" and "not answering" in down.summary
    pg_cluster.start()
    assert (await check_postgres(section)).level == "ok"


@pytest.mark.pg
async def test_postgresql_refusing_the_check_is_up_and_the_password_never_shown(pg_cluster):
    section = PostgresCheckSection(dsn=f"postgresql://postgres:hunter2@127.0.0.1:{pg_cluster.port}/nosuchdb",
                                   timeout=3.0)
    result = await check_postgres(section)
    assert result.level == "warning" and "refused the check" in result.summary and "nosuchdb" in result.summary
    assert result.values["sqlstate"] == "3D000"
    assert "hunter2" not in repr(result)


async def test_process_check_in_the_daemon_follows_the_slave_state(tmp_path):
    """A standby slave running telephony: 'process' degraded; once the slave is active, all is right."""
    name = f"wzt-agid-{uuid.uuid4().hex[:5]}"
    cfg = write_config(tmp_path, {"ha": {"node_type": "slave"},
                                  "health": {"fall": 2, "rise": 1, **quiet_health(process={"names": [name]})}})
    ctx = make_context(cfg)
    checks = HealthChecks(ctx)
    ctx.status.update(ha_state="standby", services="stopped")
    await checks.run_once("process")
    assert checks.trackers["process"].level == "ok"
    proc = NamedProcess(tmp_path, name).start()
    try:
        wait_for(lambda: psutil.pid_exists(proc.proc.pid))
        await checks.run_once("process")
        await checks.run_once("process")
        [event] = events_named(ctx, "health_degraded")
        assert event["data"]["check"] == "process" and event["data"]["values"]["unexpected"] == [name]
        ctx.status.update(ha_state="active", services="running")  # takeover done: now expected
        await checks.run_once("process")
        [event] = events_named(ctx, "health_recovered")
        assert event["data"]["check"] == "process" and event["data"]["level"] == "ok"
    finally:
        proc.stop()
    await checks.run_once("process")
    await checks.run_once("process")
    assert events_named(ctx, "health_degraded")[-1]["data"]["level"] == "critical"
    ctx.emitter.store.close()


# --- log files (guide section 8) ---------------------------------------------------


def test_logs_large_live_file_and_stale_logrotate(tmp_path):
    from wazod.config.sections.health import LogsCheckSection
    from wazod.health.logs import check_logs

    logdir = tmp_path / "log"
    (logdir / "asterisk").mkdir(parents=True)
    status = tmp_path / "logrotate.status"
    status.write_text("logrotate state -- version 2\n")
    full = logdir / "asterisk" / "full"
    full.write_bytes(b"x" * (3 * 1024 * 1024))
    (logdir / "asterisk" / "full.1").write_bytes(b"x" * (9 * 1024 * 1024))  # rotated: not counted
    (logdir / "wazo-calld.log.2.gz").write_bytes(b"x" * (9 * 1024 * 1024))
    section = LogsCheckSection(paths=[str(logdir), str(logdir / "asterisk")], warning_file_mb=2, critical_file_mb=8,
                               logrotate_status=str(status))
    r = check_logs(section)
    assert r.level == "warning" and str(full) in r.summary and list(r.values["large_files"]) == [str(full)]
    with open(full, "ab") as f:
        f.write(b"x" * (6 * 1024 * 1024))
    assert check_logs(section).level == "critical"
    full.write_bytes(b"rotated\n")
    assert check_logs(section).level == "ok"
    old = time.time() - 72 * 3600
    os.utime(status, (old, old))  # logrotate stopped running three days ago
    r = check_logs(section)
    assert r.level == "warning" and "logrotate has not run for 72 h" in r.summary


async def test_stopping_interrupts_a_hanging_check_and_kills_its_tool(tmp_path, monkeypatch):
    """SIGTERM while an NTP tool hangs: the component returns at once and the tool's process is gone."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pidfile = tmp_path / "tool.pid"
    hang = bindir / "chronyc"
    hang.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 600\n")
    hang.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg = write_config(tmp_path, {"health": quiet_health(ntp={"tool": "chronyc", "timeout": 300,
                                                              "dhcp_conf": str(tmp_path / "none")})})
    ctx = make_context(cfg)
    checks = HealthChecks(ctx)
    task = asyncio.create_task(checks.run())
    try:
        await wait_for_async(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
        pid = int(pidfile.read_text())
        assert psutil.pid_exists(pid)
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                 timeout=10)
        assert checks.trackers["ntp"].last is None  # no half-recorded result
        assert events_named(ctx, "health_degraded") == []
    finally:
        ctx.stopping.set()
        if not task.done():
            task.cancel()
        ctx.emitter.store.close()
