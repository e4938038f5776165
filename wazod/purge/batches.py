"""Deleting one table's old rows in short batches, each its own transaction.

Why batches: wazo-purge-db deletes everything in one transaction, so a purge
after a long pause holds a huge transaction for minutes. Here each batch
deletes one key range, commits, and the next starts where it stopped, so no
batch rereads what the previous ones saw, and the batch size adapts after
every batch to stay near ``batch_seconds``. DELETE takes row locks and the
table's ROW EXCLUSIVE lock, which INSERT shares: Asterisk's inserts go on.

The walk follows what PostgreSQL's planner would do for the single DELETE:

* few rows to delete and an index on the time column: keyset on that index
  (``time >= last AND time <= upper``, upper being the size-th oldest time);
* a large share of the table (after a long pause, or a lowered retention) or
  no index on the time column: block ranges of the heap (TID range scans,
  ``ctid >= '(b,0)' AND ctid < '(b+n,0)'``), one sequential pass in all, as
  fast as the single DELETE's sequential scan;
* PostgreSQL before 14 without such an index: ranges of the integer primary key.

With archives, the rows reach the archive sinks from ``COPY (DELETE ...
RETURNING *) TO STDOUT``: the statement that deletes is the one that produces
the archived rows, and the sinks make them durable before the batch commits.

Cancellation (SIGTERM) lets the running batch finish (it is short) and then
propagates: the table is left consistent, every deleted row archived.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from wazod.logsetup import get_logger
from wazod.purge.archives import ArchiveFailed, ArchiveSink
from wazod.purge.tables import CascadeChild, TablePlan, Walk, quote_ident

log = get_logger("purge")

RETRIES = 3  # attempts of a batch rolled back by a deadlock or serialization failure
FIRST_BATCH_ROWS = 10000
# a heap-block batch reads kept rows too: where few of its rows go, it may read up to this many times batch_rows
MAX_READ_FACTOR = 4
MIN_BATCH_ROWS = 100
# Above this estimated share of the table, reading every block once costs less
# than finding the rows through the index (measured: a heap block walk reads a
# row in ~1/4 of the time an index walk takes to delete one).
HEAP_WALK_SHARE = 0.25


@dataclass
class TableProgress:
    deleted: int = 0
    batches: int = 0
    longest_batch: float = 0.0
    walk: Walk | None = None


async def choose_walk(conn, plan: TablePlan, cutoff: dt.datetime) -> Walk:
    if plan.indexed:
        if not plan.tid_range:
            return "time index"
        reltuples = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = $1", plan.oid)
        if reltuples is not None and reltuples < 0:  # never analyzed: estimates would be guesses
            await conn.execute(f"ANALYZE {plan.qtable}")
            reltuples = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = $1", plan.oid)
        if reltuples is None or reltuples <= 0:
            return "time index"
        explain = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {plan.qtable} WHERE {plan.qcolumn} < $1", cutoff)
        estimate = json.loads(explain)[0]["Plan"]["Plan Rows"]
        return "heap blocks" if estimate / reltuples >= HEAP_WALK_SHARE else "time index"
    return "heap blocks" if plan.tid_range else "primary key"


class _Batcher:
    def __init__(self, conn, plan: TablePlan, cutoff: dt.datetime, walk: Walk, *, max_rows: int,
                 target_seconds: float, sinks: list[tuple[str, ArchiveSink]], progress: TableProgress,
                 child_sinks: list[tuple[CascadeChild, list[tuple[str, ArchiveSink]]]] = ()):
        self.conn = conn
        self.plan = plan
        self.cutoff = cutoff
        self.walk = walk
        self.max_rows = max_rows
        self.target = target_seconds
        self.sinks = sinks
        self.child_sinks = list(child_sinks)
        self._last_copy_count = 0
        self.progress = progress
        self.max_size = max_rows
        self.size = min(FIRST_BATCH_ROWS, self.max_size)
        self.position: Any = None
        self.end: Any = None
        self.rows_per_block = 1.0
        self.done = False

    # -- one batch -----------------------------------------------------------
    async def _delete(self, predicate: str, args: list[Any]) -> int:
        """Delete (and archive) the rows matching ``predicate`` in one transaction; returns how many."""
        sql = f"DELETE FROM {self.plan.qtable} WHERE {predicate}"
        if not self.sinks:
            # one statement is one transaction: a single round trip (the statement text is stable, so
            # asyncpg's prepared-statement cache serves every batch after the first)
            status = await self.conn.execute(sql, *args)
            return int(status.split()[-1])
        appended: list[ArchiveSink] = []
        # with cascaded children to archive, one snapshot for their rows and ours: REPEATABLE READ
        # (a child row added meanwhile makes the cascade fail with a serialization error: retried)
        isolation = "repeatable_read" if self.child_sinks else "read_committed"
        try:
            async with self.conn.transaction(isolation=isolation):
                outputs: list[tuple[list[tuple[str, ArchiveSink]], bytes]] = []
                for child, sinks in self.child_sinks:
                    rows = await self._copy_out(
                        f"SELECT c.* FROM {child.table} c WHERE c.{quote_ident(child.fk)} IN "
                        f"(SELECT {quote_ident(child.parent_key)} FROM {self.plan.qtable} WHERE {_inline(predicate, args)})")
                    outputs.append((sinks, rows))
                data = await self._copy_out(_inline(sql, args) + " RETURNING *")
                count = self._last_copy_count
                outputs.append((self.sinks, data))
                for sinks, rows in outputs:
                    if not rows:
                        continue
                    for name, sink in sinks:
                        try:
                            await asyncio.to_thread(sink.append, rows)
                        except Exception as e:
                            raise ArchiveFailed(f"archive {name} failed: {type(e).__name__}: {e}") from e
                        appended.append(sink)
                return count
        except BaseException:
            for sink in appended:  # rolled back: these rows are still in the table
                sink.discard_last()
            raise

    async def _copy_out(self, query: str) -> bytes:
        chunks: list[bytes] = []

        async def collect(data: bytes) -> None:
            chunks.append(bytes(data))

        status = await self.conn.copy_from_query(query, output=collect, format="csv")
        self._last_copy_count = int(status.split()[-1])
        return b"".join(chunks)

    async def _time_batch(self) -> int:
        """Rows with last <= time <= the size-th oldest remaining time (deleted rows are invisible: no overlap)."""
        col, table = self.plan.qcolumn, self.plan.qtable
        args: list[Any] = [self.cutoff, int(self.size)]
        lower_sql = ""
        if self.position is not None:
            args.append(self.position)
            lower_sql = f"{col} >= $3 AND "
        probe = f"SELECT max({col}) FROM (SELECT {col} FROM {table} WHERE {lower_sql}{col} < $1 ORDER BY {col} LIMIT $2) s"
        if self.sinks:
            upper = await self.conn.fetchval(probe, *args)
            deleted = 0
            if upper is not None:
                deleted = await self._delete(f"{lower_sql}{col} <= ${len(args) + 1} AND {col} < $1", [*args, upper])
        else:  # probe and delete in one statement, one round trip
            row = await self.conn.fetchrow(
                f"WITH upper AS ({probe}), d AS (DELETE FROM {table} WHERE {lower_sql}{col} <= (SELECT * FROM upper) "
                f"AND {col} < $1 RETURNING 1) SELECT (SELECT * FROM upper) AS upper, (SELECT count(*) FROM d) AS n",
                *args,
            )
            upper, deleted = row["upper"], row["n"]
        if upper is None or (deleted == 0 and upper == self.position):
            # nothing left, or what is left will not go (a trigger or rule keeps it): do not spin on it
            self.done = True
            return deleted
        self.position = upper
        return deleted

    async def _block_batch(self) -> int:
        """Heap blocks [position, position + n) read once, by a TID range scan."""
        blocks = max(1, int(self.size / self.rows_per_block))
        lower, upper = self.position, self.position + blocks
        deleted = await self._delete(
            f"ctid >= $2::tid AND ctid < $3::tid AND {self.plan.qcolumn} < $1",
            [self.cutoff, (lower, 0), (upper, 0)],
        )
        self.position = upper
        self.done = upper >= self.end  # blocks 0 .. end-1
        # size counts rows read; keep the rows *deleted* per batch near batch_rows: where this batch
        # deleted few of the rows it read, the next may read more (reading costs less than deleting)
        share = deleted / max(1.0, blocks * self.rows_per_block)
        self.max_size = int(self.max_rows / max(share, 1 / MAX_READ_FACTOR))
        return deleted

    async def _pk_batch(self) -> int:
        """Primary-key range [position, position + size)."""
        lower, upper = self.position, self.position + int(self.size)
        deleted = await self._delete(
            f"{self.plan.qpk} >= $2 AND {self.plan.qpk} < $3 AND {self.plan.qcolumn} < $1",
            [self.cutoff, lower, upper],
        )
        self.position = upper
        self.done = upper > self.end  # keys lo .. end, inclusive
        return deleted

    # -- the loop ------------------------------------------------------------
    async def run(self) -> None:
        if self.walk == "primary key":
            bounds = await self.conn.fetchrow(
                f"SELECT min({self.plan.qpk}) AS lo, max({self.plan.qpk}) AS hi FROM {self.plan.qtable}")
            if bounds["lo"] is None:
                return
            self.position, self.end = bounds["lo"], bounds["hi"]
        elif self.walk == "heap blocks":
            blocks = await self.conn.fetchval(
                "SELECT pg_relation_size($1::oid) / current_setting('block_size')::int", self.plan.oid)
            # blocks added after this instant hold rows inserted during the purge: new, never older than the cutoff
            self.position, self.end = 0, blocks
            if blocks == 0:
                return
            # rows per block, from the first blocks (statistics may be missing or stale)
            sample = min(blocks, 32)
            rows = await self.conn.fetchval(
                f"SELECT count(*) FROM {self.plan.qtable} WHERE ctid < '({sample},0)'::tid")
            self.rows_per_block = max(1.0, rows / sample)
        while not self.done:
            for attempt in range(1, RETRIES + 1):
                try:
                    await finish_even_if_cancelled(self._step())
                    break
                except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as e:
                    # the batch was rolled back whole; another try usually goes through
                    if attempt == RETRIES:
                        raise
                    log.warning("purge batch rolled back, retrying", table=self.plan.table, error=str(e))
                    await asyncio.sleep(0.1 * attempt)

    async def _step(self) -> None:
        """One batch, counted even when a cancellation is waiting for it to end."""
        t0 = time.monotonic()
        batch = {"time index": self._time_batch, "heap blocks": self._block_batch,
                 "primary key": self._pk_batch}[self.walk]
        deleted = await batch()
        elapsed = time.monotonic() - t0
        self.progress.deleted += deleted
        if deleted or not self.done:
            self.progress.batches += 1
            self.progress.longest_batch = max(self.progress.longest_batch, elapsed)
        self._adapt(elapsed)

    def _adapt(self, elapsed: float) -> None:
        """Aim each batch at the target duration: grow at most 2x, shrink as much as needed."""
        factor = 2.0 if elapsed <= 0 else min(2.0, (self.target * 0.8) / elapsed)
        if factor < 1.0 or elapsed < self.target * 0.5:
            self.size = max(MIN_BATCH_ROWS, min(self.max_size, int(self.size * factor)))


def _literal(value: Any) -> str:
    """SQL literal of a batch bound: COPY takes no parameters, and these are only ints, tids and timestamps."""
    if isinstance(value, tuple) and len(value) == 2 and all(type(v) is int for v in value):
        return f"'({value[0]},{value[1]})'"
    if isinstance(value, bool) or not isinstance(value, (int, dt.datetime)):
        raise TypeError(f"unexpected batch bound {value!r}")
    if isinstance(value, int):
        return str(value)
    return f"'{value.isoformat()}'::" + ("timestamptz" if value.tzinfo else "timestamp")


def _inline(sql: str, args: list[Any]) -> str:
    """``sql`` with $1..$n replaced by literals (highest first, so $1 never eats the start of $10)."""
    for i in range(len(args), 0, -1):
        sql = sql.replace(f"${i}", _literal(args[i - 1]))
    return sql


async def finish_even_if_cancelled(coro):
    """Run ``coro`` (one batch) to its end even if we are cancelled meanwhile, then let the cancellation through.

    A batch is short and bounded; finishing it beats interrupting the server
    in mid-statement, and either way the table stays consistent.
    """
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            try:
                await task  # a second cancellation cancels the batch itself: it rolls back
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
        raise


async def purge_table(conn, plan: TablePlan, cutoff: dt.datetime, *, max_rows: int, target_seconds: float,
                      sinks: list[tuple[str, ArchiveSink]], progress: TableProgress,
                      child_sinks: list[tuple[CascadeChild, list[tuple[str, ArchiveSink]]]] = ()) -> None:
    walk = await choose_walk(conn, plan, cutoff)
    progress.walk = walk
    await _Batcher(conn, plan, cutoff, walk, max_rows=max_rows, target_seconds=target_seconds,
                   sinks=sinks, progress=progress, child_sinks=child_sinks).run()
