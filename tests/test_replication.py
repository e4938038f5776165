"""Database replication against two real PostgreSQL clusters (harness ``pg_pair``)."""

from __future__ import annotations

import asyncio
import json
import re

import asyncpg
import pytest
import wazo_schema

from wazod.config import Config
from wazod.replication import run

MASTER_UUID = "00000000-0000-4000-8000-00000000000a"
SLAVE_UUID = "00000000-0000-4000-8000-00000000000b"


def make_config(tmp_path, master_dsn, slave_dsn, **replication):
    return Config.model_validate({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "master", "remote_address": "127.0.0.1"},
        "replication": {"source_dsn": master_dsn, "target_dsn": slave_dsn, **replication},
    })


@pytest.fixture
def dbs(pg_pair):
    master = pg_pair.master.create_database("asterisk")
    slave = pg_pair.slave.create_database("asterisk")
    wazo_schema.create_wazo_database(master, users=60, log_rows=50, node_uuid=MASTER_UUID)
    wazo_schema.create_wazo_database(slave, users=7, log_rows=20, node_uuid=SLAVE_UUID)
    # the slave's own rows in every table, so "untouched" and "replaced" are both visible
    return master, slave


async def table_rows(dsn: str, table: str) -> list[str]:
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC", "DateStyle": "ISO, YMD"})
    try:
        return [r[0] for r in await conn.fetch(f'SELECT t::text FROM public."{table}" t ORDER BY 1')]
    finally:
        await conn.close()


