"""Continuous replication (the master daemon's part) against a real PostgreSQL pair."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
import wazo_schema
from harness import wait_for_async

from wazod.config import Config, LoadedConfig
from wazod.context import Context
from wazod.events import open_emitter
from wazod.locks import OperationLock
from wazod.replication.continuous import ContinuousReplication
from wazod.state import StateStore
from wazod.statusboard import StatusBoard

MASTER_UUID = "00000000-0000-4000-8000-00000000000a"
SLAVE_UUID = "00000000-0000-4000-8000-00000000000b"


@pytest.fixture
def dbs(pg_pair):
    master = pg_pair.master.create_database("asterisk")
    slave = pg_pair.slave.create_database("asterisk")
    wazo_schema.create_wazo_database(master, users=40, log_rows=50, node_uuid=MASTER_UUID)
    wazo_schema.create_wazo_database(slave, users=7, log_rows=20, node_uuid=SLAVE_UUID)
    return master, slave


pytestmark = pytest.mark.usefixtures("replication_sessions_closed")  # sessions kept between checks


def make_ctx(tmp_path, master, slave, **replication) -> Context:
    config = Config.model_validate({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state"), "uuid_file": str(tmp_path / "none")},
        "ha": {"node_type": "master", "remote_address": "127.0.0.1"},
        "replication": {"source_dsn": master, "target_dsn": slave, "check_interval": 0.5, **replication},
    })
    loaded = LoadedConfig(config, Path(tmp_path / "config.yml"))
    state = StateStore(config.node.state_dir)
    return Context(loaded, open_emitter(config), state, StatusBoard(state, "pbx1", "master"))


async def sql(dsn: str, query: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        if ";" in query and not args:
            return await conn.execute(query)
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def rows(dsn: str, table: str) -> list[str]:
    return [r[0] for r in await sql(dsn, f"SELECT t::text FROM public.{table} t ORDER BY 1")]


async def snapshot(dsn: str) -> dict[str, list[str]]:
    tables = [r[0] for r in await sql(dsn, "SELECT relname FROM pg_class WHERE relkind = 'r' "
                                           "AND relnamespace = 'public'::regnamespace ORDER BY 1")]
    return {t: await rows(dsn, t) for t in tables}


def replication_events(ctx) -> list[dict]:
    return [e for e in ctx.emitter.store.after(0) if e["name"].startswith("replication_")]


class Running:
    """The part running in this event loop, as the supervisor runs it; stopped like SIGTERM does."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.part = ContinuousReplication(ctx)
        self.task = asyncio.create_task(self.part.run())

    async def stop(self, timeout: float = 10.0) -> None:
        self.ctx.stopping.set()
        await asyncio.wait_for(self.task, timeout)


@pytest.fixture
async def running():
    made: list[Running] = []

    def start(ctx) -> Running:
        made.append(Running(ctx))
        return made[-1]

    yield start
    for r in made:
        if not r.task.done():
            await r.stop()
        r.ctx.emitter.store.close()


async def test_a_master_change_reaches_the_slave_without_a_run_and_idle_checks_copy_nothing(tmp_path, dbs, running):
    master, slave = dbs
    ctx = make_ctx(tmp_path, master, slave)
    r = running(ctx)
    # the first check finds no record: full copy
    await wait_for_async(lambda: r.part.copies == 1, timeout=60)
    assert await rows(slave, "userfeatures") == await rows(master, "userfeatures")
    first = replication_events(ctx)
    assert [e["name"] for e in first] == ["replication_completed"]
    assert first[0]["data"]["trigger"] == "continuous" and first[0]["data"]["mode"] == "full"

    await sql(master, "UPDATE userfeatures SET firstname = 'Changed' WHERE id = 5")

    async def copied():
        return (await sql(slave, "SELECT firstname FROM userfeatures WHERE id = 5"))[0][0] == "Changed"
    await wait_for_async(copied, timeout=60)
    await wait_for_async(lambda: r.part.copies == 2, timeout=30)
    events = replication_events(ctx)
    assert [e["name"] for e in events] == ["replication_completed"] * 2
    change = events[1]["data"]
    assert change["mode"] == "incremental" and change["tables_copied"] == ["user_line", "userfeatures"]
    # lag_s: from the last check that saw the slave equal to the master to the slave's commit
    assert isinstance(change["lag_s"], float) and 0 < change["lag_s"] < 600

    # nothing changes: the checks go on, nothing is copied, recorded or emitted
    checks = r.part.checks
    await wait_for_async(lambda: r.part.checks >= checks + 4, timeout=60)
    assert r.part.copies == 2
    assert len(replication_events(ctx)) == 2
    await r.stop()
    assert await rows(slave, "userfeatures") == await rows(master, "userfeatures")


