"""The change test: which replicated tables changed since the last copy, on either side.

Why not a content digest: hashing every row costs about as much as copying
it. Why not pg_stat counters alone: they are flushed late and reset on crash,
so a change can hide behind them for a while (the continuous checks still use
them, read before the last exact check's snapshot, as a reason to skip: see
``Activity`` at the end). The exact test relies on MVCC itself:

* At the last successful copy it recorded, for each side, the snapshot the
  copy ran in (``pg_current_snapshot()``, plus on the slave the copying
  transaction's own xid) and each table's row count.
* Any row inserted or updated since then carries an ``xmin`` that snapshot
  does not see. A row deleted since then lowers the count (a delete plus an
  insert brings a new ``xmin``). TRUNCATE and a reload from backup create
  rows with new ``xmin`` too.

So a table is unchanged only if its count is the recorded one and every
visible row's ``xmin`` was visible to the recorded snapshot. The scan reads
only tuple headers (no text conversion), which is why it is cheap. The
recorded state is tied to each cluster's ``system_identifier`` and database
oid (a reinstalled or replaced database means a full copy), and a snapshot
whose xmax is ahead of the server's (a cluster restored from a file copy)
means a full copy as well. The same scan runs on the slave, so changes made
there (by a takeover, or by hand) are undone at the next run.

``xmin`` is a 32-bit xid, compared through ``age()`` against a reference
widened to an xid8, which is exact as long as the recorded snapshot is less
than 2^30 transactions old (older records mean a full copy).

A cheaper test comes first: ``pg_current_wal_insert_lsn()``. Every committed
change, DDL included, writes WAL, so a database whose WAL insert position is
the one recorded right after the last copy has not changed at all (only a
bare ``nextval`` may not write WAL: sequences are always compared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wazod.replication.catalog import quote_ident

MAX_RECORD_AGE_XIDS = 1 << 30  # ages are int4: stay far below 2^31 (plus what ran during the scan)


@dataclass
class SideState:
    """What one side looked like right after the last successful copy."""

    system_identifier: str | None
    database_oid: int
    snapshot: str  # pg_snapshot text, e.g. "812:815:813"
    own_xid: str | None = None  # the slave's copying transaction (its rows are known)
    counts: dict[str, int] = field(default_factory=dict)
    lsn: str | None = None  # WAL insert position with exactly this content (None: not known)

    def to_dict(self) -> dict[str, Any]:
        return {"system_identifier": self.system_identifier, "database_oid": self.database_oid,
                "snapshot": self.snapshot, "own_xid": self.own_xid, "counts": self.counts, "lsn": self.lsn}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SideState:
        return cls(d.get("system_identifier"), int(d["database_oid"]), d["snapshot"], d.get("own_xid"),
                   {k: int(v) for k, v in (d.get("counts") or {}).items()}, d.get("lsn"))


@dataclass
class Position:
    """Where a database is: its identity and its WAL insert position."""

    identity: tuple[str | None, int]
    lsn: str

    def same_as(self, recorded: SideState | None) -> bool:
        """Nothing at all was written since ``recorded`` (exact: every change writes WAL)."""
        return (recorded is not None and recorded.lsn is not None and self.identity[0] is not None
                and (recorded.system_identifier, recorded.database_oid) == self.identity
                and recorded.lsn == self.lsn)


@dataclass
class SideCheck:
    identity: tuple[str | None, int]
    snapshot: str
    xmax: int
    counts: dict[str, int]
    changed: dict[str, int]  # table -> rows not seen by the recorded snapshot
    lsn: str = ""  # WAL insert position read after the snapshot was taken

    def unchanged_since(self, recorded: SideState | None, tables: list[str]) -> bool:
        """Nothing was written up to this snapshot since ``recorded``: its rows need no reading."""
        return (recorded is not None and recorded.lsn is not None and self.identity[0] is not None
                and (recorded.system_identifier, recorded.database_oid) == self.identity
                and recorded.lsn == self.lsn and set(recorded.counts) == set(tables))


MARKER_SQL = """
CREATE SCHEMA IF NOT EXISTS wazod;
CREATE TABLE IF NOT EXISTS wazod.replication (token text NOT NULL, replicated_at timestamptz NOT NULL);
COMMENT ON TABLE wazod.replication IS 'written by wazod at each master to slave copy; do not edit';
DELETE FROM wazod.replication;
INSERT INTO wazod.replication VALUES ('{token}', now());
"""


def write_marker_sql(token: str) -> str:
    """Statements (run inside the slave's copy transaction) leaving ``token`` as the slave's marker.

    The marker ties the recorded state to this very database content: a
    slave restored from a backup, cloned (a clone keeps the cluster's
    system identifier) or written by another master holds another token, and
    gets a full copy. It lives in schema ``wazod``, outside the replicated
    schema ``public``.
    """
    if not token.isalnum():
        raise ValueError("marker token must be alphanumeric")
    return MARKER_SQL.format(token=token)


async def read_marker(conn, exists: bool | None = None) -> str | None:
    if exists is None:
        exists = await conn.fetchval("SELECT to_regclass('wazod.replication')") is not None
    if not exists:
        return None
    return await conn.fetchval("SELECT token FROM wazod.replication LIMIT 1")


async def position(conn) -> Position:
    lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
    return Position(await identity(conn), lsn)


async def identity(conn) -> tuple[str | None, int]:
    # Asked first, not tried: a refused call inside the copy's transaction would abort it.
    # No privilege: the record can never be trusted, every run copies.
    oid, allowed = await conn.fetchrow("SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), "
                                       "has_function_privilege('pg_control_system()', 'EXECUTE')")
    sysid = await conn.fetchval("SELECT system_identifier::text FROM pg_control_system()") if allowed else None
    return sysid, int(oid)


def _check_sql(tables: list[str]) -> str:
    """One statement, hence one snapshot (also under READ COMMITTED).

    The first row carries that snapshot; then one row per table: its count and
    its rows whose ``xmin`` the recorded snapshot ($1) did not see, other than
    the recorded own xid ($2). ``age(xmin)`` (an int4, cheap) measures each
    row's xid from R, the transaction's stable reference xid, which is taken
    after the statement's snapshot; R is widened to an xid8 (r8) from the
    snapshot's xmax, and the recorded snapshot's bounds are turned into ages
    from r8 once per statement, so the per-row test is three integer
    comparisons. A negative age is an xid older than 2^31: older than any
    recorded snapshot ``record_problem`` accepts, hence seen.
    """
    head = """WITH z AS (
    SELECT pg_current_snapshot() AS snap, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS c,
           ((3 + age('3'::xid))::bigint + 4294967296) % 4294967296 AS r_low),
r AS (SELECT snap, c, c + ((r_low - c % 4294967296 + 4294967296) % 4294967296) AS r8 FROM z),
k AS (SELECT snap, c,
             r8 - pg_snapshot_xmax($1::text::pg_snapshot)::text::bigint AS seen_below,
             ARRAY(SELECT (r8 - x::text::bigint)::int FROM pg_snapshot_xip($1::text::pg_snapshot) x) AS unseen,
             r8 - $2::text::bigint AS own
      FROM r)
"""
    # the WAL position is read during the statement, hence after its snapshot was taken
    parts = ["SELECT -1 AS i, 0::bigint AS n, 0::bigint AS changed, snap::text AS snap, c AS xmax, "
             "pg_current_wal_insert_lsn()::text AS lsn FROM k"]
    parts += [
        f"SELECT {i}, count(*), count(*) FILTER (WHERE (a BETWEEN 0 AND k.seen_below OR a = ANY(k.unseen)) "
        f"AND a IS DISTINCT FROM k.own), NULL, NULL, NULL FROM (SELECT age(xmin) AS a FROM public.{quote_ident(t)}) x, k"
        for i, t in enumerate(tables)
    ]
    return head + " UNION ALL ".join(parts)


_SNAPSHOT_SQL = ("SELECT -1 AS i, pg_current_snapshot()::text AS snap, "
                 "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, "
                 "pg_current_wal_insert_lsn()::text AS lsn")


async def scan(conn, tables: list[str], recorded: SideState | None) -> SideCheck:
    """Row counts and rows unseen by the recorded snapshot, for ``tables``, in one statement.

    With no tables, only the statement's snapshot and WAL position. That
    statement must not call ``age()``: its reference xid is fixed, per
    transaction, at the first call, and must be taken after the snapshot of
    the statement that reads the rows (or a row committed in between would
    look older than 2^31 transactions instead of new).
    """
    ident = await identity(conn)
    usable = recorded is not None and bool(recorded.snapshot)
    if tables:
        rows = await conn.fetch(_check_sql(tables), recorded.snapshot if usable else None,
                                recorded.own_xid if usable else None)
    else:
        rows = await conn.fetch(_SNAPSHOT_SQL)
    counts: dict[str, int] = {}
    changed: dict[str, int] = {}
    snapshot, xmax, lsn = "", 0, ""
    for r in rows:
        if r["i"] < 0:
            snapshot, xmax, lsn = r["snap"], int(r["xmax"]), r["lsn"]
            continue
        name = tables[r["i"]]
        counts[name] = r["n"]
        if r["changed"]:
            changed[name] = r["changed"]
    return SideCheck(ident, snapshot, xmax, counts, changed, lsn)


def snapshot_xmax(snapshot: str) -> int:
    return int(snapshot.split(":")[1])


def snapshot_xmin(snapshot: str) -> int:
    return int(snapshot.split(":")[0])


def record_problem(recorded: SideState | None, check: SideCheck) -> str | None:
    """Why the recorded state of one side cannot be trusted (None: it can)."""
    if recorded is None:
        return "no previous replication recorded"
    if check.identity[0] is None:
        return "cannot read the cluster's system identifier (connect as a superuser)"
    if (recorded.system_identifier, recorded.database_oid) != check.identity:
        return "the database is not the one of the last replication"
    if check.xmax < snapshot_xmax(recorded.snapshot):
        return "the database went back in time (restored from a file copy?)"
    if check.xmax - snapshot_xmin(recorded.snapshot) >= MAX_RECORD_AGE_XIDS:
        return "too many transactions since the last replication"
    return None


def changed_tables(recorded: SideState, check: SideCheck) -> set[str]:
    out = set(check.changed)
    for table, n in check.counts.items():
        if recorded.counts.get(table) != n:
            out.add(table)
    return out


async def read_sequences(conn, sequences: list[str]) -> dict[str, list]:
    """``{name: [last_value, is_called]}`` for each sequence (one round trip)."""
    if not sequences:
        return {}
    sql = " UNION ALL ".join(
        f"SELECT {i} AS i, last_value, is_called FROM public.{quote_ident(s)}" for i, s in enumerate(sequences))
    return {sequences[r["i"]]: [int(r["last_value"]), bool(r["is_called"])] for r in await conn.fetch(sql)}


# --- the continuous checks' cheap test -----------------------------------------------------------------

_ACTIVITY_SQL = """
SELECT pg_current_wal_insert_lsn()::text AS lsn,
       (SELECT oid FROM pg_database WHERE datname = current_database()) AS dboid,
       {sysid} AS sysid,
       to_regclass('wazod.replication') IS NOT NULL AS has_marker,
       current_setting('track_counts') = 'on' AS counting,
       pg_postmaster_start_time()::text AS started,
       (SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database()) AS reset,
       (SELECT coalesce(json_object_agg(c.relname, json_build_array(
                c.relfilenode, c.xmin::text, pg_stat_get_tuples_inserted(c.oid),
                pg_stat_get_tuples_updated(c.oid), pg_stat_get_tuples_deleted(c.oid))), '{}')
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S')
          AND NOT (c.relname = ANY($1::text[]))) AS relations
"""


@dataclass
class Activity:
    """What was written to the replicated tables of one side, as far as PostgreSQL's counters tell.

    Per table or sequence: its relation file (a TRUNCATE, a rewrite), its
    ``pg_class`` row's xmin (any DDL on it: a new column, a default...;
    VACUUM and ANALYZE update that row in place, without a new xmin) and the
    cumulative counts of rows inserted, updated and deleted (aborted writes
    included). Plus the server's start time and the statistics' reset time:
    the counters are lost by a crash and zeroed by ``pg_stat_reset()``.

    Why it is only used by the continuous checks, as a reason to skip: the
    counters are flushed by each session after its transaction ends (within
    about a second, up to a minute under contention), so a change can show up
    a little late; it never goes unseen, because the counters compared are the
    ones read *before* the snapshot of the last exact check (a change
    committed after that snapshot moves them later, whenever it is flushed),
    and the scheduled runs keep the exact test (WAL position, then rows).
    Writes to the excluded tables (calls, purges) and vacuuming move nothing
    here, so the check stays cheap under activity.
    """

    counting: bool
    started: str
    reset: str | None
    relations: dict[str, list]

    def to_dict(self) -> dict[str, Any]:
        return {"counting": self.counting, "started": self.started, "reset": self.reset,
                "relations": self.relations}

    def same_as(self, recorded: dict | None) -> bool:
        return (self.counting and isinstance(recorded, dict) and recorded.get("counting") is True
                and self.to_dict() == recorded)


async def where(conn, excluded: list[str]) -> tuple[Position, Activity, bool]:
    """The side's position, its activity counters and whether it has a marker table: one round trip.

    (The system identifier needs ``pg_control_system()``; without the
    privilege it is None, as in ``identity``, and the record is never trusted.)
    """
    import json

    sysid = "(SELECT system_identifier::text FROM pg_control_system())"
    try:
        r = await conn.fetchrow(_ACTIVITY_SQL.replace("{sysid}", sysid), list(excluded))
    except asyncpg_privilege_error():
        r = await conn.fetchrow(_ACTIVITY_SQL.replace("{sysid}", "NULL::text"), list(excluded))
    relations = json.loads(r["relations"]) if isinstance(r["relations"], str) else dict(r["relations"] or {})
    pos = Position((r["sysid"], int(r["dboid"])), r["lsn"])
    return pos, Activity(bool(r["counting"]), r["started"], r["reset"], relations), bool(r["has_marker"])


def asyncpg_privilege_error():
    import asyncpg

    return asyncpg.InsufficientPrivilegeError