async def sql(dsn: str, query: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def sequences(dsn: str) -> dict[str, tuple]:
    names = [r[0] for r in await sql(dsn, "SELECT relname FROM pg_class c JOIN pg_namespace n ON "
                                          "n.oid = c.relnamespace WHERE nspname = 'public' AND relkind = 'S'")]
    out = {}
    for n in names:
        r = (await sql(dsn, f'SELECT last_value, is_called FROM public."{n}"'))[0]
        out[n] = (r[0], r[1])
    return out


async def all_tables(dsn: str) -> list[str]:
    return [r[0] for r in await sql(dsn, "SELECT relname FROM pg_class c JOIN pg_namespace n ON "
                                         "n.oid = c.relnamespace WHERE nspname = 'public' AND relkind = 'r'")]


async def snapshot_db(dsn: str) -> dict[str, list[str]]:
    return {t: await table_rows(dsn, t) for t in sorted(await all_tables(dsn))}


async def test_full_replication_copies_tables_and_sequences_but_not_excluded(tmp_path, dbs):
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    excluded = set(config.replication.exclude_tables)
    slave_before = await snapshot_db(slave)
    slave_seqs_before = await sequences(slave)

    result = await run(config)

    assert result.status == "ok", result.error
    assert result.data["mode"] == "full"
    replicated = [t for t in await all_tables(master) if t not in excluded]
    assert result.data["tables"] == len(replicated)
    assert result.data["rows"] > 60 * 5 and result.data["bytes"] > 0
    for table in replicated:
        assert await table_rows(slave, table) == await table_rows(master, table), table
    for table in excluded & set(slave_before):
        assert await table_rows(slave, table) == slave_before[table], f"excluded {table} was touched"
    # each node keeps its installation UUID
    assert (await sql(slave, "SELECT uuid FROM infos"))[0][0] == SLAVE_UUID
    m_seqs, s_seqs = await sequences(master), await sequences(slave)
    for name, value in m_seqs.items():
        owner = name.removesuffix("_id_seq").removesuffix("_uniqueid_seq")
        if owner in excluded:
            assert s_seqs[name] == slave_seqs_before[name], f"sequence {name} of an excluded table changed"
        else:
            assert s_seqs[name] == value, name
    # the circular keys hold on the slave: the replicated rows are consistent
    orphans = await sql(slave, "SELECT count(*) FROM auth_user u LEFT JOIN auth_tenant t ON t.uuid = u.tenant_uuid "
                               "WHERE t.uuid IS NULL")
    assert orphans[0][0] == 0


async def test_unchanged_run_is_skipped_and_one_row_change_is_copied(tmp_path, dbs):
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    assert (await run(config)).status == "ok"

    skipped = await run(config)
    assert skipped.status == "skipped", skipped
    assert skipped.data["tables"] == 0

    await sql(master, "UPDATE userfeatures SET enablednd = 1 WHERE id = 3")
    result = await run(config)
    assert result.status == "ok", result.error
    assert result.data["mode"] == "incremental"
    # user_line references userfeatures: it comes along, so that one TRUNCATE empties both
    assert result.data["tables_copied"] == ["user_line", "userfeatures"]
    assert await table_rows(slave, "userfeatures") == await table_rows(master, "userfeatures")
    assert (await sql(slave, "SELECT enablednd FROM userfeatures WHERE id = 3"))[0][0] == 1
    assert (await run(config)).status == "skipped"


@pytest.mark.parametrize("change", [
    "DELETE FROM extensions WHERE id = 5",
    "TRUNCATE user_line",
    "INSERT INTO context (name, tenant_uuid) VALUES ('other', '11111111-1111-4111-8111-111111111111')",
    "SELECT nextval('voicemail_uniqueid_seq')",
])
async def test_every_kind_of_master_change_is_replicated(tmp_path, dbs, change):
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    assert (await run(config)).status == "ok"
    await sql(master, change)
    result = await run(config)
    assert result.status == "ok", (change, result)
    for table in ("extensions", "user_line", "context"):
        assert await table_rows(slave, table) == await table_rows(master, table)
    assert (await sequences(slave))["voicemail_uniqueid_seq"] == (await sequences(master))["voicemail_uniqueid_seq"]
    assert (await run(config)).status == "skipped"


async def _run_until_idle_skip(config, timeout: float = 60.0):
    """Run until a run skips on the WAL positions alone (the servers' own housekeeping records, and
    autovacuum, can move them for a while after a copy). Returns that run's result."""
    deadline = asyncio.get_running_loop().time() + timeout
    reasons = []
    while True:
        result = await run(config)
        assert result.status == "skipped", result
        reasons.append(result.data["reason"])
        if reasons[-1].startswith("nothing was written on either database"):
            return result
        assert asyncio.get_running_loop().time() < deadline, reasons


async def _wal_position(dsn: str) -> str:
    return (await sql(dsn, "SELECT pg_current_wal_insert_lsn()::text"))[0][0]


async def test_a_bare_nextval_is_replicated_although_it_writes_no_wal(tmp_path, dbs):
    """nextval() logs 32 values ahead: the calls after the first write no WAL, so the fast "nothing
    was written" path must still compare the sequences, or the slave's stays behind and the first
    insert after a takeover collides with a row the master had."""
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    await sql(master, "SELECT nextval('voicemail_uniqueid_seq')")  # WAL for the next 32 values
    assert (await run(config)).status == "ok"
    record_path = tmp_path / "state" / "replication-record.json"
    for _ in range(10):
        await _run_until_idle_skip(config)
        before = await _wal_position(master)
        await sql(master, "SELECT nextval('voicemail_uniqueid_seq')")
        if await _wal_position(master) == before:  # (a checkpoint in between makes the next call log again)
            break
    else:
        raise AssertionError("every nextval wrote WAL")
    master_value = (await sequences(master))["voicemail_uniqueid_seq"]
    assert (await sequences(slave))["voicemail_uniqueid_seq"] != master_value
    record = json.loads(record_path.read_text())
    # the case under test: both WAL positions are the recorded ones, the fast path is open
    assert [record["master"]["lsn"], record["slave"]["lsn"]] == [await _wal_position(master),
                                                                  await _wal_position(slave)]

    result = await run(config)

    assert result.status == "ok", result
    assert result.data["sequences"] == 1 and result.data["tables"] == 0
    assert (await sequences(slave))["voicemail_uniqueid_seq"] == master_value
    assert (await run(config)).status == "skipped"


async def test_a_change_made_on_the_slave_is_undone(tmp_path, dbs):
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    assert (await run(config)).status == "ok"
    await sql(slave, "UPDATE userfeatures SET destunc = 'changed on the slave' WHERE id = 1")
    result = await run(config)
    assert result.status == "ok" and result.data["tables_copied"] == ["user_line", "userfeatures"]
    assert await table_rows(slave, "userfeatures") == await table_rows(master, "userfeatures")


async def test_force_copies_everything_and_dry_run_writes_nothing(tmp_path, dbs):
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    before = await snapshot_db(slave)
    dry = await run(config, dry_run=True)
    assert dry.status == "ok"
    assert dry.data["would_copy"]["userfeatures"] == 60
    assert dry.data["rows"] == sum(dry.data["would_copy"].values())
    assert await snapshot_db(slave) == before

    assert (await run(config)).status == "ok"
    forced = await run(config, force=True)
    assert forced.status == "ok" and forced.data["mode"] == "full"
    assert forced.data["reason"].startswith("forced")


async def test_schema_mismatch_is_refused_with_nothing_written(tmp_path, dbs):
    master, slave = dbs
    await sql(master, "ALTER TABLE userfeatures ADD COLUMN mobile_fallback_enabled boolean NOT NULL DEFAULT false")
    await sql(slave, "ALTER TABLE linefeatures ALTER COLUMN ipfrom TYPE varchar(39)")
    await sql(slave, "CREATE TABLE only_here (id int)")
    await sql(slave, "UPDATE infos SET wazo_version = '26.07'")
    before = await snapshot_db(slave)

    result = await run(make_config(tmp_path, master, slave))

    assert result.status == "failed"
    err = result.error
    assert "schema mismatch" in err
    assert "infos.wazo_version is '26.08' on the master and '26.07' on the slave" in err
    assert "table userfeatures: column mobile_fallback_enabled (boolean) exists only on the master" in err
    assert "table linefeatures: column ipfrom is character varying(15) on the master and " \
           "character varying(39) on the slave" in err
    assert "table only_here exists only on the slave" in err
    assert await snapshot_db(slave) == before


async def test_excluded_table_referencing_a_replicated_one_is_untouched(tmp_path, dbs):
    master, slave = dbs
    # stat_switchboard_queue references queuefeatures: TRUNCATE would refuse or cascade into it
    config = make_config(tmp_path, master, slave,
                         exclude_tables=wazo_schema_excluded() + ["stat_switchboard_queue"])
    before = await table_rows(slave, "stat_switchboard_queue")
    result = await run(config)
    assert result.status == "ok", result.error
    assert await table_rows(slave, "stat_switchboard_queue") == before
    assert await table_rows(slave, "queuefeatures") == await table_rows(master, "queuefeatures")


def wazo_schema_excluded() -> list[str]:
    from wazod.config.sections.replication import WAZO_EXCLUDED_TABLES
    return list(WAZO_EXCLUDED_TABLES)


HELD_TABLE = "userfeatures"  # copied in name order: the tables before it are loaded when the copy reaches it


class _HoldingRelay:
    """A TCP relay between wazod and the master that holds back the statement copying ``table`` until
    released: the run stops mid-copy at a known point, for as long as the test wants, whatever the
    machine's speed (a lock on the table would stop the run earlier, at its size estimate)."""

    def __init__(self, target_port: int, table: str = HELD_TABLE):
        self.target_port = target_port
        self.pattern = re.compile(rb"COPY [^\x00]*\b" + table.encode() + rb"\b[^\x00]* TO STDOUT")
        self.held = asyncio.Event()
        self.released = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.released.set()
        self.server.close()
        for w in self._writers:
            w.close()
        await self.server.wait_closed()

    async def _relay(self, client_r, client_w):
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_w, server_w]

        async def pipe(src, dst, watch: bool):
            try:
                while data := await src.read(65536):
                    if watch and not self.released.is_set() and self.pattern.search(data):
                        self.held.set()
                        await self.released.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(client_r, server_w, True), pipe(server_r, client_w, False))

    def dsn(self, dsn: str) -> str:
        return re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{self.port}/", dsn)


