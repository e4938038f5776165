"""Tests proving the shared harness fixtures really work.

Each test drives the real process behind a fixture the way wazod tests will
(SQL over TCP, MQTT across a broker restart, rsync over ssh, connectivity
across namespaces), so a broken environment is reported here, once, rather
than as mysterious failures in feature tests.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiomqtt
import asyncpg
import pytest
from harness import NetnsLab, PgCluster, free_port, pg_bindir, wait_for, wait_for_async

# --- PostgreSQL -----------------------------------------------------------

def test_pg_pair_clusters_are_independent(pg_pair):
    m, s = pg_pair.master, pg_pair.slave
    assert m.port != s.port and m.running and s.running
    m.psql("CREATE TABLE only_on_master (id int); INSERT INTO only_on_master VALUES (42)")
    assert m.psql("SELECT id FROM only_on_master").strip() == "42"
    assert s.psql("SELECT to_regclass('only_on_master') IS NULL").strip() == "t"
    assert m.dsn() == f"postgresql://postgres@127.0.0.1:{m.port}/postgres"


async def test_pg_asyncpg_and_create_database(pg_cluster: PgCluster):
    dsn = pg_cluster.create_database("asterisk")
    assert dsn.endswith("/asterisk")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == "asterisk"
        assert await conn.fetchval("SHOW fsync") == "off"
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await conn.close()


def test_pg_kill_then_fresh_start(pg_cluster: PgCluster):
    pg_cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    pg_cluster.kill()
    assert not pg_cluster.running
    with pytest.raises(RuntimeError):
        pg_cluster.psql("SELECT 1")
    pg_cluster.start()  # crash recovery
    assert pg_cluster.psql("SELECT count(*) FROM t").strip() == "1"
    # postmaster-only kill: orphaned backends must not block the restart.
    pg_cluster.kill(postmaster_only=True)
    pg_cluster.start()
    pg_cluster.stop("immediate")
    pg_cluster.start()
    pg_cluster.stop("fast")
    assert not pg_cluster.running


def test_pg_listen_all(make_pg_cluster):
    c = make_pg_cluster(listen_addresses="*")
    assert c.psql("SHOW listen_addresses").strip() == "*"
    hba = (c.datadir / "pg_hba.conf").read_text()
    assert "host all all 0.0.0.0/0 trust" in hba


def test_pg_basebackup_into_empty_cluster(make_pg_cluster):
    """``init=False`` + ``server_cmd`` let tests build a copy of another
    cluster with PostgreSQL's own tools; the copy gets its own port."""
    master = make_pg_cluster()
    master.psql("CREATE TABLE copied (v text); INSERT INTO copied VALUES ('yes')")
    copy = make_pg_cluster(init=False, start=False)
    res = subprocess.run(copy.server_cmd([
        str(pg_bindir() / "pg_basebackup"), "-D", str(copy.datadir), "-h", master.host,
        "-p", str(master.port), "-U", "postgres", "-X", "fetch", "--no-sync"]),
        capture_output=True, text=True, timeout=60, cwd="/")
    assert res.returncode == 0, res.stderr
    copy.start()
    assert copy.port != master.port
    assert copy.psql("SELECT v FROM copied").strip() == "yes"
    copy.psql("CREATE TABLE only_copy (id int)")
    assert master.psql("SELECT to_regclass('only_copy') IS NULL").strip() == "t"


# --- mosquitto --------------------------------------------------------------

async def test_mosquitto_retained_and_queued_survive_restart(mosquitto):
    host, port = mosquitto.host, mosquitto.port
    # A persistent session subscribes, then goes away.
    async with aiomqtt.Client(host, port, identifier="wzt-sub", clean_session=False) as c:
        await c.subscribe("wzt/queued", qos=1)
    async with aiomqtt.Client(host, port, identifier="wzt-pub") as c:
        await c.publish("wzt/retained", b"kept", qos=1, retain=True)
        await c.publish("wzt/queued", b"queued", qos=1)

    mosquitto.restart()
    assert mosquitto.port == port

    async def first_message(client: aiomqtt.Client) -> aiomqtt.Message:
        async with asyncio.timeout(5):
            async for msg in client.messages:
                return msg
        raise AssertionError("no message")  # pragma: no cover

    async with aiomqtt.Client(host, port, identifier="wzt-late") as c:
        await c.subscribe("wzt/retained", qos=1)
        msg = await first_message(c)
        assert (str(msg.topic), msg.payload, msg.retain) == ("wzt/retained", b"kept", True)
    async with aiomqtt.Client(host, port, identifier="wzt-sub", clean_session=False) as c:
        msg = await first_message(c)
        assert (str(msg.topic), msg.payload) == ("wzt/queued", b"queued")


