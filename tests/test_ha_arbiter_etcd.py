"""The etcd arbiter (wazod.ha.arbiter_etcd) against real etcd members (Debian's etcd-server).

Every test reads what etcd itself holds (the owner key's value and lease, the
lease's remaining TTL) with etcdctl, besides what the arbiter says.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from harness import kill_process_group, wait_for_async
from harness.util import register_cleanup, unregister_cleanup

from wazod.config import Config
from wazod.errors import ConfigError
from wazod.ha.arbiter import ArbiterView
from wazod.ha.arbiter_etcd import EtcdArbiter, make_etcd_arbiter, parse_etcd_url

TTL = 2          # etcd's smallest lease with its default 1 s election timeout
TIMEOUT = 0.8    # one call's budget (0.4 s in production, 0.8 x probe_interval): room for a loaded CI machine


def _pair() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _arbiter(cluster, identity: str, pair: str, **kw) -> EtcdArbiter:
    peer = "slave" if identity == "master" else "master"
    kw.setdefault("ttl", TTL)
    kw.setdefault("timeout", TIMEOUT)
    return EtcdArbiter(cluster.endpoints, identity, peer, pair, **kw)


def _owner_key(pair: str) -> str:
    return f"/wazod/{pair}/owner"


async def _get(cluster, key: str):
    return await asyncio.to_thread(cluster.get, key)


@pytest.fixture
async def arbiters():
    """Arbiters made by a test; each is closed at teardown (its lease revoked)."""
    made: list[EtcdArbiter] = []

    def add(a: EtcdArbiter) -> EtcdArbiter:
        made.append(a)
        return a

    yield add
    for a in made:
        await a.close()


# --- one member ------------------------------------------------------------------------------------
async def test_claim_when_the_key_is_free(etcd_cluster, arbiters):
    pair = _pair()
    master = arbiters(_arbiter(etcd_cluster, "master", pair))
    slave = arbiters(_arbiter(etcd_cluster, "slave", pair))
    await master.start()
    await slave.start()

    view = await slave.observe()
    # the master's wazod is alive (its member key) but holds no owner key: not serving, not "up" (the owner's duty)
    assert view == ArbiterView(reachable=True, peer_up=False, owner=None)

    assert await master.claim() is True
    kv = await _get(etcd_cluster, _owner_key(pair))
    assert kv == {"value": "master", "lease": master.lease_id}
    assert await asyncio.to_thread(etcd_cluster.lease_ttl, master.lease_id) > 0

    assert await slave.observe() == ArbiterView(reachable=True, peer_up=True, owner="master")
    assert await master.claim() is True  # claiming what one holds is a no-op
    assert (await _get(etcd_cluster, _owner_key(pair)))["lease"] == master.lease_id


async def test_renew_keeps_the_key_and_the_peer_is_refused_while_the_lease_lives(etcd_cluster, arbiters):
    pair = _pair()
    master = arbiters(_arbiter(etcd_cluster, "master", pair))
    slave = arbiters(_arbiter(etcd_cluster, "slave", pair))
    await master.start()
    await slave.start()
    assert await master.claim() is True

    # Rounds every 0.5 s for longer than the TTL: only renewals keep the lease alive that long.
    end = time.monotonic() + TTL + 1.0
    rounds = 0
    while time.monotonic() < end:
        assert await master.renew() is True
        assert await slave.claim() is False
        rounds += 1
        await asyncio.sleep(0.5)
    assert rounds >= 5
    kv = await _get(etcd_cluster, _owner_key(pair))
    assert kv == {"value": "master", "lease": master.lease_id}
    assert await asyncio.to_thread(etcd_cluster.lease_ttl, master.lease_id) > 0


async def test_the_peer_claims_once_the_owner_stops_renewing(etcd_cluster, arbiters):
    pair = _pair()
    master = arbiters(_arbiter(etcd_cluster, "master", pair))
    slave = arbiters(_arbiter(etcd_cluster, "slave", pair))
    await master.start()
    await slave.start()
    assert await master.claim() is True
    assert await master.renew() is True
    last_renewal = time.monotonic()
    old_lease = master.lease_id

    # The master's wazod is silent from now on (no renew, no observe): the slave keeps trying.
    async def slave_obtains() -> bool:
        await slave.observe()  # the slave's own session stays alive meanwhile
        return await slave.claim()

    await wait_for_async(slave_obtains, timeout=TTL + 4, interval=0.25)
    # etcd deletes an expired lease's keys on its next expiry check (every 0.5 s), after the TTL.
    assert time.monotonic() - last_renewal <= TTL + 2.5
    kv = await _get(etcd_cluster, _owner_key(pair))
    assert kv == {"value": "slave", "lease": slave.lease_id}
    assert await asyncio.to_thread(etcd_cluster.lease_ttl, old_lease) == -1

    # The master learns it lost the key, and sees its peer as the owner.
    assert await master.renew() is False
    assert await master.observe() == ArbiterView(reachable=True, peer_up=True, owner="slave")
    assert await master.claim() is False


async def test_renew_is_false_once_the_lease_is_revoked(etcd_cluster, arbiters):
    pair = _pair()
    master = arbiters(_arbiter(etcd_cluster, "master", pair))
    slave = arbiters(_arbiter(etcd_cluster, "slave", pair))
    await master.start()
    await slave.start()
    assert await master.claim() is True
    lease = master.lease_id

    await asyncio.to_thread(etcd_cluster.etcdctl, "lease", "revoke", format(lease, "x"))
    assert await _get(etcd_cluster, _owner_key(pair)) is None

    assert await master.renew() is False
    assert await master.renew() is False  # stays lost until claimed again
    assert await slave.claim() is True
    assert await _get(etcd_cluster, _owner_key(pair)) == {"value": "slave", "lease": slave.lease_id}
    # The master's next round opens a new session (member key back) but does not take the key.
    view = await master.observe()
    assert view == ArbiterView(reachable=True, peer_up=True, owner="slave")
    assert master.lease_id not in (None, lease)
    assert (await _get(etcd_cluster, f"/wazod/{pair}/members/master"))["lease"] == master.lease_id


async def test_release_frees_the_key(etcd_cluster, arbiters):
    pair = _pair()
    master = arbiters(_arbiter(etcd_cluster, "master", pair))
    slave = arbiters(_arbiter(etcd_cluster, "slave", pair))
    await master.start()
    await slave.start()
    assert await slave.claim() is True  # e.g. after a takeover
    await slave.release()                # failback
    assert await _get(etcd_cluster, _owner_key(pair)) is None
    # The slave's session stays (its member key), but it no longer owns: "up" is serving, so not up.
    assert await master.observe() == ArbiterView(reachable=True, peer_up=False, owner=None)
    assert (await _get(etcd_cluster, f"/wazod/{pair}/members/slave"))["lease"] == slave.lease_id
    assert await slave.renew() is False
    assert await master.claim() is True
    await slave.release()  # not the owner: leaves the master's key alone
    assert await _get(etcd_cluster, _owner_key(pair)) == {"value": "master", "lease": master.lease_id}


async def test_a_restarted_owner_takes_its_key_back_under_its_new_lease(etcd_cluster, arbiters):
    pair = _pair()
    first = _arbiter(etcd_cluster, "master", pair)
    await first.start()
    assert await first.claim() is True
    old_lease = first.lease_id
    # wazod restarts: a new process, the old lease still alive on the server.
    for client in first._clients:
        if client is not None:
            await client.close()
    second = arbiters(_arbiter(etcd_cluster, "master", pair))
    await second.start()
    assert await second.claim() is True
    assert await _get(etcd_cluster, _owner_key(pair)) == {"value": "master", "lease": second.lease_id}
    assert second.lease_id != old_lease


async def test_a_sigkilled_client_lease_expires(etcd_cluster, arbiters, tmp_path):
    pair = _pair()
    script = tmp_path / "holder.py"
    script.write_text(
        "import asyncio, sys\n"
        "from wazod.ha.arbiter_etcd import EtcdArbiter\n"
        "async def main():\n"
        f"    a = EtcdArbiter({etcd_cluster.endpoints!r}, 'master', 'slave', {pair!r}, {TTL}, {TIMEOUT})\n"
        "    await a.start()\n"
        "    assert await a.claim()\n"
        "    print('LEASE', a.lease_id, flush=True)\n"
        "    while True:\n"
        "        await a.renew()\n"
        "        await asyncio.sleep(0.3)\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    token = register_cleanup(lambda: kill_process_group(proc))
    try:
        async def lease_line() -> str:
            while True:
                line = await asyncio.to_thread(proc.stdout.readline)
                if not line or line.startswith("LEASE "):
                    return line

        line = await asyncio.wait_for(lease_line(), 30)
        lease = int(line.split()[1])
        assert await _get(etcd_cluster, _owner_key(pair)) == {"value": "master", "lease": lease}
        slave = arbiters(_arbiter(etcd_cluster, "slave", pair))
        await slave.start()
        assert await slave.claim() is False
        kill_process_group(proc)  # SIGKILL: no release, no revoke
        assert proc.returncode == -9

        async def key_gone() -> bool:
            return await _get(etcd_cluster, _owner_key(pair)) is None

        await wait_for_async(key_gone, timeout=TTL + 4, interval=0.2)
        assert await asyncio.to_thread(etcd_cluster.lease_ttl, lease) == -1
        assert await slave.claim() is True
        assert await _get(etcd_cluster, _owner_key(pair)) == {"value": "slave", "lease": slave.lease_id}
    finally:
        kill_process_group(proc)
        unregister_cleanup(token)


async def test_etcd_authentication_with_a_password_file(make_etcd_cluster, arbiters, tmp_path):
    cluster = make_etcd_cluster(1, extra_args=["--auth-token-ttl", "1"])  # tokens expire after 1 s idle
    ctl = cluster.etcdctl
    ctl("user", "add", "root:rootpw")
    ctl("role", "add", "wazod")
    ctl("role", "grant-permission", "wazod", "--prefix=true", "readwrite", "/wazod/")
    ctl("user", "add", "wazod:s3cret")
    ctl("user", "grant-role", "wazod", "wazod")
    ctl("auth", "enable")
    pair = _pair()
    pw = tmp_path / "etcd-password"
    pw.write_text("s3cret\n")
    config = Config.model_validate({"ha": {"node_type": "master", "remote_address": "192.0.2.2", "etcd": {
        "pair_id": pair, "ttl": 5, "timeout": 0.8, "username": "wazod", "password_file": str(pw)}}})
    master = arbiters(make_etcd_arbiter(config, url=cluster.url))
    await master.start()
    assert await master.claim() is True
    out = json.loads(ctl("--user=root:rootpw", "get", _owner_key(pair), "-w", "json").stdout)
    assert [kv["lease"] for kv in out["kvs"]] == [master.lease_id]

    # The token expired meanwhile: the very next round authenticates again and answers.
    await asyncio.sleep(2.5)  # etcd's token TTL (1 s) must pass idle: nothing to wait on but time
    assert await master.observe() == ArbiterView(reachable=True, peer_up=False, owner="master")
    assert await master.renew() is True

    wrong = arbiters(EtcdArbiter(cluster.endpoints, "slave", "master", pair, 2, 0.8,
                                 username="wazod", password="nope"))
    await wrong.start()
    assert await wrong.observe() == ArbiterView(reachable=False, peer_up=None, owner=None)
    assert await wrong.claim() is False
    assert "nope" not in repr(wrong) and "s3cret" not in repr(master)


async def test_two_nodes_with_the_same_identity_in_a_pair_are_reported(etcd_cluster, arbiters):
    pair = _pair()
    one = arbiters(_arbiter(etcd_cluster, "master", pair, node_name="pbx1"))
    two = arbiters(_arbiter(etcd_cluster, "master", pair, node_name="pbx9"))  # wrong node_type or pair_id
    await one.start()
    await one.observe()
    await two.start()   # overwrites pbx1's member key
    await one.observe()
    assert one.conflict == "pbx9"
    member = await _get(etcd_cluster, f"/wazod/{pair}/members/master")
    assert member == {"value": "pbx1", "lease": one.lease_id}  # healed by pbx1's round


async def test_tls_with_a_client_certificate(make_etcd_cluster, arbiters, tmp_path):
    from harness.bus import make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    cluster = make_etcd_cluster(1, tls=tls)
    assert cluster.url.startswith("etcd://127.0.0.1:")
    pair = _pair()
    config = Config.model_validate({"ha": {"node_type": "slave", "remote_address": "192.0.2.1", "etcd": {
        "pair_id": pair, "ttl": 2, "timeout": 0.8, "ca_file": str(tls["ca"]), "cert_file": str(tls["client"]),
        "key_file": str(tls["client_key"])}}})
    slave = arbiters(make_etcd_arbiter(config, url=cluster.url))
    await slave.start()
    assert await slave.claim() is True
    assert await _get(cluster, _owner_key(pair)) == {"value": "slave", "lease": slave.lease_id}
    # Plaintext against a TLS member: no answer, no exception.
    plain = arbiters(_arbiter(cluster, "master", pair))
    assert await plain.observe() == ArbiterView(reachable=False, peer_up=None, owner=None)


# --- three members ---------------------------------------------------------------------------------
async def test_one_member_of_three_killed_nothing_moves(etcd_cluster3, arbiters):
    cluster = etcd_cluster3
    pair = _pair()
    master = arbiters(_arbiter(cluster, "master", pair))
    slave = arbiters(_arbiter(cluster, "slave", pair))
    await master.start()
    await slave.start()
    assert await master.claim() is True
    # Kill a follower, one both clients were talking to (their preferred endpoint) when possible.
    leader = await asyncio.to_thread(cluster.leader_index)
    victim = master._preferred if master._preferred != leader else (leader + 1) % 3
    cluster.kill(victim)

    for _ in range(6):
        assert await slave.observe() == ArbiterView(reachable=True, peer_up=True, owner="master")
        assert await master.observe() == ArbiterView(reachable=True, peer_up=False, owner="master")
        assert await master.renew() is True
        assert await slave.claim() is False
        await asyncio.sleep(0.5)
    assert await _get(cluster, _owner_key(pair)) == {"value": "master", "lease": master.lease_id}


async def test_the_leader_killed_the_lease_survives_the_election(etcd_cluster3, arbiters):
    cluster = etcd_cluster3
    pair = _pair()
    master = arbiters(_arbiter(cluster, "master", pair, ttl=4, fence_margin=0.9))
    slave = arbiters(_arbiter(cluster, "slave", pair, ttl=4, fence_margin=0.9))
    await master.start()
    await slave.start()
    assert await master.claim() is True
    lease = master.lease_id
    cluster.kill(await asyncio.to_thread(cluster.leader_index))

    # The election takes about 1.5 s (no answer meanwhile); the new leader extends every lease.
    views = []
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        views.append(await master.observe())
        assert await master.renew() is True
        assert await slave.claim() is False
        await asyncio.sleep(0.5)
    assert views[-1] == ArbiterView(reachable=True, peer_up=False, owner="master")  # the master looks at itself
    assert all(v.owner in ("master", None) for v in views)
    assert await _get(cluster, _owner_key(pair)) == {"value": "master", "lease": lease}


async def test_two_members_of_three_killed_unreachable_bounded_then_fenced(etcd_cluster3, arbiters):
    cluster = etcd_cluster3
    pair = _pair()
    master = arbiters(_arbiter(cluster, "master", pair, ttl=3))
    await master.start()
    assert await master.claim() is True
    survivor = await asyncio.to_thread(cluster.leader_index)
    for i in range(3):
        if i != survivor:
            cluster.kill(i)

    # Each look is bounded (no hang) and says the quorum is gone.
    for _ in range(3):
        view = await asyncio.wait_for(master.observe(), TIMEOUT * 3)
        assert view == ArbiterView(reachable=False, peer_up=None, owner=None)

    # The owner cannot prove its lease any more: renew turns False before the TTL ran out.
    async def lost() -> bool:
        return not await asyncio.wait_for(master.renew(), TIMEOUT * 3)

    await wait_for_async(lost, timeout=3 + 2, interval=0.5)
    assert master.owns is False
    assert await master.release() is False  # no quorum: not released, and said so (the HA loop retries)

    # Quorum back: the lease survived (no leader, no expiry), the master gets its key back.
    other = (survivor + 1) % 3
    await asyncio.to_thread(cluster.start_member, other)

    async def reachable() -> bool:
        return (await master.observe()).reachable

    await wait_for_async(reachable, timeout=15, interval=0.3)
    assert await master.claim() is True
    kv = await _get(cluster, _owner_key(pair))
    assert kv == {"value": "master", "lease": master.lease_id}
    assert await master.release() is True
    assert await _get(cluster, _owner_key(pair)) is None


# --- configuration -----------------------------------------------------------------------------------
def test_parse_etcd_url():
    assert parse_etcd_url("etcd://10.0.0.1:2379") == [("10.0.0.1", 2379)]
    assert parse_etcd_url("etcd://a.example:2379,b.example:2380,[::1]:2381,c") == [
        ("a.example", 2379), ("b.example", 2380), ("::1", 2381), ("c", 2379)]
    for bad, fragment in [
        ("http://h:2379", "not an etcd URL"), ("etcd://", "names no etcd endpoint"),
        ("etcd://h:99999", "not a TCP port"), ("etcd://h:x", "not a TCP port"),
        ("etcd://user:pw@h:2379", "only HOST:PORT"), ("etcd://h:2379,h:2379", "appears twice"),
        ("etcd://h_$:1", "not a host name"), ("etcd://h:1,,", "not HOST:PORT"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_etcd_url(bad)
        assert str(err.value).startswith("ha.arbiter: ") and fragment in str(err.value), str(err.value)
        if "pw" in bad:
            assert "pw@" in bad  # the URL is echoed: credentials are refused, never accepted silently


def test_make_etcd_arbiter_from_the_configuration(tmp_path):
    def config(**etcd):
        return Config.model_validate({"ha": {"node_type": "slave", "remote_address": "192.0.2.1",
                                             "probe_interval": 0.5, "etcd": etcd}})

    with pytest.raises(ConfigError, match=r"^ha\.etcd\.pair_id: required"):
        make_etcd_arbiter(config(), url="etcd://127.0.0.1:2379")
    with pytest.raises(ConfigError, match=r"^ha\.etcd\.ttl: 2 s must exceed"):
        make_etcd_arbiter(config(pair_id="p", ttl=2, timeout=1.6), url="etcd://127.0.0.1:2379")
    with pytest.raises(ConfigError, match=r"^ha\.etcd\.password_file: required"):
        make_etcd_arbiter(config(pair_id="p", username="u"), url="etcd://127.0.0.1:2379")
    with pytest.raises(ConfigError, match=r"^ha\.etcd\.password_file: .*No such file"):
        make_etcd_arbiter(config(pair_id="p", username="u", password_file=str(tmp_path / "x")),
                          url="etcd://127.0.0.1:2379")
    with pytest.raises(ConfigError, match=r"^ha\.arbiter: "):
        make_etcd_arbiter(config(pair_id="p"), url="etcd://")
    with pytest.raises(ConfigError, match=r"^ha\.etcd\.ca_file: .*No such file"):
        make_etcd_arbiter(config(pair_id="p", ca_file=str(tmp_path / "ca.pem")), url="etcd://127.0.0.1:2379")
    (tmp_path / "junk").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^ha\.etcd\.ca_file: .* is not a PEM file"):
        make_etcd_arbiter(config(pair_id="p", ca_file=str(tmp_path / "junk")), url="etcd://127.0.0.1:2379")
    with pytest.raises(ConfigError, match=r"^ha\.etcd\.ca_file: required"):
        make_etcd_arbiter(config(pair_id="p", cert_file="/x", key_file="/y"), url="etcd://127.0.0.1:2379")
    with pytest.raises(Exception, match="pair_id"):
        config(pair_id="../other")
    a = make_etcd_arbiter(config(pair_id="paris-1"), url="etcd://127.0.0.1:2379,127.0.0.2:2379")
    assert (a.identity, a.peer_identity, a.ttl) == ("slave", "master", 2)  # the shipped ttl: takeover within 3 s
    assert a.owner_key == b"/wazod/paris-1/owner"
    assert a.timeout == pytest.approx(0.4) and a.fence_margin == pytest.approx(0.9)
    assert a.endpoints == [("127.0.0.1", 2379), ("127.0.0.2", 2379)]
