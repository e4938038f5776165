"""Replication on a database with the shape of a real Wazo one (``wazo_real_schema``), beside the small schema."""

from __future__ import annotations

import asyncpg
import pytest
import wazo_real_schema
from harness import wait_for_async

from wazod.config import Config
from wazod.config.sections.replication import WAZO_EXCLUDED_TABLES
from wazod.replication import run

SLAVE_UUID = "00000000-0000-4000-8000-00000000000b"
CONSTRAINTS = ("SELECT conrelid::regclass::text, conname, oid::bigint, pg_get_constraintdef(oid) FROM pg_constraint "
               "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2")
INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"


@pytest.fixture
def real_dbs(pg_pair):
    master = pg_pair.master.create_database("asterisk")
    slave = pg_pair.slave.create_database("asterisk")
    wazo_real_schema.create_real_shape_database(master, users=400, log_rows=12_000)
    wazo_real_schema.create_real_shape_database(slave, users=10, log_rows=600, node_uuid=SLAVE_UUID)
    return master, slave


pytestmark = pytest.mark.usefixtures("replication_sessions_closed")  # sessions kept between checks


def make_config(tmp_path, master, slave, **replication):
    return Config.model_validate({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "master", "remote_address": "127.0.0.1"},
        "replication": {"source_dsn": master, "target_dsn": slave, **replication},
    })


async def fetch(dsn: str, query: str) -> list[tuple]:
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC"})
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def contents(dsn: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC", "DateStyle": "ISO, YMD"})
    try:
        names = [r[0] for r in await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'r' "
                                                "AND relnamespace = 'public'::regnamespace ORDER BY 1")]
        return {n: [r[0] for r in await conn.fetch(f'SELECT t::text FROM public."{n}" t ORDER BY 1')] for n in names}
    finally:
        await conn.close()


async def test_a_real_shaped_database_is_copied_whole_with_its_keys_trusted_and_then_incrementally(
        tmp_path, real_dbs):
    master, slave = real_dbs
    shape = await wazo_real_schema.ashape(master, list(WAZO_EXCLUDED_TABLES))
    assert (shape["tables"], shape["replicated"], shape["sequences"], shape["enums"]) == (121, 108, 61, 35)
    slave_before = await contents(slave)
    constraints, indexes = await fetch(slave, CONSTRAINTS), await fetch(slave, INDEXES)
    config = make_config(tmp_path, master, slave)

    result = await run(config, cheap_check=True)

    assert result.status == "ok" and result.data["mode"] == "full", result.error
    assert result.data["tables"] == 108
    m, s = await contents(master), await contents(slave)
    for table in m:
        if table in WAZO_EXCLUDED_TABLES:
            assert s[table] == slave_before[table], f"excluded {table} was touched"
        else:
            assert s[table] == m[table], table
    # the foreign keys were never dropped (trusted, as Wazo's replica-role load does): same oids; the
    # indexes of the big tables were rebuilt identical
    assert [c[:2] + c[3:] for c in await fetch(slave, CONSTRAINTS)] == [c[:2] + c[3:] for c in constraints]
    assert {c[1]: c[2] for c in await fetch(slave, CONSTRAINTS) if "FOREIGN KEY" in c[3]} == \
        {c[1]: c[2] for c in constraints if "FOREIGN KEY" in c[3]}
    assert await fetch(slave, INDEXES) == indexes
    orphans = await fetch(slave, "SELECT count(*) FROM tenant t LEFT JOIN endpoint_sip e "
                                 "ON e.uuid = t.global_sip_template_uuid WHERE e.uuid IS NULL "
                                 "AND t.global_sip_template_uuid IS NOT NULL")
    assert orphans == [(0,)]

    # a change in the biggest table and a sequence moved: found by the continuous check, copied alone
    conn = await asyncpg.connect(master)
    try:
        await conn.execute("UPDATE endpoint_sip_section_option SET label = 'changed' WHERE id = 77")
        await conn.execute("SELECT nextval('dialpattern_id_seq')")
    finally:
        await conn.close()

    async def copied():
        r = await run(config, cheap_check=True)
        assert r.status != "failed", r
        return r if r.status == "ok" else None
    incremental = await wait_for_async(copied, timeout=60, interval=0.2)
    assert incremental.data["mode"] == "incremental"
    assert incremental.data["tables_copied"] == ["endpoint_sip_section_option"]
    assert incremental.data["sequences"] == 1
    m, s = await contents(master), await contents(slave)
    assert all(s[t] == m[t] for t in m if t not in WAZO_EXCLUDED_TABLES)
    seq = "SELECT last_value, is_called FROM dialpattern_id_seq"
    assert await fetch(slave, seq) == await fetch(master, seq)
