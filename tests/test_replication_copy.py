"""The full copy's streaming, against two real clusters: column types whose binary COPY form carries
cluster-specific type ids, and the master's tables held against TRUNCATE until they are read."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import wazo_schema
from test_replication import (
    MASTER_UUID,
    SLAVE_UUID,
    _HoldingRelay,
    _wait_until_copy_held,
    make_config,
    sql,
    table_rows,
)

from wazod.replication import run

TYPES_SQL = """
CREATE TYPE zz_kind AS ENUM ('aor', 'auth', 'endpoint');
CREATE TYPE zz_pair AS (kind zz_kind, label text);
CREATE DOMAIN zz_port AS integer CHECK (VALUE > 0);
CREATE DOMAIN zz_tags AS text[];
CREATE TABLE zz_typed (
    id serial PRIMARY KEY,
    kind zz_kind,
    kinds zz_kind[],
    pair zz_pair,
    pairs zz_pair[],
    port zz_port,
    tags zz_tags,
    options varchar[][]
);
"""

ROWS_SQL = """
INSERT INTO zz_typed (kind, kinds, pair, pairs, port, tags, options) VALUES
    ('aor', '{aor,endpoint}', ROW('auth', 'a "quoted" label'), ARRAY[ROW('aor', 'x')::zz_pair, NULL],
     5060, '{a,b}', '{{k,v},{k2,NULL}}'),
    (NULL, '{}', NULL, '{}', NULL, NULL, '{}'),
    ('endpoint', '{endpoint,NULL,auth}', ROW(NULL, NULL), ARRAY[ROW('endpoint', '')::zz_pair], 1, '{}', '{{a,b}}');
"""


@pytest.fixture
def dbs(pg_pair):
    master = pg_pair.master.create_database("asterisk")
    slave = pg_pair.slave.create_database("asterisk")
    wazo_schema.create_wazo_database(master, users=20, log_rows=10, node_uuid=MASTER_UUID)
    wazo_schema.create_wazo_database(slave, users=3, log_rows=10, node_uuid=SLAVE_UUID)
    return master, slave


async def _execute(dsn: str, script: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


async def test_enum_arrays_composites_and_domains_copy_across_clusters_with_other_type_oids(tmp_path, dbs):
    """Binary COPY writes an array's element type oid and a composite's column type oids into the data,
    and the slave's types have other oids (created after other objects). wazod sends such tables as
    text; PostgreSQL 15's binary input accepts the other oids too (this test also passes with binary
    forced for every table), so the text path is kept for other server versions. Either way the values
    must arrive identical."""
    master, slave = dbs
    # shift the slave's oids: the same types, created after unrelated ones
    await _execute(slave, "CREATE TYPE zz_unrelated AS ENUM ('x'); CREATE TYPE zz_unrelated2 AS (a int);")
    await _execute(master, TYPES_SQL + ROWS_SQL)
    await _execute(slave, TYPES_SQL + "INSERT INTO zz_typed (kind) VALUES ('auth');")
    oids = "SELECT 'zz_kind'::regtype::oid, 'zz_pair'::regtype::oid"
    assert list((await sql(master, oids))[0]) != list((await sql(slave, oids))[0])

    result = await run(make_config(tmp_path, master, slave), force=True)

    assert result.status == "ok", result.error
    assert await table_rows(slave, "zz_typed") == await table_rows(master, "zz_typed")
    assert len(await table_rows(slave, "zz_typed")) == 3


async def test_a_table_not_yet_read_cannot_be_truncated_on_the_master_mid_copy(tmp_path, dbs, pg_pair):
    """TRUNCATE is not MVCC-safe: a table emptied on the master after the copy's snapshot would be read
    empty. The copy holds ACCESS SHARE locks on every table it reads from its size estimate to its last
    read, so such a TRUNCATE waits, and the slave gets the rows of the snapshot."""
    master, slave = dbs
    # read after userfeatures (name order), where the relay holds the copy; referenced by no table
    await _execute(master, "CREATE TABLE zz_late (id int PRIMARY KEY, v text); "
                           "INSERT INTO zz_late SELECT g, 'v' || g FROM generate_series(1, 50) g;")
    await _execute(slave, "CREATE TABLE zz_late (id int PRIMARY KEY, v text);")
    expected = await table_rows(master, "zz_late")
    async with _HoldingRelay(pg_pair.master.port) as relay:
        task = asyncio.create_task(run(make_config(tmp_path, relay.dsn(master), slave), force=True))
        await _wait_until_copy_held(relay, slave)
        conn = await asyncpg.connect(master)
        try:
            await conn.execute("SET lock_timeout = '300ms'")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await conn.execute("TRUNCATE zz_late")
        finally:
            await conn.close()
        relay.released.set()
        result = await asyncio.wait_for(task, 60)
    assert result.status == "ok", result.error
    assert await table_rows(slave, "zz_late") == expected
