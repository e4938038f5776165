"""wazod purge against a real PostgreSQL holding the Wazo log tables.

Rows are written at exact ages from a fixed reference instant ``NOW``, which
the purge takes as its clock (``run(..., now=NOW)``), so rows lying exactly on
the cutoff can be checked: the comparison is strict, they stay.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest
from wazo_schema import acreate_schema, apopulate

from wazod.config import Config, load_config
from wazod.config.sections.purge import WAZO_PURGED_TABLES
from wazod.errors import ConfigError
from wazod.events import EventStore, open_emitter
from wazod.jobs import run_job
from wazod.purge import run

NOW = dt.datetime(2026, 6, 15, 12, 0, 0, tzinfo=dt.UTC)
TENANT = "11111111-1111-4111-8111-111111111111"
USER = "22222222-2222-4222-8222-222222222222"
# ages in days (float) and exact ages on the 30 and 365 day cutoffs, with their neighbours
AGES = [
    dt.timedelta(0), dt.timedelta(days=1), dt.timedelta(days=29),
    dt.timedelta(days=30) - dt.timedelta(microseconds=1), dt.timedelta(days=30),
    dt.timedelta(days=30, microseconds=1), dt.timedelta(days=31), dt.timedelta(days=100),
    dt.timedelta(days=365) - dt.timedelta(microseconds=1), dt.timedelta(days=365),
    dt.timedelta(days=365, microseconds=1), dt.timedelta(days=366), dt.timedelta(days=800),
    -dt.timedelta(hours=1),  # a row from the future (clock skew) is never older than any cutoff
]
LOG_TABLES = list(WAZO_PURGED_TABLES)


def expected_left(days: int) -> int:
    return sum(1 for age in AGES if age <= dt.timedelta(days=days))


async def insert_rows(conn, ages=AGES, *, now=NOW, tables=LOG_TABLES) -> None:
    """One row per age in every log table (naive local time for stat_switchboard_queue)."""
    times = [now - age for age in ages]
    tz = await conn.fetchval("SELECT current_setting('TimeZone')")
    await conn.execute(f"SET TIME ZONE '{tz}'")
    for t in times:
        if "cel" in tables:
            await conn.execute("INSERT INTO cel (eventtype, eventtime, uniqueid) VALUES ('CHAN_START', $1, $2)",
                               t, f"u{t.timestamp()}")
        if "queue_log" in tables:
            await conn.execute("INSERT INTO queue_log (time, callid, event) VALUES ($1, 'c', 'ENTERQUEUE')", t)
        if "stat_agent_periodic" in tables:
            await conn.execute("INSERT INTO stat_agent_periodic (time, stat_agent_id) VALUES ($1, 1)", t)
        if "stat_call_on_queue" in tables:
            await conn.execute(
                "INSERT INTO stat_call_on_queue (callid, time, status) VALUES ('c', $1, 'answered')", t)
        if "stat_queue_periodic" in tables:
            await conn.execute("INSERT INTO stat_queue_periodic (time, stat_queue_id) VALUES ($1, 1)", t)
        if "stat_switchboard_queue" in tables:
            await conn.execute(
                "INSERT INTO stat_switchboard_queue (time, end_type, wait_time, queue_id) "
                "VALUES (($1::timestamptz AT TIME ZONE current_setting('TimeZone')), 'completed', 1.5, 1)", t)
        if "call_logd_call_log" in tables:
            cid = await conn.fetchval(
                "INSERT INTO call_logd_call_log (date, tenant_uuid, direction) VALUES ($1, $2, 'internal') "
                "RETURNING id", t, TENANT)
            await conn.execute("INSERT INTO call_logd_call_log_participant (call_log_id, user_uuid, role) "
                               "VALUES ($1, $2, 'source')", cid, USER)
    # the nullable queue_log.time: a NULL is never older than the cutoff (as in Wazo)
    if "queue_log" in tables:
        await conn.execute("INSERT INTO queue_log (time, callid, event) VALUES (NULL, 'n', 'CONNECT')")


@pytest.fixture
def asterisk_db(pg_cluster):
    """A fresh ``asterisk`` database with the Wazo schema, base data and rows at every age in AGES."""
    pg_cluster.psql("CREATE DATABASE asterisk")
    dsn = pg_cluster.dsn("asterisk")

    async def setup():
        conn = await asyncpg.connect(dsn)
        try:
            await acreate_schema(conn)
            await apopulate(conn, users=2, log_rows=0)
            await insert_rows(conn)
        finally:
            await conn.close()

    asyncio.run(setup())
    return dsn


def make_config(tmp_path: Path, dsn: str, **purge) -> Config:
    return Config.model_validate({
        "node": {"state_dir": str(tmp_path / "state"), "name": "pbx1", "uuid_file": str(tmp_path / "uuid.sh")},
        "ha": {"node_type": "disabled", "remote_address": "", "ha_conf": str(tmp_path / "ha.conf")},
        "purge": {"dsn": dsn, **purge},
    })


async def counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        out = {}
        for t in LOG_TABLES:
            if await conn.fetchval("SELECT to_regclass($1)", t):
                try:
                    out[t] = await conn.fetchval(
                        f"SELECT count(*) FROM {t} WHERE {WAZO_PURGED_TABLES[t]} IS NOT NULL")
                except asyncpg.UndefinedColumnError:  # a test dropped it
                    out[t] = await conn.fetchval(f"SELECT count(*) FROM {t}")
        if "call_logd_call_log" in out:
            out["call_logd_call_log_participant"] = await conn.fetchval(
                "SELECT count(*) FROM call_logd_call_log_participant")
        return out
    finally:
        await conn.close()


async def oldest_left(dsn: str, table: str, column: str) -> dt.datetime:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f"SELECT min({column}) FROM {table}")
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- retention
@pytest.mark.parametrize("days", [0, 30, 365])
async def test_exact_rows_left_per_table(tmp_path, asterisk_db, days):
    result = await run(make_config(tmp_path, asterisk_db, days_to_keep=days), now=NOW)
    assert result.status == "ok", result
    left = await counts(asterisk_db)
    for table in LOG_TABLES:
        assert left[table] == expected_left(days), table
        assert result.data["tables"][table]["deleted"] == len(AGES) - expected_left(days)
    # participants went with their call logs (ON DELETE CASCADE)
    assert left["call_logd_call_log_participant"] == expected_left(days)
    # the row exactly on the cutoff stays (strict <), the next older one is gone
    assert await oldest_left(asterisk_db, "cel", "eventtime") == NOW - dt.timedelta(days=days)
    # NULL queue_log.time is never purged
    conn = await asyncpg.connect(asterisk_db)
    assert await conn.fetchval("SELECT count(*) FROM queue_log WHERE time IS NULL") == 1
    await conn.close()
    assert result.data["deleted"] == len(LOG_TABLES) * (len(AGES) - expected_left(days))


async def test_per_table_days_beat_d_which_replaces_days_to_keep(tmp_path, asterisk_db):
    config = make_config(tmp_path, asterisk_db, days_to_keep=1,
                         days_to_keep_per_table={"cel": 365, "queue-log": 30})
    result = await run(config, days=100, now=NOW)
    assert result.status == "ok"
    left = await counts(asterisk_db)
    assert left["cel"] == expected_left(365)
    assert left["queue_log"] == expected_left(30)  # wazo-purge-db's plugin name works too
    for table in LOG_TABLES[2:]:
        assert left[table] == expected_left(100), table
    assert result.data["tables"]["cel"]["days_to_keep"] == 365
    assert result.data["days_to_keep"] == 100


async def test_dry_run_counts_and_deletes_nothing(tmp_path, asterisk_db):
    before = await counts(asterisk_db)
    result = await run(make_config(tmp_path, asterisk_db), days=30, dry_run=True, now=NOW)
    assert result.status == "ok"
    assert await counts(asterisk_db) == before
    for table in LOG_TABLES:
        assert result.data["tables"][table]["would_delete"] == len(AGES) - expected_left(30)


async def test_missing_table_is_skipped_and_reported(tmp_path, asterisk_db):
    conn = await asyncpg.connect(asterisk_db)
    await conn.execute("DROP TABLE call_logd_call_log_participant, call_logd_call_log")
    await conn.close()
    result = await run(make_config(tmp_path, asterisk_db), days=30, now=NOW)
    assert result.status == "ok"
    assert result.data["skipped"] == ["call_logd_call_log"]
    assert result.data["tables"]["call_logd_call_log"]["status"] == "skipped"
    left = await counts(asterisk_db)
    assert all(left[t] == expected_left(30) for t in LOG_TABLES if t != "call_logd_call_log")


async def test_locked_table_and_dropped_column_fail_alone(tmp_path, asterisk_db):
    blocker = await asyncpg.connect(asterisk_db)
    conn = await asyncpg.connect(asterisk_db)
    await conn.execute("ALTER TABLE queue_log DROP COLUMN time")
    await conn.close()
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE stat_agent_periodic IN ACCESS EXCLUSIVE MODE")
    try:
        config = make_config(tmp_path, asterisk_db, lock_timeout=0.3)
        result = await run_job("purge", config, open_emitter(config), days=30, now=NOW)
    finally:
        await tx.rollback()
        await blocker.close()
    assert result.status == "failed"
    assert result.data["failed"] == ["queue_log", "stat_agent_periodic"]
    assert "lock timeout" in result.data["tables"]["stat_agent_periodic"]["error"]
    assert "column time does not exist" in result.data["tables"]["queue_log"]["error"]
    left = await counts(asterisk_db)
    assert left["stat_agent_periodic"] == len(AGES)  # nothing deleted there
    assert left["queue_log"] == len(AGES) + 1
    for table in ("cel", "stat_call_on_queue", "stat_queue_periodic", "stat_switchboard_queue",
                  "call_logd_call_log"):
        assert left[table] == expected_left(30), table
    # the event carries the per-table counts
    store = EventStore(tmp_path / "state" / "events.sqlite3")
    events = store.pending("test")
    store.close()
    assert events[-1]["name"] == "purge_failed"
    assert events[-1]["data"]["tables"]["cel"]["deleted"] == len(AGES) - expected_left(30)
    assert "stat_agent_periodic" in events[-1]["data"]["error"]


def test_per_table_key_must_name_a_purged_table(tmp_path):
    (tmp_path / "config.yml").write_text("purge:\n  days_to_keep_per_table:\n    cell: 3\n")
    with pytest.raises(ConfigError, match="cell: not a purged table"):
        load_config(tmp_path / "config.yml")


def test_conf_d_adds_a_table_or_stops_purging_one(tmp_path):
    """With the shipped config.yml (every default written out), conf.d dicts merge into it."""
    from wazod.config.defaults import render_default_config

    (tmp_path / "config.yml").write_text(render_default_config())
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-ha.yml").write_text(
        f"ha: {{node_type: disabled, remote_address: '', ha_conf: {tmp_path / 'ha.conf'}}}\n")
    (tmp_path / "conf.d" / "50-purge.yml").write_text(
        "purge:\n  tables: {call_logd_call_log: null, custom_log: logged_at}\n"
        "  days_to_keep_per_table: {call-logs: 5}\n")
    with pytest.raises(ConfigError, match="call-logs: not a purged table"):
        load_config(tmp_path / "config.yml")
    (tmp_path / "conf.d" / "50-purge.yml").write_text(
        "purge:\n  tables: {call_logd_call_log: null, custom_log: logged_at}\n")
    section = load_config(tmp_path / "config.yml").config.purge
    assert set(section.purged_tables) == {*LOG_TABLES[:-1], "custom_log"}
    assert section.purged_tables["custom_log"] == "logged_at"


# ---------------------------------------------------------------------------- archives
def read_archive(path: str) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


async def test_csv_archive_holds_exactly_the_deleted_rows(tmp_path, asterisk_db):
    conn = await asyncpg.connect(asterisk_db)
    # enough old rows for many batches of 100
    await conn.execute(
        "INSERT INTO cel (eventtype, eventtime, uniqueid, cid_name) SELECT 'ANSWER', $1::timestamptz - "
        "(g * interval '1 minute') - interval '40 days', 'bulk' || g, 'Name, \"quoted\"' FROM generate_series(1, 2500) g",
        NOW)
    before = {r["id"]: r for r in await conn.fetch("SELECT id, eventtime, uniqueid, cid_name FROM cel")}
    await conn.close()
    config = make_config(tmp_path, asterisk_db, archives=["csv"], batch_rows=100,
                         archive_dir=str(tmp_path / "arch"))
    # what a killed run left behind is kept under a visible name, and said
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / ".cel-20260101T000000000000Z.csv.gz.part").write_bytes(gzip.compress(b"id\n1\n"))
    result = await run(config, days=30, now=NOW)
    assert (tmp_path / "arch" / "cel-20260101T000000000000Z-interrupted.csv.gz").exists()
    assert any("interrupted" in n for n in result.data["notes"])
    assert result.status == "ok"
    entry = result.data["tables"]["cel"]
    assert entry["batches"] > 5
    conn = await asyncpg.connect(asterisk_db)
    after = {r["id"] for r in await conn.fetch("SELECT id FROM cel")}
    await conn.close()
    deleted = set(before) - after
    [path] = entry["archives"]
    rows = read_archive(path)
    assert sorted(int(r["id"]) for r in rows) == sorted(deleted)
    assert len(rows) == entry["deleted"]
    sample = next(r for r in rows if r["uniqueid"] == "bulk7")
    assert sample["cid_name"] == 'Name, "quoted"'
    assert dt.datetime.fromisoformat(sample["eventtime"]) == before[int(sample["id"])]["eventtime"]
    # every table got its own archive, and no part file is left
    for table in LOG_TABLES[:-1]:
        [archive] = result.data["tables"][table]["archives"]
        assert len(read_archive(archive)) == result.data["tables"][table]["deleted"]
    # call logs: their participants, deleted by ON DELETE CASCADE, are archived beside them
    logs, participants = sorted(result.data["tables"]["call_logd_call_log"]["archives"])
    assert "call_logd_call_log_participant-" in participants
    deleted_logs = {r["id"] for r in read_archive(logs)}
    archived_participants = read_archive(participants)
    assert len(deleted_logs) == result.data["tables"]["call_logd_call_log"]["deleted"]
    assert {p["call_log_id"] for p in archived_participants} == deleted_logs
    assert len(archived_participants) == len(deleted_logs)  # one participant per call in this data
    assert not list((tmp_path / "arch").glob(".*"))
    assert oct(Path(path).stat().st_mode & 0o777) == "0o600"


async def test_time_index_walk_with_ties_archives_each_row_once(tmp_path, asterisk_db):
    """Stat rows share timestamps (one per queue per period): a batch boundary inside a tie loses nothing."""
    conn = await asyncpg.connect(asterisk_db)
    await conn.execute("TRUNCATE stat_agent_periodic")
    await conn.execute(  # 12 periods x 45 agents, old; 3000 recent rows keep the old share small
        "INSERT INTO stat_agent_periodic (time, stat_agent_id) SELECT $1::timestamptz - interval '40 days' "
        "- (p * interval '15 minutes'), 1 FROM generate_series(1, 12) p, generate_series(1, 45) a", NOW)
    await conn.execute("INSERT INTO stat_agent_periodic (time, stat_agent_id) SELECT $1::timestamptz "
                       "- (g * interval '1 minute'), 1 FROM generate_series(1, 3000) g", NOW)
    await conn.execute("ANALYZE stat_agent_periodic")
    await conn.close()
    config = make_config(tmp_path, asterisk_db, archives=["csv"], batch_rows=100,
                         tables={"stat_agent_periodic": "time"}, archive_dir=str(tmp_path / "arch"))
    result = await run(config, days=30, now=NOW)
    entry = result.data["tables"]["stat_agent_periodic"]
    assert result.status == "ok" and entry["walk"] == "time index"
    assert entry["deleted"] == 540 and entry["batches"] >= 4  # batches of 100 cut inside the ties
    ids = [r["id"] for r in read_archive(entry["archives"][0])]
    assert len(ids) == len(set(ids)) == 540
    left = await counts(asterisk_db)
    assert left["stat_agent_periodic"] == 3000


def write_plugins(root: Path) -> None:
    """A distribution on sys.path with a wazod archive plugin and two legacy wazo-purge-db ones."""
    (root / "purgetestplug-1.0.dist-info").mkdir(parents=True)
    (root / "purgetestplug-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: purgetestplug\nVersion: 1.0\n")
    (root / "purgetestplug-1.0.dist-info" / "entry_points.txt").write_text(textwrap.dedent("""\
        [wazod.purge_archives]
        refuse_cel = purgetestplug:RefuseCel

        [wazo_purge_db.archives]
        sample = purgetestplug:legacy_ok
        broken = purgetestplug:legacy_broken
        """))
    (root / "purgetestplug.py").write_text(textwrap.dedent("""\
        import json, os

        class _Sink:
            def __init__(self, table):
                self.table = table
            def append(self, rows):
                if self.table == "cel":
                    raise OSError("archive storage full")
            def discard_last(self):
                pass
            def close(self):
                return None

        class RefuseCel:
            def __init__(self, config):
                pass
            def open(self, table, columns, cutoff):
                return _Sink(table)

        def legacy_ok(config):
            with open(os.environ["PURGE_TEST_LEGACY_OUT"], "w") as f:
                json.dump(dict(config), f)

        def legacy_broken(config):
            raise RuntimeError("no tape in the drive")
        """))


@pytest.fixture
def plugins_on_path(tmp_path, monkeypatch):
    root = tmp_path / "plugins"
    write_plugins(root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PURGE_TEST_LEGACY_OUT", str(tmp_path / "legacy.json"))
    return root


async def test_failing_archive_plugin_keeps_that_tables_rows(tmp_path, asterisk_db, plugins_on_path):
    config = make_config(tmp_path, asterisk_db, archives=["refuse_cel", "sample"])
    result = await run(config, days=30, now=NOW)
    assert result.status == "failed"
    assert result.data["failed"] == ["cel"]
    assert "archive storage full" in result.data["tables"]["cel"]["error"]
    left = await counts(asterisk_db)
    assert left["cel"] == len(AGES)
    assert all(left[t] == expected_left(30) for t in LOG_TABLES if t != "cel")
    # the legacy plugin got Wazo's config mapping, days_to_keep being the -d value
    legacy = json.loads((tmp_path / "legacy.json").read_text())
    assert legacy["days_to_keep"] == 30
    assert legacy["enabled_plugins"]["archives"] == ["refuse_cel", "sample"]


async def test_failing_legacy_plugin_or_unknown_name_purges_nothing(tmp_path, asterisk_db, plugins_on_path):
    before = await counts(asterisk_db)
    result = await run(make_config(tmp_path, asterisk_db, archives=["broken"]), days=30, now=NOW)
    assert result.status == "failed"
    assert "no tape in the drive" in result.error
    result = await run(make_config(tmp_path, asterisk_db, archives=["tape"]), days=30, now=NOW)
    assert result.status == "failed"
    assert "no archive plugin named 'tape'" in result.error
    assert await counts(asterisk_db) == before


# ---------------------------------------------------------------------------- live node
async def bulk_old_cel(dsn: str, rows: int, *, with_index: bool = True) -> None:
    conn = await asyncpg.connect(dsn)
    if not with_index:
        await conn.execute("DROP INDEX cel__idx__eventtime")
    await conn.execute(
        "INSERT INTO cel (eventtype, eventtime, uniqueid) SELECT 'HANGUP', now() - interval '40 days' "
        "- (g * interval '1 second'), 'old' || g FROM generate_series(1, $1) g", rows)
    await conn.close()


@pytest.mark.parametrize("walk", ["time index", "heap blocks", "primary key"])
async def test_concurrent_inserts_all_committed(tmp_path, asterisk_db, walk, monkeypatch):
    """Each walk (time index: few old rows; heap blocks: no time index; primary key: as on
    PostgreSQL 13, which has no TID range scans) deletes every old row while inserts go on."""
    await bulk_old_cel(asterisk_db, 40000, with_index=walk == "time index")
    recent = 160000 if walk == "time index" else 0  # old rows then are a fifth of the table
    conn = await asyncpg.connect(asterisk_db)
    await conn.execute("INSERT INTO cel (eventtype, eventtime, uniqueid) SELECT 'HANGUP', now() - interval '10 days' "
                       "+ (g * interval '1 second'), 'recent' FROM generate_series(1, $1) g", recent)
    await conn.close()
    if walk == "primary key":
        import dataclasses

        import wazod.purge as purge_module

        real_inspect = purge_module.inspect_table

        async def as_on_pg13(conn, table, column):
            plan = await real_inspect(conn, table, column)
            return plan and dataclasses.replace(plan, tid_range=False)

        monkeypatch.setattr(purge_module, "inspect_table", as_on_pg13)
    inserted: list[int] = []
    stop = asyncio.Event()

    async def inserter():
        conn = await asyncpg.connect(asterisk_db)
        try:
            while not stop.is_set():
                inserted.append(await conn.fetchval(
                    "INSERT INTO cel (eventtype, eventtime, uniqueid) VALUES ('CHAN_START', now(), 'live') "
                    "RETURNING id"))
                await asyncio.sleep(0.002)
        finally:
            await conn.close()

    task = asyncio.create_task(inserter())
    config = make_config(tmp_path, asterisk_db, batch_rows=2000, batch_seconds=0.2,
                         days_to_keep_per_table={t: 30 for t in LOG_TABLES})
    result = await run(config, now=None)
    stop.set()
    await task
    assert result.status == "ok", result.error
    entry = result.data["tables"]["cel"]
    assert entry["walk"] == walk
    assert entry["batches"] >= 10
    conn = await asyncpg.connect(asterisk_db)
    live = {r["id"] for r in await conn.fetch("SELECT id FROM cel WHERE uniqueid = 'live'")}
    old = await conn.fetchval("SELECT count(*) FROM cel WHERE uniqueid LIKE 'old%'")
    assert await conn.fetchval("SELECT count(*) FROM cel WHERE uniqueid = 'recent'") == recent
    await conn.close()
    assert len(inserted) > 20
    assert live == set(inserted)
    assert old == 0
    if walk != "time index":
        assert any("VACUUM FULL cel" in n for n in result.data.get("notes", []))


def write_cli_config(tmp_path: Path, dsn: str, extra: str = "") -> Path:
    cfg = tmp_path / "etc" / "config.yml"
    cfg.parent.mkdir()
    cfg.write_text(textwrap.dedent(f"""\
        node: {{name: pbx1, state_dir: {tmp_path / 'state'}, uuid_file: {tmp_path / 'uuid.sh'}}}
        ha: {{node_type: disabled, remote_address: '', ha_conf: {tmp_path / 'ha.conf'}}}
        purge:
          dsn: {dsn}
          archive_dir: {tmp_path / 'arch'}
        """) + extra)
    return cfg


def wazod_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "wazod", *args]


async def test_sigterm_mid_purge_leaves_a_consistent_state(tmp_path, asterisk_db):
    await bulk_old_cel(asterisk_db, 100000)
    conn = await asyncpg.connect(asterisk_db)
    total_before = await conn.fetchval("SELECT count(*) FROM cel")
    ids_before = {r[0] for r in await conn.fetch("SELECT id FROM cel")}
    cfg = write_cli_config(tmp_path, asterisk_db,
                           "  archives: [csv]\n  batch_rows: 200\n  batch_seconds: 0.2\n")
    proc = subprocess.Popen(wazod_argv("purge", "-d", "30", "--config", str(cfg)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async def some_deleted():
            return await conn.fetchval("SELECT count(*) FROM cel") < total_before - 2000
        deadline = asyncio.get_running_loop().time() + 60
        while not await some_deleted():
            assert proc.poll() is None, proc.communicate()
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert b"interrupted by SIGTERM" in out
    ids_after = {r[0] for r in await conn.fetch("SELECT id FROM cel")}
    await conn.close()
    assert 0 < len(ids_after) < total_before - 2000  # stopped part way
    [archive] = (tmp_path / "arch").glob("cel-*.csv.gz")
    archived = [int(r["id"]) for r in read_archive(str(archive))]
    assert len(archived) == len(set(archived))
    assert set(archived) == ids_before - ids_after  # every deleted row archived, nothing else
    assert not list((tmp_path / "arch").glob(".*part"))
    record = json.loads((tmp_path / "state" / "job-purge.json").read_text())
    assert record["last_result"] == "failed" and "interrupted" in record["error"]
    # the next run finishes the job
    done = subprocess.run(wazod_argv("purge", "-d", "30", "--json", "--config", str(cfg)),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    # every row left is older than 30 days by the real clock (NOW is months before it)
    assert doc["data"]["tables"]["cel"]["deleted"] == len(ids_after)
    store = EventStore(tmp_path / "state" / "events.sqlite3")
    names = [e["name"] for e in store.pending("test")]
    store.close()
    assert names[-2:] == ["purge_failed", "purge_completed"]


def test_cli_rejects_negative_days(tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"node: {{state_dir: {tmp_path}}}\nha: {{node_type: disabled, remote_address: '', "
                   f"ha_conf: {tmp_path / 'ha.conf'}}}\n")
    out = subprocess.run(wazod_argv("purge", "-d", "-3", "--config", str(cfg)), capture_output=True, text=True,
                         env={**os.environ}, timeout=60)
    assert out.returncode == 2
    assert "days to keep must be 0 or more" in out.stderr



def test_cli_exits_3_while_another_purge_holds_the_lock(tmp_path):
    from wazod.locks import OperationLock

    cfg = write_cli_config(tmp_path, "postgresql://postgres@127.0.0.1:1/asterisk")
    with OperationLock(tmp_path / "state", "purge"):
        out = subprocess.run(wazod_argv("purge", "--config", str(cfg)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "another purge run holds the lock" in out.stderr