async def test_maintenance_and_a_held_lock_hold_the_checks(tmp_path, dbs, running):
    master, slave = dbs
    ctx = make_ctx(tmp_path, master, slave)
    r = running(ctx)
    await wait_for_async(lambda: r.part.copies == 1, timeout=60)

    in_maintenance = True
    ctx.registry["maintenance_holds"] = lambda job: in_maintenance and job in ("replication", "sync")
    await sql(master, "DELETE FROM extensions WHERE id = 3")
    held = r.part.held
    await wait_for_async(lambda: r.part.held >= held + 3, timeout=30)
    assert len(await rows(slave, "extensions")) == len(await rows(master, "extensions")) + 1

    # a manual or scheduled run holding the lock: the checks step aside
    lock = OperationLock(ctx.config.node.state_dir, "replication")
    lock.acquire()
    try:
        in_maintenance = False
        busy = r.part.busy
        await wait_for_async(lambda: r.part.busy >= busy + 3, timeout=30)
        assert len(await rows(slave, "extensions")) == len(await rows(master, "extensions")) + 1
    finally:
        lock.release()
    await wait_for_async(lambda: r.part.copies == 2, timeout=60)
    assert await rows(slave, "extensions") == await rows(master, "extensions")


HOLD_SQL = """
CREATE FUNCTION wazod_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); RETURN NEW; END $$;
CREATE TRIGGER wazod_test_hold BEFORE INSERT ON userfeatures FOR EACH ROW EXECUTE FUNCTION wazod_test_hold();
ALTER TABLE userfeatures ENABLE ALWAYS TRIGGER wazod_test_hold;
"""


async def _copy_held_on_the_slave(slave: str) -> bool:
    """The continuous copy is inside the slave's transaction, user_line loaded, waiting in userfeatures."""
    found = await sql(slave, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wazod-replication' "
                             "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")
    return found[0][0] == 1


@pytest.mark.parametrize("how", ["master killed", "daemon stopped"])
async def test_a_copy_in_flight_when_the_master_dies_or_the_daemon_stops_leaves_the_slave_consistent(
        tmp_path, dbs, pg_pair, running, how):
    """SIGTERM mid-copy: the slave keeps its last consistent state. Master killed mid-copy: the slave keeps
    it too, unless every row had already been read from the master, in which case the copy completes with
    the master's last data; never anything in between (the whole-transaction rule)."""
    master, slave = dbs
    ctx = make_ctx(tmp_path, master, slave)
    r = running(ctx)
    await wait_for_async(lambda: r.part.copies == 1, timeout=60)
    consistent = await snapshot(slave)  # the slave's last consistent state: the master's data
    # hold the next copy at a known point by construction: a slave-side trigger (fires in replica role
    # because ENABLE ALWAYS) waits on an advisory lock this test holds
    await sql(slave, HOLD_SQL)
    holder = await asyncpg.connect(slave)
    try:
        await holder.execute("SELECT pg_advisory_lock(4242)")
        await sql(master, "UPDATE userfeatures SET lastname = 'in flight' WHERE id < 20; "
                          "INSERT INTO user_line (user_id, line_id) VALUES (1, 2)")
        await wait_for_async(lambda: _copy_held_on_the_slave(slave), timeout=60, interval=0.05)
        master_now = await snapshot(master)
        if how == "master killed":
            pg_pair.master.kill()  # SIGKILL of the whole master cluster, mid-copy
        else:
            await r.stop()  # SIGTERM: the part returns without waiting for the copy
            assert r.task.done()
    finally:
        await holder.execute("SELECT pg_advisory_unlock(4242)")
        await holder.close()

    async def slave_idle():
        return not (await sql(slave, "SELECT count(*) FROM pg_stat_activity "
                                     "WHERE application_name = 'wazod-replication'"))[0][0]
    await wait_for_async(slave_idle, timeout=30)
    await sql(slave, "DROP TRIGGER wazod_test_hold ON userfeatures; DROP FUNCTION wazod_test_hold()")
    after = await snapshot(slave)
    if how == "daemon stopped":
        assert after == consistent
        return
    await wait_for_async(lambda: r.part.checks >= 3, timeout=60)
    assert r.part.last.status == "failed" and "cannot connect to the master" in r.part.last.error
    if r.part.copies == 1:  # the copy failed: rolled back
        assert after == consistent
    else:  # every row was already read (small tables): the copy completed with the master's data
        assert {t: after[t] for t in ("user_line", "userfeatures")} == \
            {t: master_now[t] for t in ("user_line", "userfeatures")}
    # a short failure is not an alarm (FAILURE_GRACE): no replication_failed yet
    assert {e["name"] for e in replication_events(ctx)} == {"replication_completed"}


