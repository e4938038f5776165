"""The one way every part of wazod emits events.

``Emitter.emit(name, data)`` builds the envelope of the contract in one place
(``name``, ``origin_uuid``, ``node``, ``seq``, ``timestamp``, ``data``), appends it
to the durable event store (SQLite in ``state_dir``; ``seq`` is allocated there
in a write transaction, so the daemon and CLI commands share one growing
sequence), writes it to the journal, and wakes in-process listeners (the MQTT
publisher, SNMP notifier, demo...). Outputs read the store with their own
cursor, so an event is never lost because an output was down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wazod import event_text
from wazod.fsutil import atomic_write_text
from wazod.logsetup import get_logger
from wazod.statedir import FILE_MODE, ensure_private_dir, private_file

log = get_logger("events")

EVENT_NAMES = {
    "daemon_started", "daemon_stopping", "config_reloaded",
    "ha_master_down", "ha_master_up", "ha_takeover_started", "ha_takeover_completed", "ha_takeover_failed",
    "ha_failback_started", "ha_failback_completed", "ha_failback_failed", "ha_isolated", "ha_flapping",
    "ha_slave_down", "ha_slave_up",
    "berofos_mode_changed", "berofos_failed",
    "replication_completed", "replication_skipped", "replication_failed",
    "sync_completed", "sync_failed", "backup_completed", "backup_failed", "purge_completed", "purge_failed",
    "health_degraded", "health_recovered",
    "maintenance_started", "maintenance_ended",
    "restore_completed", "restore_failed",
}

_WARNING_RE = event_text.WARNING_RE


# The outbox's tables; outputs that open the store themselves (wazod.bus.outbox) create the same.
STORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat()


class EventStore:
    """Durable, ordered event log with per-consumer cursors (the outbox)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        ensure_private_dir(self.path.parent)
        # SQLite gives the -wal and -shm files the mode of the database: make that 0600 first
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
        for suffix in ("", "-wal", "-shm"):
            private_file(f"{self.path}{suffix}")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(STORE_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, build: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Allocate the next seq and store ``build(seq)`` atomically; returns the envelope."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
                seq = int(row[0]) + 1 if row else 1
                envelope = build(seq)
                cur.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),))
                cur.execute("INSERT INTO events VALUES (?, ?, ?)", (seq, envelope["name"], json.dumps(envelope)))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return envelope

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        return int(row[0]) if row else 0

    def after(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def cursor(self, consumer: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM cursors WHERE consumer=?", (consumer,)).fetchone()
        return int(row[0]) if row else 0

    def pending(self, consumer: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self.after(self.cursor(consumer), limit)

    def ack(self, consumer: str, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT(consumer) DO UPDATE SET seq=max(seq, excluded.seq)",
                (consumer, seq),
            )

    def depth(self, consumer: str) -> int:
        c = self.cursor(consumer)
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM events WHERE seq > ?", (c,)).fetchone()
        return int(row[0])

    def prune(self, keep: int) -> int:
        """Drop the oldest events beyond ``keep`` rows; returns how many went."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?", (keep,)
            )
            return cur.rowcount


def read_events(state_dir: str | os.PathLike, name: str | None = None, after: int = 0) -> list[dict[str, Any]]:
    """The events stored on a node after ``after`` (optionally only ``name``); [] when it has none yet.

    For readers outside the daemon (``wazod`` tools, the tests' lab helpers): opens and closes the store.
    """
    path = Path(state_dir) / "events.sqlite3"
    if not path.exists():
        return []
    store = EventStore(path)
    try:
        events = store.after(after, limit=1_000_000)
    finally:
        store.close()
    return [e for e in events if name is None or e["name"] == name]


def read_origin_uuid(uuid_file: str | os.PathLike, state_dir: str | os.PathLike) -> str:
    """The node's installation UUID: XIVO_UUID from Wazo's profile file, else one kept in state_dir."""
    with contextlib.suppress(OSError):
        for line in Path(uuid_file).read_text().splitlines():
            m = re.match(r"\s*(?:export\s+)?XIVO_UUID=['\"]?([0-9a-fA-F-]{32,36})", line)
            if m:
                return m.group(1)
    kept = Path(state_dir) / "uuid"
    with contextlib.suppress(OSError):
        value = kept.read_text().strip()
        if value:
            return value
    value = str(uuidlib.uuid4())
    ensure_private_dir(state_dir)
    atomic_write_text(kept, value + "\n", mode=FILE_MODE)
    return value


Listener = Callable[[dict[str, Any]], None]


class Emitter:
    """Builds, stores, logs and dispatches events. Cheap and synchronous: call it from anywhere."""

    def __init__(self, store: EventStore, node: str, origin_uuid: str):
        self.store = store
        self.node = node
        self.origin_uuid = origin_uuid
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        data = dict(data or {})

        def build(seq: int) -> dict[str, Any]:
            return {
                "name": name,
                "origin_uuid": self.origin_uuid,
                "node": self.node,
                "seq": seq,
                "timestamp": now_iso(),
                "data": data,
            }

        envelope = self.store.append(build)
        level = event_text.priority(name, data)
        text = event_text.message(name, data)
        if level == "notice":  # journald priority 5: the HA story (logsetup renders it <5>)
            log.info(text, name=name, seq=envelope["seq"], data=data, notice=True)
        else:
            getattr(log, level)(text, name=name, seq=envelope["seq"], data=data)
        for listener in list(self._listeners):
            try:
                listener(envelope)
            except Exception:  # an output must never break the emitter
                log.exception("event listener failed", name=name)
        return envelope


def open_emitter(config) -> Emitter:
    """An emitter on this node's event store (used by the daemon and by CLI commands alike)."""
    state_dir = Path(config.node.state_dir)
    store = EventStore(state_dir / "events.sqlite3")
    return Emitter(store, config.node_name, read_origin_uuid(config.node.uuid_file, state_dir))
