"""Master to slave replication of the ``asterisk`` database (the old
``xivo-master-slave-db-replication``), atomic and incremental.

``run(config, dry_run=False, force=False) -> JobResult`` is the job entry
point (``wazod.replication:run``); ``wazod.jobs.run_job`` takes the lock,
records the result and emits ``replication_completed|skipped|failed``.

One run:

1. connects to the master (``replication.source_dsn``) in a read-only
   REPEATABLE READ transaction (one consistent snapshot for everything read)
   and to the slave (``replication.target_dsn``) in one transaction with
   ``session_replication_role = replica`` (circular foreign keys);
2. compares the two schemas (tables, columns, types, sequences,
   ``infos.wazo_version``) and stops, writing nothing, on any difference;
3. finds the changed tables on both sides (see ``changes``) and compares
   the sequences; nothing changed: ``skipped``, the slave is not touched;
4. empties the changed tables on the slave, streams the master's rows in,
   gives the sequences the master's values, and commits: the slave goes from
   its old data to the new data at once, or not at all;
5. records the snapshots and row counts the next run compares against.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from typing import Any

import asyncpg

from wazod import dsn as dsnlib
from wazod import pgconnect
from wazod.errors import ConfigError, WazodError
from wazod.events import now_iso
from wazod.jobs import JobResult
from wazod.logsetup import get_logger
from wazod.replication import catalog as cat
from wazod.replication.changes import (
    SideState,
    changed_tables,
    read_marker,
    read_sequences,
    record_problem,
    scan,
    where,
    write_marker_sql,
)
from wazod.replication.copy import SourceFailed, clear_tables, master_sizes, set_sequences, stream_tables
from wazod.replication.indexes import (
    Deferred,
    ForeignKeyNotSatisfied,
    IndexRebuildMismatch,
    build_table_indexes,
    defer_indexes,
    finish_rebuild,
)
from wazod.secrets import mask_text
from wazod.state import StateStore

log = get_logger("replication")

RECORD_NAME = "replication-record"
LIST_LIMIT = 50  # tables named in a result; more are counted only

# Identical text rendering on both sides (text-format COPY of a few column types).
SESSION_SETTINGS = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "TimeZone": "UTC",
    "bytea_output": "hex",
    "application_name": "wazod-replication",
}


# When each state_dir's slave was last known to hold everything the master had committed
# (time.time() of the start of the check that found them equal or of the copy that made them so):
# kept in memory, because the cheapest skips write nothing; the record's in_sync_at otherwise.
_in_sync_at: dict[str, float] = {}


def _in_sync_since(config, record: dict) -> float | None:
    key = str(config.node.state_dir)
    if key in _in_sync_at:
        return _in_sync_at[key]
    for field_name in ("in_sync_at", "replicated_at"):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return dt.datetime.fromisoformat(record[field_name]).timestamp()
    return None


def _note_in_sync(config, when: float) -> None:
    _in_sync_at[str(config.node.state_dir)] = when


async def close_kept() -> None:
    """Close the sessions the continuous checks keep between checks (the daemon stopping, a reload)."""
    while _kept:
        _key, (loop, *conns) = _kept.popitem()
        if loop is asyncio.get_running_loop():
            await _disconnect(conns, clean=True, graceful=True)
        else:
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.terminate()


class ReplicationError(Exception):
    """A failure explained for the administrator (the job's ``error``)."""


def target_dsn(config) -> str:
    dsn = config.replication.target_dsn
    if "{remote_address}" in dsn:
        remote = config.ha.remote_address
        if not remote:
            raise ConfigError("replication.target_dsn uses {remote_address} but ha.remote_address is not set "
                              "(set it, or ha.ha_conf's remote_address)")
        host = f"[{remote}]" if ":" in remote and not remote.startswith("[") else remote
        dsn = dsn.replace("{remote_address}", host)
    return dsn


async def _connect(dsn: str, side: str, timeout: float, os_user: str | None):
    key = "replication.source_dsn" if side == "master" else "replication.target_dsn"
    try:
        return await pgconnect.connect(dsn, os_user=os_user, setting="replication.db_os_user", dsn_setting=key,
                                       timeout=timeout, server_settings=SESSION_SETTINGS)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        # the event carrying this error goes to the bus and SNMP: where, never the DSN itself
        raise ReplicationError(f"cannot connect to the {side} {dsnlib.describe(dsn)} ({key}): "
                               f"{type(e).__name__}: {e}") from None


def _load_record(state: StateStore) -> dict[str, Any]:
    return state.read(RECORD_NAME, {}) or {}


def _side(record: dict, key: str) -> SideState | None:
    try:
        return SideState.from_dict(record[key])
    except (KeyError, TypeError, ValueError):
        return None


def _listed(names) -> list[str]:
    names = sorted(names)
    return names[:LIST_LIMIT] + ([f"... {len(names) - LIST_LIMIT} more"] if len(names) > LIST_LIMIT else [])


async def run(config, *, dry_run: bool = False, force: bool = False, cheap_check: bool = False) -> JobResult:
    """One replication run. ``cheap_check`` (the continuous checks): a side whose table statistics,
    catalog rows and sequences say nothing was written is not scanned (see ``changes.Activity``)."""
    rc = config.replication
    try:
        return await asyncio.wait_for(_replicate_once_more_if_keys_break(config, dry_run=dry_run, force=force,
                                                                         cheap_check=cheap_check),
                                      rc.timeout)
    except TimeoutError:
        return JobResult("replication", "failed",
                         error=f"abandoned after {rc.timeout:g} s (replication.timeout); "
                               "the slave keeps its previous data")
    except (ReplicationError, IndexRebuildMismatch, WazodError) as e:
        return JobResult("replication", "failed", error=str(e))
    except SourceFailed as e:
        return JobResult("replication", "failed",
                         error=f"{mask_text(str(e))}; the slave keeps its previous data (the copy was rolled back)")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        return JobResult("replication", "failed",
                         error=f"{type(e).__name__}: {mask_text(str(e))}; the slave keeps its previous data "
                               "(the copy was rolled back)")


async def _replicate_once_more_if_keys_break(config, *, dry_run: bool, force: bool,
                                             cheap_check: bool = False) -> JobResult:
    """A run with the foreign keys dropped for the load; again with them in place if the rows break one.

    Only a master holding rows its own keys would refuse (a key created NOT
    VALID there, rows written in replica role) gets there: Wazo's replica-role
    load copies such rows, so wazod does too rather than fail.
    """
    try:
        return await _replicate(config, dry_run=dry_run, force=force, cheap_check=cheap_check)
    except ForeignKeyNotSatisfied as e:
        why = mask_text(str(e))
        log.warning("replication_keys_kept", error=why)
        result = await _replicate(config, dry_run=dry_run, force=force, defer_keys=False)
        if result.data is not None and result.status == "ok":
            result.data["note"] = f"loaded with the foreign keys in place: the master's rows break one ({why})"
        return result


# The continuous checks keep their two sessions open between checks that found nothing (no transaction is
# open then): a check is a few statements, not two connections set up and torn down every few seconds.
_kept: dict[tuple, tuple] = {}


class _ReconnectNeeded(Exception):
    """A kept session was found dead before anything was read: connect afresh."""


async def _replicate(config, *, dry_run: bool, force: bool, defer_keys: bool = True,
                     cheap_check: bool = False) -> JobResult:
    try:
        return await _replicate_with(config, dry_run=dry_run, force=force, defer_keys=defer_keys,
                                     cheap_check=cheap_check, reuse=cheap_check)
    except _ReconnectNeeded:
        return await _replicate_with(config, dry_run=dry_run, force=force, defer_keys=defer_keys,
                                     cheap_check=cheap_check, reuse=False)


async def _replicate_with(config, *, dry_run: bool, force: bool, defer_keys: bool, cheap_check: bool,
                          reuse: bool) -> JobResult:
    rc = config.replication
    state = StateStore(config.node.state_dir)
    source, target = rc.source_dsn, target_dsn(config)
    key = (str(config.node.state_dir), source, target, rc.db_os_user)
    kept_loop, *kept = _kept.pop(key, (None,))
    kept = tuple(kept) or None
    if kept is not None and (not reuse or kept_loop is not asyncio.get_running_loop()):
        for conn in kept:
            with contextlib.suppress(Exception):
                conn.terminate()
        kept = None
    master = slave = master_done = None
    committed = clean = keep = False
    checked_at = time.time()  # before any position or snapshot is read: a safe "in sync since"
    marks = [("start", time.monotonic())]

    def mark(name: str) -> None:
        marks.append((name, time.monotonic()))

    def timings() -> dict[str, float]:
        return {name: round(t - marks[i][1], 3) for i, (name, t) in enumerate(marks[1:])}

    try:
        if kept is not None and not any(c.is_closed() for c in kept):
            master, slave = kept
        else:
            master, slave = await asyncio.gather(_connect(source, "master", rc.connect_timeout, rc.db_os_user),
                                                 _connect(target, "slave", rc.connect_timeout, rc.db_os_user),
                                                 return_exceptions=True)
            kept = None
        for conn in (master, slave):
            if isinstance(conn, BaseException):
                raise conn
        mark("connect")
        record = _load_record(state)
        rec_master, rec_slave = _side(record, "master"), _side(record, "slave")

        # Read before any snapshot is taken: a change committed after this moves the position.
        sides = await asyncio.gather(where(master, rc.exclude_tables), where(slave, rc.exclude_tables),
                                     return_exceptions=True)
        for side in sides:
            if isinstance(side, BaseException):
                if kept is None or isinstance(side, asyncio.CancelledError):
                    raise side
                raise _ReconnectNeeded()  # a kept session died since the last check (nothing read yet)
        (m_pos, m_act, _), (s_pos, s_act, s_marked) = sides
        marker = await read_marker(slave, s_marked)
        due = _full_copy_due(record, rc) if not force else "forced (--force)"
        if not due and record and marker != record.get("slave_marker"):
            due = ("slave: its replication marker is not the recorded one (restored, cloned, or written by "
                   "another master)")

        recorded_activity = record.get("activity") or {}

        def quiet(pos, rec, act, side) -> str:
            """How this side is known unwritten since the record ("": it is not)."""
            if pos.same_as(rec):
                return "wal"
            if (cheap_check and rec is not None and (rec.system_identifier, rec.database_oid) == pos.identity
                    and act.same_as(recorded_activity.get(side))):
                return "stats"
            return ""

        m_quiet, s_quiet = quiet(m_pos, rec_master, m_act, "master"), quiet(s_pos, rec_slave, s_act, "slave")
        if not due and not dry_run and "sequences" in record and m_quiet and s_quiet:
            names = record.get("sequences") or []
            m_seqs, s_seqs = await asyncio.gather(read_sequences(master, names), read_sequences(slave, names))
            if m_seqs == s_seqs:
                clean = True
                keep = cheap_check
                _note_in_sync(config, checked_at)
                why = ("nothing was written on either database" if m_quiet == s_quiet == "wal" else
                       "nothing was written to the replicated tables (statistics, catalog and sequences unchanged)")
                return _skipped(record, len(rec_master.counts), why)

        await master.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # READ COMMITTED (COPY FREEZE needs it); the change scan is one statement, hence one snapshot.
        await slave.execute("BEGIN" + (" READ ONLY" if dry_run else ""))
        await slave.execute("SET LOCAL session_replication_role = replica")
        await slave.execute(f"SET LOCAL lock_timeout = '{int(rc.lock_timeout * 1000)}ms'")

        m_cat, s_cat = await asyncio.gather(cat.read_catalog(master), cat.read_catalog(slave))
        diffs = cat.schema_differences(m_cat, s_cat, rc.exclude_tables)
        if diffs:
            raise ReplicationError("schema mismatch, nothing written (both nodes must run the same Wazo "
                                   "version): " + "; ".join(diffs))
        table_names = cat.replicated_tables(m_cat, rc.exclude_tables)
        seq_names = cat.replicated_sequences(m_cat, rc.exclude_tables)
        fingerprint = cat.fingerprint(m_cat, rc.exclude_tables)
        mark("schema")

        async def look(conn, recorded):
            return await scan(conn, [], recorded), await read_sequences(conn, seq_names)

        (m_check, m_seqs), (s_check, s_seqs) = await asyncio.gather(look(master, rec_master),
                                                                    look(slave, rec_slave))
        reason = due or _full_copy_reason(record, fingerprint, rec_master, m_check, rec_slave, s_check)

        async def rows(conn, recorded, check):
            # A side with nothing written since the record (WAL position read after this snapshot)
            # is known without reading its rows; a full copy needs no change test at all.
            if not reason and check.unchanged_since(recorded, table_names):
                check.counts = dict(recorded.counts)
                return check
            if reason and not dry_run:
                return check
            return await scan(conn, table_names, recorded)

        m_check, s_check = await asyncio.gather(rows(master, rec_master, m_check), rows(slave, rec_slave, s_check))
        if reason:
            to_copy = set(table_names)
            # a sequence already at the master's value is left alone (each one set is a new relation file)
            seqs_to_set = {s: v for s, v in m_seqs.items() if s_seqs.get(s) != v}
        else:
            changed = changed_tables(rec_master, m_check) | changed_tables(rec_slave, s_check)
            # Tables referencing a changed one come along, so that one TRUNCATE can empty them all.
            to_copy = cat.with_referencing(changed, s_cat, set(table_names))
            seqs_to_set = {s: v for s, v in m_seqs.items() if s_seqs.get(s) != v}
            reason = "changes found" if to_copy or seqs_to_set else ""

        mark("changes")
        if not to_copy and not seqs_to_set:
            if not dry_run:
                # Same content: remember the current positions so the next run can skip at once.
                record["master"]["lsn"], record["slave"]["lsn"] = m_pos.lsn, s_pos.lsn
                record["sequences"] = seq_names
                record["in_sync_at"] = dt.datetime.fromtimestamp(checked_at, dt.UTC).isoformat()
                record["activity"] = {"master": m_act.to_dict(), "slave": s_act.to_dict()}
                state.write(RECORD_NAME, record)
                _note_in_sync(config, checked_at)
            clean = True
            return _skipped(record, len(table_names), "no change in the replicated tables")

        if dry_run:
            would = {t: m_check.counts[t] for t in sorted(to_copy)}
            clean = True
            return JobResult("replication", "ok", data={
                "reason": reason, "would_copy": would, "tables": len(would), "rows": sum(would.values()),
                "sequences": len(seqs_to_set), "sequences_to_set": _listed(seqs_to_set)})

        full = to_copy == set(table_names)
        truncate = cat.truncatable(to_copy, s_cat)
        t0 = time.monotonic()
        # the master's sizes (its snapshot: its empty tables need no COPY, its small ones keep their indexes)
        # are read while the slave empties its tables
        sizes, _ = await _both(master_sizes(master, sorted(to_copy)),
                               clear_tables(slave, truncate, to_copy - truncate))
        tables = [m_cat.tables[t] for t in sorted(to_copy) if sizes[t][1]]
        rebuilt = {t for t in truncate if sizes[t][0] >= rc.rebuild_min_size}
        deferred = Deferred()

        async def defer():
            nonlocal deferred
            if rc.rebuild_indexes:
                deferred = await defer_indexes(slave, rebuilt, foreign_keys=defer_keys and rc.check_foreign_keys)
            mark("clear")

        # the master starts reading while the slave drops the indexes to rebuild
        stats = await stream_tables(master, slave, tables, frozen=truncate,
                                    after_table=lambda name: build_table_indexes(slave, deferred, name),
                                    prepare=defer)
        stats.per_table.update({t: 0 for t in to_copy if not sizes[t][1]})
        mark("copy")
        # every row is read: the master's session ends (read only) while the slave finishes
        master_done = asyncio.create_task(_disconnect([master], clean=True, graceful=True))
        await finish_rebuild(slave, deferred)
        mark("keys")
        await set_sequences(slave, seqs_to_set)
        new_marker = uuid.uuid4().hex
        await slave.execute(write_marker_sql(new_marker))
        own_xid = await slave.fetchval("SELECT pg_current_xact_id()::text")
        try:
            await slave.execute("COMMIT")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            # Committed or not, the record is not updated: the next run sees the slave's rows
            # (new or old) as changes and copies them again.
            raise ReplicationError(f"the slave's COMMIT did not complete ({type(e).__name__}: {e}); "
                                   "the slave holds either its previous data or the new data, whole; "
                                   "the next run checks and copies again") from None
        committed = True
        mark("commit")
        committed_at = time.time()
        since = _in_sync_since(config, record)
        _note_in_sync(config, checked_at)
        copy_seconds = time.monotonic() - t0

        counts_master = {t: (stats.per_table[t] if t in to_copy else m_check.counts[t]) for t in table_names}
        counts_slave = {t: (stats.per_table[t] if t in to_copy else s_check.counts[t]) for t in table_names}
        # No WAL position for the slave: the server's own records (running xacts, checkpoint) follow a
        # load within seconds anyway; the next run reads the rows once and records the position then.
        new_slave = SideState(s_check.identity[0], s_check.identity[1], s_check.snapshot, own_xid, counts_slave)
        now = now_iso()
        state.write(RECORD_NAME, {
            "fingerprint": fingerprint,
            "replicated_at": now,
            "full_copy_at": now if full else record.get("full_copy_at"),
            "in_sync_at": dt.datetime.fromtimestamp(checked_at, dt.UTC).isoformat(),
            # read before either snapshot: a later write moves them (changes.Activity)
            "activity": {"master": m_act.to_dict(), "slave": s_act.to_dict()},
            "sequences": seq_names,
            "slave_marker": new_marker,
            "master": SideState(m_check.identity[0], m_check.identity[1], m_check.snapshot, None,
                                counts_master, m_pos.lsn).to_dict(),
            "slave": new_slave.to_dict(),
        })
        clean = True
        log.info("replicated", tables=len(to_copy), rows=stats.rows, bytes=stats.bytes,
                 mode="full" if full else "incremental")
        return JobResult("replication", "ok", data={
            "mode": "full" if full else "incremental", "reason": reason,
            "tables": len(to_copy), "empty_tables": len(to_copy) - len(tables), "rows": stats.rows,
            "bytes": stats.bytes,
            "sequences": len(seqs_to_set), "tables_copied": _listed(to_copy),
            "copy_seconds": round(copy_seconds, 3), "timings": timings(),
            # upper bound of the age of the changes carried: none older than the last moment the slave was
            # known equal to the master (null: never known equal, e.g. the first copy)
            "lag_s": round(committed_at - since, 3) if since is not None else None})
    finally:
        if keep and not master.is_in_transaction() and not slave.is_in_transaction():
            _kept[key] = (asyncio.get_running_loop(), master, slave)
        else:
            conns = [c for c in (slave, master) if c is not None and not isinstance(c, BaseException)]
            if master_done is not None:
                conns.remove(master)
            await _disconnect(conns, clean=clean and not committed, graceful=clean)
            if master_done is not None:
                with contextlib.suppress(Exception):
                    await master_done


async def _both(first, second):
    """Run two statements' coroutines (one per connection) at once; the first failure is raised."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _skipped(record: dict, checked: int, why: str) -> JobResult:
    return JobResult("replication", "skipped", data={
        "reason": f"{why} since the replication of {record.get('replicated_at')}",
        "tables": 0, "rows": 0, "bytes": 0, "sequences": 0, "checked_tables": checked})


async def _disconnect(conns, *, clean: bool, graceful: bool) -> None:
    """Close the sessions, both at once; an abnormal end drops them at once (the server rolls back)."""
    async def close(conn) -> None:
        if not graceful:
            conn.terminate()
            return
        try:
            if clean and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            # a server takes a few ms to end a session that has just loaded a database: not one after the other
            await asyncio.shield(conn.close(timeout=5))
        except Exception:
            conn.terminate()

    await asyncio.gather(*(close(conn) for conn in conns))


def _full_copy_due(record: dict, rc) -> str:
    """A full copy is due by time (``replication.full_copy_interval``), whatever changed."""
    if not rc.full_copy_interval or not record:
        return ""
    if not record.get("full_copy_at"):
        return "no full copy recorded"
    age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(record["full_copy_at"])).total_seconds()
    if age >= rc.full_copy_interval:
        return f"the last full copy is older than replication.full_copy_interval ({rc.full_copy_interval:g} s)"
    return ""


def _full_copy_reason(record, fingerprint, rec_master, m_check, rec_slave, s_check) -> str:
    """Why the recorded state cannot be used to copy only the changed tables ("" when it can)."""
    if not record:
        return "first replication"
    if record.get("fingerprint") != fingerprint:
        return "schema or exclusions changed since the last replication"
    problem = record_problem(rec_master, m_check)
    if problem:
        return f"master: {problem}"
    problem = record_problem(rec_slave, s_check)
    if problem:
        return f"slave: {problem}"
    return ""
