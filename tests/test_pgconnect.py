"""Connections as the ``postgres`` system user over the local socket (peer authentication), as on Wazo.

A cluster whose ``pg_hba.conf`` starts with ``local all all peer`` (Debian's
rule on a Wazo node): root's plain connection is refused, wazod's connects as
role ``postgres`` without changing the daemon's own credentials.
"""

from __future__ import annotations

import os
import pwd

import asyncpg
import pytest
import wazo_schema

from wazod import pgconnect
from wazod.config import Config
from wazod.config.sections.health import PostgresCheckSection
from wazod.errors import ConfigError
from wazod.health.postgres import check_postgres
from wazod.purge import run as purge
from wazod.replication import run as replicate

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="peer authentication as another user needs root")


@pytest.fixture
def peer_cluster(make_pg_cluster):
    cluster = make_pg_cluster()
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres system user")
    hba = cluster.datadir / "pg_hba.conf"
    hba.write_text("local all all peer\n" + hba.read_text())
    cluster.psql("SELECT pg_reload_conf()")
    return cluster


def socket_dsn(cluster, db: str = "postgres") -> str:
    return f"postgresql:///{db}?host={cluster.sockdir}&port={cluster.port}"


async def test_root_is_refused_and_db_os_user_connects_as_postgres(peer_cluster, tmp_path):
    dsn = socket_dsn(peer_cluster)
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match='role "root"'):
        await asyncpg.connect(dsn, timeout=10)
    conn = await pgconnect.connect(dsn, os_user="postgres", timeout=10)
    try:
        assert await conn.fetchval("SELECT current_user") == "postgres"
        assert await conn.fetchval("SELECT count(*) FROM generate_series(1, 50000)") == 50000
    finally:
        await conn.close()
    # the daemon's own credentials never changed
    assert (os.geteuid(), os.getegid()) == (0, 0)
    probe = tmp_path / "written-after"
    probe.write_text("x")
    assert (probe.stat().st_uid, probe.stat().st_gid) == (0, 0)


async def test_unknown_system_user_is_a_config_error_naming_the_key(peer_cluster):
    with pytest.raises(ConfigError, match=r"replication\.db_os_user: no system user 'nobody-here'"):
        await pgconnect.connect(socket_dsn(peer_cluster), os_user="nobody-here",
                                setting="replication.db_os_user", timeout=10)


async def test_replication_from_the_default_style_dsn_skips_when_nothing_changed(peer_cluster, make_pg_cluster,
                                                                                 tmp_path):
    """``postgresql:///asterisk`` as root: copied, and the change test (superuser functions) works."""
    peer_cluster.create_database("asterisk")
    slave_pg = make_pg_cluster()
    slave = slave_pg.create_database("asterisk")
    wazo_schema.create_wazo_database(peer_cluster.dsn("asterisk"), users=30, log_rows=20)
    wazo_schema.create_wazo_database(slave, users=3, log_rows=5, node_uuid="00000000-0000-4000-8000-00000000000b")

    def config(os_user):
        return Config.model_validate({
            "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
            "ha": {"node_type": "master", "remote_address": "127.0.0.1"},
            "replication": {"source_dsn": socket_dsn(peer_cluster, "asterisk"), "target_dsn": slave,
                            "db_os_user": os_user},
        })

    refused = await replicate(config(None))
    assert refused.status == "failed" and 'role "root" does not exist' in refused.error
    first = await replicate(config("postgres"))
    assert first.status == "ok", first.error
    assert first.data["rows"] > 0
    conn = await asyncpg.connect(slave)
    try:
        assert await conn.fetchval("SELECT count(*) FROM userfeatures") == 30
    finally:
        await conn.close()
    again = await replicate(config("postgres"))
    assert again.status == "skipped", again


async def test_health_check_connects_as_postgres(peer_cluster):
    refused = await check_postgres(PostgresCheckSection(dsn=socket_dsn(peer_cluster), db_os_user=None))
    assert refused.level == "warning" and "root" in refused.summary
    result = await check_postgres(PostgresCheckSection(dsn=socket_dsn(peer_cluster)))
    assert result.level == "ok", result.summary


async def test_purge_from_the_default_style_dsn(peer_cluster, tmp_path):
    """The nightly purge (batched DELETE ... RETURNING through COPY) over a peer-authenticated socket."""
    peer_cluster.create_database("asterisk")
    tcp = peer_cluster.dsn("asterisk")
    wazo_schema.create_wazo_database(tcp, users=2, log_rows=200, days_span=800)
    config = Config.model_validate({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "disabled", "remote_address": "", "ha_conf": str(tmp_path / "ha.conf")},
        "purge": {"dsn": socket_dsn(peer_cluster, "asterisk"), "days_to_keep": 365},
    })
    result = await purge(config)
    assert result.status == "ok", result
    conn = await asyncpg.connect(tcp)
    try:
        old = await conn.fetchval("SELECT count(*) FROM cel WHERE eventtime < now() - interval '366 days'")
        kept = await conn.fetchval("SELECT count(*) FROM cel")
    finally:
        await conn.close()
    assert old == 0 and 0 < kept < 200
    assert result.data["tables"]["cel"]["deleted"] == 200 - kept