async def _wait_until_copy_held(relay: _HoldingRelay, slave_dsn: str, table: str = HELD_TABLE,
                                timeout: float = 30.0) -> None:
    """Until the relay holds the master's COPY of ``table`` while the slave's COPY into it is open
    (the slave's transaction has emptied the tables and loaded those before ``table``)."""
    await asyncio.wait_for(relay.held.wait(), timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        loading = await sql(slave_dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                       "'wazod-replication' AND state = 'active' AND query ILIKE $1",
                            f"COPY%{table}%FROM STDIN%")
        if loading[0][0]:
            return
        assert asyncio.get_running_loop().time() < deadline, "the slave never started loading the held table"
        await asyncio.sleep(0.01)


async def test_master_killed_mid_copy_leaves_the_slave_data_intact(tmp_path, dbs, pg_pair):
    master, slave = dbs
    before = await snapshot_db(slave)
    async with _HoldingRelay(pg_pair.master.port) as relay:
        task = asyncio.create_task(run(make_config(tmp_path, relay.dsn(master), slave)))
        await _wait_until_copy_held(relay, slave)
        pg_pair.master.kill()  # SIGKILL of the whole master cluster
        result = await task
    assert result.status == "failed"
    assert "previous data" in result.error
    assert await snapshot_db(slave) == before
    # still consistent and usable: the slave's own users with their lines
    assert (await sql(slave, "SELECT count(*) FROM userfeatures u JOIN user_line ul ON ul.user_id = u.id"))[0][0] == 7
    assert not (tmp_path / "state" / "replication-record.json").exists()


async def test_cancelled_mid_copy_rolls_back(tmp_path, dbs, pg_pair):
    master, slave = dbs
    before = await snapshot_db(slave)
    async with _HoldingRelay(pg_pair.master.port) as relay:
        task = asyncio.create_task(run(make_config(tmp_path, relay.dsn(master), slave)))
        await _wait_until_copy_held(relay, slave)
        task.cancel()  # what SIGTERM of the daemon does to a running job
        with pytest.raises(asyncio.CancelledError):
            await task

    async def slave_idle():
        while (await sql(slave, "SELECT count(*) FROM pg_stat_activity "
                                "WHERE application_name = 'wazod-replication'"))[0][0]:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(slave_idle(), 30)
    assert await snapshot_db(slave) == before
    assert not (tmp_path / "state" / "replication-record.json").exists()


async def test_unreachable_slave_fails_with_a_clear_error(tmp_path, dbs):
    master, _ = dbs
    from harness import free_port
    config = make_config(tmp_path, master, f"postgresql://postgres@127.0.0.1:{free_port()}/asterisk",
                         connect_timeout=3)
    result = await run(config)
    assert result.status == "failed"
    assert "cannot connect to the slave database" in result.error


async def test_target_dsn_uses_remote_address(tmp_path, dbs, pg_pair):
    master, slave = dbs
    config = make_config(tmp_path, master, f"postgresql://postgres@{{remote_address}}:{pg_pair.slave.port}/asterisk")
    result = await run(config)
    assert result.status == "ok", result.error
    record = json.loads((tmp_path / "state" / "replication-record.json").read_text())
    assert record["slave"]["counts"]["userfeatures"] == 60


async def test_activity_on_excluded_tables_does_not_copy_and_idle_runs_skip_at_once(tmp_path, dbs):
    master, slave = dbs
    config = make_config(tmp_path, master, slave)
    assert (await run(config)).status == "ok"
    # calls going on: cel grows on the master, the configuration does not change
    await sql(master, "INSERT INTO cel (eventtype, eventtime) SELECT 'HANGUP', now() FROM generate_series(1, 100)")
    busy = await run(config)
    assert busy.status == "skipped", busy
    assert busy.data["reason"].startswith("no change in the replicated tables")
    # once the servers' own housekeeping records (running xacts, checkpoints) are behind, an idle
    # pair is recognised from the WAL positions alone
    await _run_until_idle_skip(config)
    await sql(master, "UPDATE voicemail SET fullname = 'changed' WHERE uniqueid = 2")
    changed = await run(config)
    assert changed.status == "ok" and changed.data["tables_copied"] == ["user_line", "userfeatures", "voicemail"]


CONSTRAINTS_QUERY = ("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                     "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2")


async def test_indexes_and_constraints_are_rebuilt_identically(tmp_path, dbs):
    master, slave = dbs
    wazo_schema.create_wazo_indexes(master)
    wazo_schema.create_wazo_indexes(slave)
    query = ("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname")
    before = [tuple(r) for r in await sql(slave, query)]
    constraints = [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)]
    assert any(name == "userfeatures__idx__lastname" for name, _ in before)
    result = await run(make_config(tmp_path, master, slave))
    assert result.status == "ok", result.error
    assert [tuple(r) for r in await sql(slave, query)] == before
    assert [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)] == constraints
    # a unique constraint rebuilt after the load still refuses duplicates
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql(slave, "INSERT INTO userfeatures (uuid, tenant_uuid, func_key_private_template_id) "
                         "SELECT uuid, tenant_uuid, 99999 FROM userfeatures WHERE id = 1")
    conn = await asyncpg.connect(slave)
    try:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN SELECT id FROM userfeatures WHERE lastname = 'N42'"))
        assert "userfeatures__idx__lastname" in plan
        assert await conn.fetchval("SELECT id FROM userfeatures WHERE lastname = 'N42'") == 42
    finally:
        await conn.close()
    assert await table_rows(slave, "userfeatures") == await table_rows(master, "userfeatures")


