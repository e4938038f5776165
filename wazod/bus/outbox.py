"""One output's view of the durable event store (``<state_dir>/events.sqlite3``).

Why a separate reader: ``wazod.events.EventStore`` is the writer shared by the
daemon and CLI processes; an output (MQTT, each SNMP target) needs its own
cursor, the stored JSON bodies as they are (publishing the exact bytes that
were stored, without a decode/encode round trip), and a bound on how far it
may fall behind. Events are acknowledged by moving the cursor, only after the
output confirmed them, so a crash at any point re-sends rather than loses.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from wazod.events import STORE_SCHEMA
from wazod.logsetup import get_logger

log = get_logger("bus")

STORE_NAME = "events.sqlite3"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    name: str
    body: str  # the envelope, JSON, exactly as the emitter stored it


def store_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / STORE_NAME


class OutboxReader:
    """Cursor ``consumer`` over the event store; cheap calls, safe to make from the event loop."""

    def __init__(self, path: str | Path, consumer: str, *, readonly: bool = False):
        self.path = Path(path)
        self.consumer = consumer
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"{self.path}: no event store (no event was ever emitted on this node)")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5, isolation_level=None)
        else:
            self._db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # a cursor lost to a power cut only means re-sending (at least once): no fsync per ack
            self._db.execute("PRAGMA synchronous=NORMAL")
            # the emitter normally creates these; an output may start first
            self._db.executescript(STORE_SCHEMA)
        self.dropped = 0  # events skipped because the outbox overflowed, since start
        self.closed = False
        self._warned_filling = False

    def close(self) -> None:
        self._db.close()
        self.closed = True

    # -- reading -----------------------------------------------------------
    def last_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        return int(row[0]) if row else 0

    def cursor(self) -> int | None:
        """The last acknowledged seq, or None when this consumer never acknowledged anything."""
        row = self._db.execute("SELECT seq FROM cursors WHERE consumer=?", (self.consumer,)).fetchone()
        return int(row[0]) if row else None

    def after(self, seq: int, limit: int = 500) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT seq, name, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [StoredEvent(int(s), n, b) for s, n, b in rows]

    def last(self, count: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT seq, name, body FROM events ORDER BY seq DESC LIMIT ?", (count,)
        ).fetchall()
        return [StoredEvent(int(s), n, b) for s, n, b in reversed(rows)]

    def pending(self, limit: int = 500) -> list[StoredEvent]:
        return self.after(self.cursor() or 0, limit)

    def depth(self) -> int:
        return max(0, self.last_seq() - (self.cursor() or 0))

    # -- moving the cursor -------------------------------------------------
    def ack(self, seq: int) -> None:
        self._db.execute(
            "INSERT INTO cursors VALUES (?, ?) ON CONFLICT(consumer) DO UPDATE SET seq=max(seq, excluded.seq)",
            (self.consumer, seq),
        )

    def adopt_if_new(self, old_consumer: str) -> None:
        """A consumer seen for the first time takes over ``old_consumer``'s position, if it has one
        (an output renamed: what the old name had not sent yet is still sent)."""
        if self.cursor() is None:
            row = self._db.execute("SELECT seq FROM cursors WHERE consumer=?", (old_consumer,)).fetchone()
            if row:
                self.ack(int(row[0]))

    def start_after_if_new(self, seq: int) -> None:
        """A consumer seen for the first time starts after ``seq`` (no replay of older history)."""
        if self.cursor() is None:
            self.ack(seq)

    def enforce_bound(self, max_pending: int) -> int:
        """Skip the oldest unsent events beyond ``max_pending``; returns how many were dropped now.

        The outbox must not grow without end while an output is unreachable for
        days; losing the oldest is the lesser evil, and it is said loudly.
        """
        cursor = self.cursor() or 0
        last = self.last_seq()
        excess = last - cursor - max_pending
        if excess <= 0:
            waiting = last - cursor
            if waiting >= max_pending * 0.8 and not self._warned_filling:
                self._warned_filling = True
                log.warning("outbox filling: the output is not keeping up", consumer=self.consumer,
                            pending=waiting, max_pending=max_pending)
            elif waiting < max_pending * 0.5:
                self._warned_filling = False
            return 0
        self.ack(cursor + excess)
        self.dropped += excess
        log.error(
            "outbox full: oldest unsent events dropped", consumer=self.consumer, dropped=excess,
            first_seq=cursor + 1, last_seq=cursor + excess, max_pending=max_pending,
        )
        return excess

    def prune(self, keep: int) -> int:
        """Delete stored events older than the newest ``keep`` (history for ``wazod events``)."""
        cur = self._db.execute("DELETE FROM events WHERE seq <= ?", (self.last_seq() - keep,))
        return cur.rowcount
