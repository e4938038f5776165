"""Deleting one table's old rows in short batches, each its own transaction.

Why batches: wazo-purge-db deletes everything in one transaction, so a purge
after a long pause holds millions of row locks and a huge transaction for
minutes. Here each batch deletes a key range, commits, and the next one
starts where it stopped (keyset on the time index, or a primary-key range when
the time column has no index), so no batch rereads what the previous ones
saw and none takes more than about ``batch_seconds``: the batch size adapts
after every batch. DELETE takes only row locks (and the table's ROW EXCLUSIVE
lock, which INSERT shares), so Asterisk's inserts go on all along.

With archives, the rows reach the archive sinks from ``COPY (DELETE ...
RETURNING *) TO STDOUT``: the statement that deletes is the one that produces
the archived rows, and the sinks make them durable before the batch commits.

Cancellation (SIGTERM) lets the running batch finish (commit or roll back, it
is short) and then propagates: the table is left consistent, every deleted
row archived.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from wazod.logsetup import get_logger
from wazod.purge.archives import ArchiveFailed, ArchiveSink
from wazod.purge.tables import TablePlan

log = get_logger("purge")

FIRST_BATCH_ROWS = 1000
MIN_BATCH_ROWS = 100


@dataclass
class TableProgress:
    deleted: int = 0
    batches: int = 0
    longest_batch: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


class _Batcher:
    def __init__(self, conn, plan: TablePlan, cutoff: dt.datetime, *, max_rows: int, target_seconds: float,
                 sinks: list[tuple[str, ArchiveSink]], progress: TableProgress):
        self.conn = conn
        self.plan = plan
        self.cutoff = cutoff
        self.max_rows = max_rows
        self.target = target_seconds
        self.sinks = sinks
        self.progress = progress
        self.size = min(FIRST_BATCH_ROWS, max_rows)

    # -- one batch -----------------------------------------------------------
    async def _delete(self, predicate: str, args: list[Any]) -> int:
        """Delete (and archive) the rows matching ``predicate`` in one transaction; returns how many."""
        sql = f"DELETE FROM {self.plan.qtable} WHERE {predicate}"
        appended: list[ArchiveSink] = []
        try:
            async with self.conn.transaction():
                if not self.sinks:
                    status = await self.conn.execute(sql, *args)
                    return int(status.split()[-1])
                chunks: list[bytes] = []

                async def collect(data: bytes) -> None:
                    chunks.append(bytes(data))

                status = await self.conn.copy_from_query(sql + " RETURNING *", *args, output=collect, format="csv")
                count = int(status.split()[-1])
                if count:
                    data = b"".join(chunks)
                    for name, sink in self.sinks:
                        try:
                            await asyncio.to_thread(sink.append, data)
                        except Exception as e:
                            raise ArchiveFailed(f"archive {name} failed: {type(e).__name__}: {e}") from e
                        appended.append(sink)
                return count
        except BaseException:
            for sink in appended:  # rolled back: these rows are still in the table
                sink.discard_last()
            raise

    async def _time_batch(self, lower: Any) -> tuple[int, Any, bool]:
        """Next keyset batch on the time index: rows with lower < time <= (the size-th oldest time)."""
        col, args = self.plan.qcolumn, [self.cutoff]
        lower_sql = ""
        if lower is not None:
            args.append(lower)
            lower_sql = f"{col} > $2 AND "
        upper = await self.conn.fetchval(
            f"SELECT max({col}) FROM (SELECT {col} FROM {self.plan.qtable} WHERE {lower_sql}{col} < $1 "
            f"ORDER BY {col} LIMIT {int(self.size)}) s",
            *args,
        )
        if upper is None:
            return 0, lower, True
        n = len(args) + 1
        deleted = await self._delete(f"{lower_sql}{col} <= ${n} AND {col} < $1", [*args, upper])
        return deleted, upper, False

    async def _pk_batch(self, lower: int, end: int) -> tuple[int, int, bool]:
        """Next primary-key range [lower, lower + size) among rows older than the cutoff."""
        upper = lower + int(self.size)
        deleted = await self._delete(
            f"{self.plan.qpk} >= $2 AND {self.plan.qpk} < $3 AND {self.plan.qcolumn} < $1",
            [self.cutoff, lower, upper],
        )
        return deleted, upper, upper > end

    # -- the loop ------------------------------------------------------------
    async def run(self) -> None:
        if self.plan.walk == "primary key":
            bounds = await self.conn.fetchrow(
                f"SELECT min({self.plan.qpk}) AS lo, max({self.plan.qpk}) AS hi FROM {self.plan.qtable}"
            )
            if bounds["lo"] is None:
                return
            self.position, self.end = bounds["lo"], bounds["hi"]
        else:
            self.position, self.end = None, None
        self.done = False
        while not self.done:
            await finish_even_if_cancelled(self._step())

    async def _step(self) -> None:
        """One batch, counted even when a cancellation is waiting for it to end."""
        t0 = time.monotonic()
        if self.plan.walk == "primary key":
            deleted, self.position, self.done = await self._pk_batch(self.position, self.end)
        else:
            deleted, self.position, self.done = await self._time_batch(self.position)
        elapsed = time.monotonic() - t0
        self.progress.deleted += deleted
        if deleted or not self.done:
            self.progress.batches += 1
            self.progress.batch_sizes.append(int(self.size))
            self.progress.longest_batch = max(self.progress.longest_batch, elapsed)
        self._adapt(elapsed)

    def _adapt(self, elapsed: float) -> None:
        """Aim each batch at the target duration: grow at most 2x, shrink as much as needed."""
        if elapsed <= 0:
            factor = 2.0
        else:
            factor = min(2.0, (self.target * 0.8) / elapsed)
        if factor < 1.0 or elapsed < self.target * 0.5:
            self.size = max(MIN_BATCH_ROWS, min(self.max_rows, int(self.size * factor)))


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
                      sinks: list[tuple[str, ArchiveSink]], progress: TableProgress) -> None:
    await _Batcher(conn, plan, cutoff, max_rows=max_rows, target_seconds=target_seconds,
                   sinks=sinks, progress=progress).run()