async def test_a_failed_copy_keeps_the_slave_indexes(tmp_path, dbs):
    master, slave = dbs
    wazo_schema.create_wazo_indexes(master)
    wazo_schema.create_wazo_indexes(slave)
    query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname"
    before = [tuple(r) for r in await sql(slave, query)]
    # a duplicate the slave's unique index refuses: the copy fails after the indexes were dropped
    await sql(master, "DROP INDEX auth_user_username_key")
    await sql(master, "INSERT INTO auth_user (username, tenant_uuid, purpose) "
                      "VALUES ('ROOT', '11111111-1111-4111-8111-111111111111', 'user')")
    await sql(slave, "CREATE INDEX extra_plain ON auth_user (firstname)")
    before = [tuple(r) for r in await sql(slave, query)]
    constraints = [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)]
    result = await run(make_config(tmp_path, master, slave))
    assert result.status == "failed"
    assert [tuple(r) for r in await sql(slave, query)] == before
    assert [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)] == constraints


OBJECT_OIDS_QUERY = ("SELECT conname, oid, conindid FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
                     "AND conname = ANY($1::text[]) ORDER BY 1")


async def test_keys_and_their_indexes_are_dropped_for_the_load_and_added_back(tmp_path, dbs):
    """PRIMARY KEY, UNIQUE and foreign keys between reloaded tables are rebuilt (new oids), identical."""
    master, slave = dbs
    names = ["userfeatures_pkey", "userfeatures_uuid_key", "auth_user_pkey", "user_line_user_id_fkey",
             "auth_user_tenant_uuid_fkey", "auth_tenant_contact_uuid_fkey"]
    before = {r[0]: (r[1], r[2]) for r in await sql(slave, OBJECT_OIDS_QUERY, names)}
    constraints = [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)]
    result = await run(make_config(tmp_path, master, slave, check_foreign_keys=True,
                                         rebuild_min_size=0))
    assert result.status == "ok", result.error
    after = {r[0]: (r[1], r[2]) for r in await sql(slave, OBJECT_OIDS_QUERY, names)}
    assert set(after) == set(names)
    assert all(after[n][0] != before[n][0] for n in names), (before, after)  # dropped and added back
    assert [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)] == constraints
    validated = await sql(slave, "SELECT bool_and(convalidated) FROM pg_constraint WHERE contype = 'f' "
                                 "AND connamespace = 'public'::regnamespace")
    assert validated[0][0] is True
    # the keys added back are enforced
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await sql(slave, "INSERT INTO user_line (user_id, line_id) VALUES (987654, 1)")
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql(slave, "INSERT INTO auth_user (uuid, username, tenant_uuid, purpose) "
                         "SELECT uuid, 'again', tenant_uuid, purpose FROM auth_user LIMIT 1")
    assert await table_rows(slave, "user_line") == await table_rows(master, "user_line")