def run_config(tmp_path, master, slave):
    return make_ctx(tmp_path, master, slave).config


async def _until_cheap(config) -> None:
    """Our own copy moved the slave's counters: one exact check records them, then checks are cheap."""
    from wazod.replication import run

    async def cheap():
        result = await run(config, cheap_check=True)
        assert result.status == "skipped", result
        return result.data["reason"].startswith("nothing was written to the replicated tables")
    await wait_for_async(cheap, timeout=30, interval=0.2)


async def test_calls_a_purge_and_vacuum_keep_the_check_on_the_cheap_path(tmp_path, dbs):
    from wazod.replication import run

    master, slave = dbs
    config = run_config(tmp_path, master, slave)
    assert (await run(config, cheap_check=True)).status == "ok"
    await _until_cheap(config)
    # calls going on (cel, queue_log), the nightly purge, autovacuum's work: the WAL moves, the
    # replicated tables' counters and catalog rows do not
    await sql(master, "INSERT INTO cel (eventtype, eventtime) SELECT 'HANGUP', now() FROM generate_series(1, 500); "
                      "INSERT INTO queue_log (time, event) SELECT now(), 'ENTERQUEUE' FROM generate_series(1, 200); "
                      "DELETE FROM cel WHERE id < 300")
    await sql(master, "VACUUM ANALYZE")
    await sql(slave, "VACUUM ANALYZE")
    result = await run(config, cheap_check=True)
    assert result.status == "skipped", result
    assert result.data["reason"].startswith("nothing was written to the replicated tables"), result.data
    # the exact test of the scheduled runs sees the WAL moved and reads the rows instead
    exact = await run(config)
    assert exact.status == "skipped" and exact.data["reason"].startswith("no change in the replicated tables")


@pytest.mark.parametrize("side, change", [
    ("master", "UPDATE userfeatures SET enablednd = 1 WHERE id = 4"),
    ("master", "TRUNCATE user_line"),
    ("master", "SELECT nextval('voicemail_uniqueid_seq')"),
    ("master", "ALTER TABLE extensions ALTER COLUMN typeval SET DEFAULT 'x'; "
               "UPDATE extensions SET typeval = 'x' WHERE id = 2"),
    ("slave", "DELETE FROM extensions WHERE id = 7"),
])
async def test_the_cheap_check_misses_no_change(tmp_path, dbs, side, change):
    from wazod.replication import run

    master, slave = dbs
    config = run_config(tmp_path, master, slave)
    assert (await run(config, cheap_check=True)).status == "ok"
    await _until_cheap(config)
    await sql(master if side == "master" else slave, change)

    async def copied():
        result = await run(config, cheap_check=True)
        assert result.status != "failed", result
        return result.status == "ok"
    await wait_for_async(copied, timeout=30, interval=0.2)
    for table in ("userfeatures", "user_line", "extensions"):
        assert await rows(slave, table) == await rows(master, table), table
    seq = "SELECT last_value, is_called FROM voicemail_uniqueid_seq"
    assert [tuple(r) for r in await sql(slave, seq)] == [tuple(r) for r in await sql(master, seq)]


async def test_the_sessions_kept_between_checks_survive_a_slave_restart(tmp_path, dbs, pg_pair):
    from wazod.replication import _kept, run

    master, slave = dbs
    config = run_config(tmp_path, master, slave)
    assert (await run(config, cheap_check=True)).status == "ok"
    await _until_cheap(config)
    assert len(_kept) == 1  # the quiet checks keep their two sessions
    pg_pair.slave.stop()
    pg_pair.slave.start()
    # the kept slave session is dead: the check connects afresh; the restart lost the statistics, so
    # the check is exact this time, and finds nothing to copy
    result = await run(config, cheap_check=True)
    assert result.status == "skipped", result
    assert result.data["reason"].startswith("no change in the replicated tables")
