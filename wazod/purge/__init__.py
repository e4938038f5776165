"""The nightly purge of old log rows (replaces wazo-purge-db).

Same tables, columns, retention rules and cutoff as wazo-purge-db (strict
``<``, ``now() - N days``, ``localtimestamp`` for the one timestamp-without-
time-zone column, per-table days beating ``-d`` which replaces days_to_keep,
0 deleting every row), with its weaknesses fixed:

* each table is independent: a failure (lock timeout, dropped column, failing
  archive) is reported for that table and the others are still purged;
* rows go in short batches, each its own transaction (``wazod.purge.batches``),
  so a purge after a long pause never holds a huge transaction and inserts go on;
* archives come first and cover exactly the deleted rows (``wazod.purge.archives``);
  a table whose archive fails keeps its rows;
* the result lists rows deleted per table; the jobs runner turns it into
  ``purge_completed`` / ``purge_failed``.

The cutoff is computed once per run from the server's clock, so every table
and every batch compares with the same instant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import asyncpg

from wazod import dsn as dsnlib
from wazod import pgconnect
from wazod.errors import WazodError
from wazod.jobs import JobResult
from wazod.logsetup import get_logger
from wazod.purge.archives import ArchiveFailed, csv_archive_plugin, legacy_config, load_archives
from wazod.purge.batches import TableProgress, purge_table
from wazod.purge.tables import TableError, inspect_table
from wazod.secrets import mask_text

__all__ = ["run", "csv_archive_plugin"]

log = get_logger("purge")

MIB = 1024 * 1024


async def _connect(section) -> asyncpg.Connection:
    settings = {
        "application_name": "wazod-purge",
        # a batch's probe (ORDER BY time LIMIT n) must walk the index in order, never
        # collect the whole remaining range and sort it (what stale statistics can suggest)
        "enable_sort": "off",
        "enable_bitmapscan": "off",
        "lock_timeout": f"{int(section.lock_timeout * 1000)}ms",
        "statement_timeout": f"{int(section.statement_timeout * 1000)}ms",
    }
    try:
        return await pgconnect.connect(section.dsn, os_user=section.db_os_user, setting="purge.db_os_user",
                                       dsn_setting="purge.dsn", server_settings=settings, timeout=30)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise WazodError(f"purge: cannot connect to the {dsnlib.describe(section.dsn)} (purge.dsn): "
                         f"{type(e).__name__}: {mask_text(str(e))}") from None


async def _cutoffs(conn, now: dt.datetime | None, days_values: set[int]) -> dict[tuple[int, bool], dt.datetime]:
    """(days, naive) -> cutoff, from one reference instant (the server's now() unless given).

    Calendar days in the session's TimeZone, like ``now() - interval 'N days'``;
    the naive cutoff is that instant as local time, like ``localtimestamp - N days``.
    """
    rows = await conn.fetch(
        "SELECT d, r.ref - make_interval(days => d) AS aware, "
        "(r.ref AT TIME ZONE current_setting('TimeZone')) - make_interval(days => d) AS naive "
        "FROM (SELECT coalesce($1::timestamptz, now()) AS ref) r, unnest($2::int[]) d",
        now, sorted(days_values),
    )
    out = {}
    for row in rows:
        out[(row["d"], False)] = row["aware"]
        out[(row["d"], True)] = row["naive"]
    return out


async def _size_and_rows(conn, oid: int) -> tuple[int, float]:
    row = await conn.fetchrow("SELECT pg_total_relation_size($1::oid) AS size, reltuples FROM pg_class WHERE oid = $1", oid)
    return int(row["size"]), float(row["reltuples"])


async def _purge_one(section, conn, plan, cutoff, archivers, entry: dict[str, Any], notes: list[str]) -> None:
    size_before, rows_before = await _size_and_rows(conn, plan.oid)
    sinks = []
    child_sinks = []
    progress = TableProgress()
    t0 = time.monotonic()

    def open_sinks(table: str, columns) -> list:
        opened = []
        for name, archiver in archivers:
            try:
                sink = archiver.open(table, list(columns), cutoff)
            except Exception as e:
                raise ArchiveFailed(f"archive {name} cannot start for {table}: {type(e).__name__}: {e}") from e
            opened.append((name, sink))
            every_sink.append((name, sink))
        return opened

    every_sink: list = []  # closed whatever happens, each once
    try:
        sinks = open_sinks(plan.table, plan.columns)
        if archivers:  # rows deleted by ON DELETE CASCADE are archived too, each table in its own file
            child_sinks = [(child, open_sinks(child.table, child.columns)) for child in plan.cascades]
        await purge_table(conn, plan, cutoff, max_rows=section.batch_rows, target_seconds=section.batch_seconds,
                          sinks=sinks, progress=progress, child_sinks=child_sinks)
    finally:
        entry.update(deleted=progress.deleted, batches=progress.batches, seconds=round(time.monotonic() - t0, 3),
                     longest_batch_seconds=round(progress.longest_batch, 3))
        if progress.walk:
            entry["walk"] = progress.walk
        archives = []
        for name, sink in every_sink:
            try:
                path = sink.close()
            except Exception as e:  # the rows already deleted are in the part file; say so
                notes.append(f"{plan.table}: archive {name} could not be finalised: {e}")
                continue
            if path:
                archives.append(path)
        if archives:
            entry["archives"] = archives
    if progress.deleted:
        try:
            await _after_purge(section, conn, plan, progress.deleted, size_before, rows_before, entry, notes)
        except asyncpg.PostgresError as e:  # the rows are gone all the same; autovacuum will analyze
            notes.append(f"{plan.table}: ANALYZE after the purge failed: {_describe(e)}")


async def _after_purge(section, conn, plan, deleted: int, size_before: int, rows_before: float,
                       entry: dict[str, Any], notes: list[str]) -> None:
    """ANALYZE, then say whether VACUUM FULL would give disk space back."""
    if section.analyze:
        t0 = time.monotonic()
        await conn.execute(f"ANALYZE {plan.qtable}")
        entry["analyze_seconds"] = round(time.monotonic() - t0, 3)
        _, remaining = await _size_and_rows(conn, plan.oid)
    else:
        remaining = rows_before - deleted
    ratio = deleted / (deleted + max(remaining, 0.0))
    freed = int(size_before * ratio)
    if ratio >= section.vacuum_full_hint_ratio and freed >= MIB:
        entry["vacuum_full_would_free_bytes"] = freed
        notes.append(
            f"{plan.table}: {deleted} rows deleted ({ratio:.0%} of the table); autovacuum makes the "
            f"space reusable, VACUUM FULL {plan.table} would give about {freed // MIB} MiB back to the disk "
            f"but locks the table: run it in a maintenance window, services stopped"
        )


async def _table(section, conn, table, column, days, cutoffs, archivers, dry_run, notes) -> dict[str, Any]:
    try:
        plan = await inspect_table(conn, table, column)
        if plan is None:
            return {"status": "skipped", "reason": "table does not exist in this database", "deleted": 0}
        days_t = section.days_for(table, days)
        cutoff = cutoffs[(days_t, plan.naive)]
        entry: dict[str, Any] = {"status": "ok", "days_to_keep": days_t, "cutoff": cutoff.isoformat()}
        if dry_run:
            entry["would_delete"] = await conn.fetchval(
                f"SELECT count(*) FROM {plan.qtable} WHERE {plan.qcolumn} < $1", cutoff)
            return entry
        try:
            await _purge_one(section, conn, plan, cutoff, archivers, entry, notes)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ArchiveFailed, OSError) as e:
            entry.update(status="failed", error=_describe(e))
        return entry
    except (TableError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        return {"status": "failed", "deleted": 0, "error": _describe(e)}


class _Connection:
    """One connection for the whole run, replaced when a table's failure broke it.

    A failed statement or batch leaves the connection usable (each batch is its own
    transaction, rolled back whole), so tables stay independent without a new
    connection each.
    """

    def __init__(self, section):
        self.section = section
        self.conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed() or self.conn.is_in_transaction():
            await self.close()
            self.conn = await _connect(self.section)
        return self.conn

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            try:
                await asyncio.shield(self.conn.close(timeout=5))
            except Exception:
                self.conn.terminate()
        self.conn = None


def _describe(e: BaseException) -> str:
    if isinstance(e, (TableError, WazodError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


async def run(config, *, days: int | None = None, dry_run: bool = False,
              now: dt.datetime | None = None) -> JobResult:
    """Purge every configured table; ``days`` is ``-d``; ``now`` (tests) replaces the server's clock."""
    section = config.purge
    if days is not None and days < 0:
        raise WazodError(f"purge: days to keep must be 0 or more (got {days})")
    global_days = section.days_to_keep if days is None else days
    data: dict[str, Any] = {"days_to_keep": global_days, "tables": {}}
    notes: list[str] = []
    try:
        archivers, legacy = ([], []) if dry_run else load_archives(section.archives, config)
    except ArchiveFailed as e:
        return JobResult("purge", "failed", data, error=f"{e}; nothing purged")
    for archiver in (a for _, a in archivers):
        notes += [f"archive of an interrupted purge kept: {p}" for p in getattr(archiver, "recovered", [])]
    for name, plugin in legacy:
        try:
            await asyncio.to_thread(plugin, legacy_config(section, days))
        except Exception as e:
            log.error("legacy archive plugin failed", plugin=name, error=str(e))
            return JobResult("purge", "failed", data,
                             error=f"legacy archive plugin {name} failed: {type(e).__name__}: {e}; nothing purged")

    connection = _Connection(section)
    try:
        days_values = {section.days_for(t, days) for t in section.purged_tables}
        cutoffs = await _cutoffs(await connection.get(), now, days_values)
        for table, column in section.purged_tables.items():
            try:
                entry = await _table(section, await connection.get(), table, column, days, cutoffs,
                                     archivers, dry_run, notes)
            except WazodError as e:  # cannot connect: this table fails, the next one tries again
                entry = {"status": "failed", "deleted": 0, "error": str(e)}
            except asyncio.CancelledError:
                log.warning("purge interrupted after the current batch", done=data["tables"])
                raise
            data["tables"][table] = entry
            log.info("purge table", table=table, **{k: v for k, v in entry.items() if k != "archives"})
    finally:
        await connection.close()

    tables = data["tables"]
    key = "would_delete" if dry_run else "deleted"
    data[key] = sum(e.get(key, 0) for e in tables.values())
    failed = {t: e["error"] for t, e in tables.items() if e["status"] == "failed"}
    data["failed"] = sorted(failed)
    data["skipped"] = sorted(t for t, e in tables.items() if e["status"] == "skipped")
    if notes:
        data["notes"] = notes
    if failed:
        return JobResult("purge", "failed", data, error="; ".join(f"{t}: {err}" for t, err in failed.items()))
    return JobResult("purge", "ok", data)