async def test_master_rows_breaking_a_key_are_copied_with_the_keys_in_place(tmp_path, dbs):
    """Wazo's replica-role load accepts rows a foreign key would refuse; so does wazod (second load)."""
    master, slave = dbs
    await sql(master, "ALTER TABLE user_line DROP CONSTRAINT user_line_user_id_fkey")
    await sql(master, "INSERT INTO user_line (user_id, line_id) VALUES (987654, 1)")
    await sql(master, "ALTER TABLE user_line ADD CONSTRAINT user_line_user_id_fkey FOREIGN KEY (user_id) "
                      "REFERENCES userfeatures(id) ON DELETE CASCADE NOT VALID")
    constraints = [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)]
    result = await run(make_config(tmp_path, master, slave, check_foreign_keys=True,
                                         rebuild_min_size=0))
    assert result.status == "ok", result.error
    assert "foreign keys in place" in result.data["note"] and "user_line_user_id_fkey" in result.data["note"]
    assert await table_rows(slave, "user_line") == await table_rows(master, "user_line")
    assert (await sql(slave, "SELECT count(*) FROM user_line WHERE user_id = 987654"))[0][0] == 1
    # the slave's key is untouched (still validated: it was never dropped)
    assert [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)] == constraints
    assert (await run(make_config(tmp_path, master, slave))).status == "skipped"