# --- sshd -------------------------------------------------------------------

def test_rsync_over_sshd_and_changed_host_key(sshd, tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    payload = os.urandom(200_000)
    (src / "sub" / "blob.bin").write_bytes(payload)
    (src / "a.txt").write_text("hello wazo\n")
    dst.mkdir()
    argv = ["rsync", "-a", "-e", sshd.rsync_rsh(), f"{src}/", sshd.target(f"{dst}/")]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr + sshd.log_tail()
    assert (dst / "sub" / "blob.bin").read_bytes() == payload
    assert (dst / "a.txt").read_text() == "hello wazo\n"
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    assert sshd.known_hosts_line().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")

    sshd.regenerate_host_key()  # restarts sshd with a new key
    res = subprocess.run(sshd.ssh_argv("true"), capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "HOST IDENTIFICATION HAS CHANGED" in res.stderr
    sshd.write_known_hosts()
    res = subprocess.run(sshd.ssh_argv("true"), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


# --- network namespace lab ----------------------------------------------------

def test_netns_link_cut_and_blackhole(netns_lab: NetnsLab):
    lab = netns_lab
    m, s = lab.master, lab.slave
    assert m.addr.startswith("10.231.") and s.addr.startswith("10.231.")
    assert lab.can_ping("master", s.addr)
    assert lab.exec(m, ["ip", "-4", "-o", "addr"]).stdout.count("10.231.") == 1

    lab.cut_link()
    assert not lab.can_ping("master", s.addr)
    lab.restore_link()
    wait_for(lambda: lab.can_ping("master", s.addr), timeout=10)

    lab.blackhole("master")
    assert not lab.can_ping("slave", m.addr)
    assert lab.can_ping("master", "127.0.0.1")  # loopback still works
    lab.unblackhole("master")
    wait_for(lambda: lab.can_ping("slave", m.addr), timeout=10)

    lab.drop_share("slave", 30)  # the partial form must load too
    assert "numgen random mod 100" in lab.exec("slave", ["nft", "list", "ruleset"]).stdout
    lab.drop_share("slave", 100)
    assert not lab.can_ping("master", s.addr, count=3)
    lab.clear_drop("slave")
    wait_for(lambda: lab.can_ping("master", s.addr), timeout=10)


def test_netns_popen_tracked_and_continuous_ping(netns_lab: NetnsLab, tmp_path: Path):
    """A long-running ping sees replies stop while the link is cut and
    resume after restore; the process is killed at lab teardown."""
    lab = netns_lab
    out = tmp_path / "ping.log"
    with open(out, "wb") as fh:
        proc = lab.popen("master", ["ping", "-n", "-O", "-i", "0.2", lab.slave.addr],
                         stdout=fh, stderr=subprocess.STDOUT)

    def replies() -> int:
        return out.read_text().count("bytes from")

    wait_for(lambda: replies() >= 2, timeout=5)
    lab.cut_link()
    wait_for(lambda: "no answer yet" in out.read_text(), timeout=5)
    before = replies()
    assert not wait_for_nothrow(lambda: replies() > before, timeout=1)
    lab.restore_link()
    wait_for(lambda: replies() > before, timeout=10)
    assert proc.poll() is None


def wait_for_nothrow(pred, timeout):
    try:
        return wait_for(pred, timeout=timeout, interval=0.1)
    except TimeoutError:
        return False


def test_netns_witness(netns_lab_witness: NetnsLab):
    lab = netns_lab_witness
    w = lab.witness
    assert w is not None and w.addr.startswith("10.231.")
    assert lab.can_ping("slave", w.addr)
    assert lab.can_ping("witness", lab.slave.witness_addr)
    lab.cut_witness()
    assert not lab.can_ping("slave", w.addr)
    assert lab.can_ping("slave", lab.master.addr)  # master link unaffected
    lab.restore_witness()
    wait_for(lambda: lab.can_ping("slave", w.addr), timeout=10)


def test_pg_in_namespace(netns_lab: NetnsLab, make_pg_cluster):
    """The HA lab can run a cluster listening on the master's lab address and
    reach it from the slave namespace."""
    lab = netns_lab
    c = make_pg_cluster(listen_addresses=lab.master.addr, netns=lab.master.netns)
    assert c.dsn().startswith(f"postgresql://postgres@{lab.master.addr}:")
    assert c.psql("SELECT 1").strip() == "1"
    res = lab.exec("slave", ["psql", "-X", "-A", "-t", c.dsn(), "-c", "SELECT 2"])
    assert res.stdout.strip() == "2", res.stderr


def test_services_in_namespaces(netns_lab: NetnsLab, make_sshd, make_mosquitto,
                                tmp_path: Path):
    """rsync from the slave host to an sshd on the master host (the copy-back
    path) and MQTT to a broker inside the master namespace; both become
    unreachable when the master is blackholed."""
    lab = netns_lab
    server = make_sshd(listen=lab.master.addr, netns=lab.master.netns)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    argv = ["rsync", "-a", "-e", server.rsync_rsh(), f"{src}/", server.target(f"{dst}/")]
    res = lab.exec("slave", argv)
    assert res.returncode == 0, res.stderr + server.log_tail()
    assert (dst / "f").read_bytes() == b"x" * 5000

    broker = make_mosquitto(host=lab.master.addr, netns=lab.master.netns)
    probe = [sys.executable, "-c", "import socket, sys; "
             "socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)",
             broker.host, str(broker.port)]
    assert lab.exec("slave", probe).returncode == 0
    lab.blackhole("master")
    res = lab.exec("slave", ["timeout", "2", *argv])
    assert res.returncode != 0
    lab.unblackhole("master")


# --- helpers ----------------------------------------------------------------

async def test_helpers():
    assert free_port() != free_port()
    n = {"i": 0}

    def bump():
        n["i"] += 1
        return n["i"] >= 3

    assert wait_for(bump, timeout=2, interval=0.01)

    async def later():
        return "ok"

    assert await wait_for_async(later, timeout=1) == "ok"
    with pytest.raises(TimeoutError):
        await wait_for_async(lambda: False, timeout=0.2, interval=0.05)


def test_a_first_start_moves_off_a_port_taken_meanwhile_a_given_port_does_not(tmp_path):
    """The shared start_moving_port_if_taken: mosquitto and sshd start on a new port if theirs was grabbed."""
    import socket

    from harness.mqtt import Mosquitto

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        broker = Mosquitto()
        try:
            broker.port = port  # as if another process grabbed the port free_port() had picked
            broker._write_conf()
            broker.start()
            assert broker.port != port
            wait_for(lambda: socket.create_connection(("127.0.0.1", broker.port), timeout=1).close() is None,
                     timeout=5)
        finally:
            broker.destroy()
        fixed = Mosquitto(port=port)
        try:
            with pytest.raises(RuntimeError, match="in use"):
                fixed.start()
            assert fixed.port == port
        finally:
            fixed.destroy()
    finally:
        taken.close()


def test_log_tails_are_the_last_lines_of_the_real_logs(pg_cluster, tmp_path):
    """One tail_lines behind every server's log_tail (assertion messages quote them)."""
    from harness.util import tail_lines

    full = pg_cluster.logfile.read_text(errors="replace").splitlines()
    assert full, "postgres wrote nothing to its log"
    assert pg_cluster.log_tail(2).splitlines() == full[-2:]
    assert tail_lines(tmp_path / "missing.log", 5) == ""


def _shm_segment_exists(shmid: int) -> bool:
    listing = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=True).stdout
    return str(shmid) in [line.split()[1] for line in listing.splitlines() if line.startswith("0x")]


def test_a_killed_cluster_leaves_no_shared_memory_segment(make_pg_cluster):
    """SIGKILLed servers whose data directory is then deleted leaked their System V segment: a few
    thousand and no PostgreSQL could start on the machine (SHMMNI reached)."""
    killed, stopped = make_pg_cluster(), make_pg_cluster()
    ids = [killed._shared_memory_id(), stopped._shared_memory_id()]
    assert all(i is not None and _shm_segment_exists(i) for i in ids)
    killed.kill()
    assert _shm_segment_exists(ids[0])  # what a crash leaves behind
    killed.destroy()
    stopped.destroy()  # torn down while running: killed too
    # (freed by the kernel once the last dying backend has detached)
    wait_for(lambda: not any(_shm_segment_exists(i) for i in ids), timeout=10)
