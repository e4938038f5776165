"""The change test: which replicated tables changed since the last copy, on either side.

Why not a content digest: hashing every row costs about as much as copying
it. Why not pg_stat counters: they are flushed late and reset on crash, so a
change can hide behind them. Instead, wazod relies on MVCC itself:

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

``xmin`` is a 32-bit xid; it is widened to the xid8 of the same epoch window
below the current snapshot's xmax, which is exact for every row written in
the last 2^32 transactions, i.e. for every row that matters here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wazod.replication.catalog import quote_ident

XID_WRAP = 1 << 32
MAX_RECORD_AGE_XIDS = 1 << 31  # beyond this many xids the widening would be ambiguous


@dataclass
class SideState:
    """What one side looked like right after the last successful copy."""

    system_identifier: str | None
    database_oid: int
    snapshot: str  # pg_snapshot text, e.g. "812:815:813"
    own_xid: str | None = None  # the slave's copying transaction (its rows are known)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"system_identifier": self.system_identifier, "database_oid": self.database_oid,
                "snapshot": self.snapshot, "own_xid": self.own_xid, "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SideState:
        return cls(d.get("system_identifier"), int(d["database_oid"]), d["snapshot"], d.get("own_xid"),
                   {k: int(v) for k, v in (d.get("counts") or {}).items()})


@dataclass
class SideCheck:
    identity: tuple[str | None, int]
    snapshot: str
    xmax: int
    counts: dict[str, int]
    changed: dict[str, int]  # table -> rows not seen by the recorded snapshot


async def identity(conn) -> tuple[str | None, int]:
    oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    try:
        sysid = await conn.fetchval("SELECT system_identifier::text FROM pg_control_system()")
    except Exception:  # no privilege: the record can never be trusted, every run copies
        sysid = None
    return sysid, int(oid)


def _check_sql(tables: list[str]) -> str:
    """One statement, hence one snapshot (also under READ COMMITTED): the first row
    carries that snapshot, then one row per table. $1: recorded snapshot, $2: recorded own xid."""
    widened = "((s.c - ((s.c % 4294967296) - x.xmin::text::bigint + 4294967296) % 4294967296)::text::xid8)"
    parts = ["SELECT -1 AS i, 0::bigint AS n, 0::bigint AS changed, s.snap::text AS snap, s.c AS xmax FROM s"]
    parts += [
        f"SELECT {i}, count(*), count(*) FILTER (WHERE NOT (pg_visible_in_snapshot({widened}, $1::text::pg_snapshot)"
        f" OR ({widened} = $2::text::xid8) IS TRUE)), NULL, NULL FROM public.{quote_ident(t)} x, s"
        for i, t in enumerate(tables)
    ]
    head = ("WITH s AS (SELECT pg_current_snapshot() AS snap, "
            "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS c) ")
    return head + " UNION ALL ".join(parts)


async def scan(conn, tables: list[str], recorded: SideState | None) -> SideCheck:
    """Row counts and rows unseen by the recorded snapshot, for ``tables``, in one statement."""
    ident = await identity(conn)
    usable = recorded is not None and bool(recorded.snapshot)
    rows = await conn.fetch(_check_sql(tables), recorded.snapshot if usable else None,
                            recorded.own_xid if usable else None)
    counts: dict[str, int] = {}
    changed: dict[str, int] = {}
    snapshot, xmax = "", 0
    for r in rows:
        if r["i"] < 0:
            snapshot, xmax = r["snap"], int(r["xmax"])
            continue
        name = tables[r["i"]]
        counts[name] = r["n"]
        if r["changed"]:
            changed[name] = r["changed"]
    return SideCheck(ident, snapshot, xmax, counts, changed)


def snapshot_xmax(snapshot: str) -> int:
    return int(snapshot.split(":")[1])


def record_problem(recorded: SideState | None, check: SideCheck) -> str | None:
    """Why the recorded state of one side cannot be trusted (None: it can)."""
    if recorded is None:
        return "no previous replication recorded"
    if check.identity[0] is None:
        return "cannot read the cluster's system identifier (connect as a superuser)"
    if (recorded.system_identifier, recorded.database_oid) != check.identity:
        return "the database is not the one of the last replication"
    gap = check.xmax - snapshot_xmax(recorded.snapshot)
    if gap < 0:
        return "the database went back in time (restored from a file copy?)"
    if gap >= MAX_RECORD_AGE_XIDS:
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