async def test_partitioned_and_inherited_tables_keep_their_attached_keys(tmp_path, dbs):
    """Keys and indexes a partition inherits cannot be dropped alone: they stay, and the copy works."""
    master, slave = dbs
    ddl = """
    CREATE TABLE wazod_part (id int, k text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
    CREATE TABLE wazod_part_low PARTITION OF wazod_part FOR VALUES FROM (0) TO (1000);
    CREATE TABLE wazod_part_high PARTITION OF wazod_part FOR VALUES FROM (1000) TO (MAXVALUE);
    CREATE INDEX wazod_part_k ON wazod_part (k);
    CREATE TABLE wazod_base (id int PRIMARY KEY, v text);
    CREATE TABLE wazod_child (extra int) INHERITS (wazod_base);
    ALTER TABLE wazod_child ADD PRIMARY KEY (id);
    CREATE TABLE wazod_ref (id int PRIMARY KEY, part_id int REFERENCES wazod_part(id));
    """
    for dsn in (master, slave):
        for statement in filter(str.strip, ddl.split(";")):
            await sql(dsn, statement)
    await sql(master, "INSERT INTO wazod_part SELECT g, 'k' || g FROM generate_series(1, 2000) g")
    await sql(master, "INSERT INTO wazod_child SELECT g, 'v', g FROM generate_series(1, 50) g")
    await sql(master, "INSERT INTO wazod_ref SELECT g, g * 3 FROM generate_series(1, 500) g")
    await sql(slave, "INSERT INTO wazod_part VALUES (7, 'slave')")
    constraints = [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)]
    indexes = [tuple(r) for r in await sql(slave, "SELECT indexname, indexdef FROM pg_indexes "
                                                  "WHERE schemaname = 'public' ORDER BY 1")]
    result = await run(make_config(tmp_path, master, slave))
    assert result.status == "ok", result.error
    for table in ("wazod_part_low", "wazod_part_high", "wazod_child", "wazod_ref"):
        assert await table_rows(slave, table) == await table_rows(master, table), table
    assert [tuple(r) for r in await sql(slave, CONSTRAINTS_QUERY)] == constraints
    assert [tuple(r) for r in await sql(slave, "SELECT indexname, indexdef FROM pg_indexes "
                                               "WHERE schemaname = 'public' ORDER BY 1")] == indexes


