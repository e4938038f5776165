"""Streaming the master's rows into the slave, inside the slave's one transaction.

The master's ``COPY ... TO STDOUT`` output is piped, chunk by chunk, into the
slave's ``COPY ... FROM STDIN`` (binary format, text for the few column
types whose binary form embeds cluster-specific type OIDs). Reading runs
ahead of writing through a bounded queue, so the master side never waits on
the slave's index maintenance and memory stays bounded.

Nothing here commits: the caller owns the slave transaction, so a failure at
any point (master killed, link cut, cancellation) is a rollback and the slave
keeps its previous data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wazod.replication.catalog import Table, quote_ident

QUEUE_CHUNKS = 512  # bounded read-ahead (asyncpg hands over chunks of at most a few hundred KB)
_END = object()


@dataclass
class CopyStats:
    rows: int = 0
    bytes: int = 0
    per_table: dict[str, int] = field(default_factory=dict)


class SourceFailed(Exception):
    """Reading from the master failed (server gone, link cut) while the slave was loading."""


async def clear_tables(slave, truncate: set[str], delete: set[str]) -> None:
    """Empty the tables about to be reloaded: one TRUNCATE, DELETE where TRUNCATE cannot go."""
    if truncate:
        await slave.execute("TRUNCATE " + ", ".join(f"public.{quote_ident(t)}" for t in sorted(truncate)))
    for t in sorted(delete):
        await slave.execute(f"DELETE FROM public.{quote_ident(t)}")


async def master_sizes(master, tables: list[str]) -> dict[str, tuple[int, bool]]:
    """``{table: (bytes on disk, may hold a row)}`` (held locked until the end of the master's transaction).

    A table without a single page holds no row and needs no COPY at all (65
    of a real Wazo database's 108 replicated tables are empty); the size
    decides whether rebuilding its indexes after the load pays
    (``replication.rebuild_min_size``). Only the file sizes are read (a
    ``stat`` per table): an ``EXISTS`` per table made the statement plan 108
    sub-queries, 15 ms on a real-shaped database, for the rare table whose
    pages hold no live row (its COPY then carries no row). The ``ACCESS
    SHARE`` locks, kept until the copy ends, hold off a ``TRUNCATE`` or a
    rewrite of a table not yet read (neither is MVCC-safe).
    """
    if not tables:
        return {}
    await master.execute("LOCK TABLE " + ", ".join(f"public.{quote_ident(t)}" for t in tables)
                         + " IN ACCESS SHARE MODE")
    rows = await master.fetch(
        "SELECT t, pg_relation_size(format('public.%I', t)::regclass) AS size FROM unnest($1::text[]) AS t", tables)
    return {r["t"]: (int(r["size"]), int(r["size"]) > 0) for r in rows}


async def stream_tables(master, slave, tables: list[Table], frozen: set[str],
                        after_table: Callable[[str], Awaitable[None]] | None = None,
                        prepare: Callable[[], Awaitable[None]] | None = None) -> CopyStats:
    """Copy ``tables`` from ``master`` to ``slave`` (both already in their transactions).

    ``after_table(name)`` runs on the slave right after each table is loaded
    (its indexes are built there), while the reader keeps filling the queue.
    ``prepare()`` runs on the slave first, while the master already reads the
    first tables.
    """
    stats = CopyStats()
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def produce() -> None:
        try:
            for table in tables:
                async def put(chunk: bytes) -> None:
                    await queue.put(chunk)

                await master.copy_from_table(table.name, schema_name="public", columns=table.copy_columns,
                                             output=put, format=table.copy_format)
                await queue.put(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # hand the failure to the slave side, which is waiting on the queue
            await queue.put(e)
            raise

    async def chunks(table: Table):
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise SourceFailed(f"reading {table.name} from the master failed: {item}") from item
            stats.bytes += len(item)
            yield item

    producer = asyncio.create_task(produce(), name="replication-reader")
    try:
        if prepare is not None:
            await prepare()
        for table in tables:
            status = await slave.copy_to_table(table.name, schema_name="public", columns=table.copy_columns,
                                               source=chunks(table), format=table.copy_format,
                                               freeze=table.name in frozen)
            n = int(status.split()[-1]) if status else 0
            stats.per_table[table.name] = n
            stats.rows += n
            if after_table is not None:
                await after_table(table.name)
        await producer
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(BaseException):
            await producer  # also retrieves its exception, reported through the slave side
    return stats


async def set_sequences(slave, values: dict[str, list]) -> None:
    """Give the slave's sequences the master's values, transactionally.

    ``setval`` alone is not rolled back with the transaction; ``ALTER SEQUENCE
    ... RESTART`` first gives the sequence a new relation file inside the
    transaction, so the following ``setval`` is undone too if the copy fails.
    """
    statements = []
    for name, (last_value, is_called) in sorted(values.items()):
        q = f"public.{quote_ident(name)}"
        statements.append(f"ALTER SEQUENCE {q} RESTART")
        # int() and a bool literal: nothing but numbers reaches this text
        statements.append(f"SELECT setval('{q.replace(chr(39), chr(39) * 2)}', {int(last_value)}, "
                          f"{'true' if is_called else 'false'})")
    if statements:
        await slave.execute(";\n".join(statements))  # one round trip