async def test_change_test_sees_rows_committed_between_statements(dbs):
    """The slave's transaction reads its snapshot, then its rows, in two statements; a row committed
    in between (by a transaction with a later xid) must count as changed."""
    from wazod.replication.changes import SideState, changed_tables, identity, scan

    _, slave = dbs
    a, b = await asyncpg.connect(slave), await asyncpg.connect(slave)
    try:
        first = await scan(a, ["userfeatures"], None)
        ident = await identity(a)
        recorded = SideState(ident[0], ident[1], first.snapshot, None, dict(first.counts))
        await a.execute("BEGIN")
        await scan(a, [], recorded)
        for _ in range(3):  # later xids than any seen so far
            await b.execute("SELECT pg_current_xact_id()")
        await b.execute("UPDATE userfeatures SET enablednd = 1 - enablednd WHERE id = 2")
        check = await scan(a, ["userfeatures"], recorded)
        assert changed_tables(recorded, check) == {"userfeatures"}
        await a.execute("ROLLBACK")
    finally:
        await a.close()
        await b.close()


async def test_another_slave_database_or_an_old_full_copy_means_a_full_copy(tmp_path, dbs, make_pg_cluster):
    master, slave = dbs
    assert (await run(make_config(tmp_path, master, slave))).status == "ok"
    # the slave was reinstalled: another cluster (the harness copies one initdb, so like a cloned VM it even
    # has the same system identifier and database oid: the replication marker tells them apart)
    other = make_pg_cluster()
    other_dsn = other.create_database("asterisk")
    wazo_schema.create_wazo_database(other_dsn, users=7, log_rows=20, node_uuid=SLAVE_UUID)
    result = await run(make_config(tmp_path, master, other_dsn))
    assert result.status == "ok" and result.data["mode"] == "full"
    assert result.data["reason"].startswith("slave: its replication marker is not the recorded one")
    assert await table_rows(other_dsn, "userfeatures") == await table_rows(master, "userfeatures")
    # the daily full copy
    result = await run(make_config(tmp_path, master, other_dsn, full_copy_interval=0.001))
    assert result.status == "ok" and result.data["mode"] == "full"
    assert "full_copy_interval" in result.data["reason"]


async def test_a_master_login_that_cannot_read_the_system_identifier_gets_full_copies(tmp_path, dbs):
    """Without the privilege to read pg_control_system() the record cannot be tied to the cluster:
    every run is a full copy, said in its reason, and never a failure."""
    master, slave = dbs
    for statement in ("CREATE ROLE wazod_reader LOGIN", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO wazod_reader",
                      "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO wazod_reader",
                      "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC"):  # as some hardened servers
        await sql(master, statement)
    reader = master.replace("postgresql://postgres@", "postgresql://wazod_reader@", 1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await sql(reader, "SELECT system_identifier FROM pg_control_system()")
    config = make_config(tmp_path, reader, slave)
    first = await run(config)
    assert first.status == "ok", first.error
    for _ in range(2):  # nothing changed, yet nothing can be skipped
        result = await run(config)
        assert result.status == "ok", result
        assert result.data["mode"] == "full"
        assert "cannot read the cluster's system identifier" in result.data["reason"]
    assert await table_rows(slave, "userfeatures") == await table_rows(master, "userfeatures")
