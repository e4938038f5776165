"""The maintenance flag of one node: ``<state_dir>/maintenance.json``, changed under a lock.

Why a file and a lock: the CLI must be able to switch maintenance on with the
daemon down (that is when upgrades happen), the daemon must see the change
without being told, and two writers (the CLI, the daemon finishing an expired
maintenance or applying the peer's request) must never both believe they made
the same change, or the same ``maintenance_started`` would be emitted twice.
So every change is read-modify-write under the ``maintenance`` operation lock,
the file is replaced atomically, and the writer of a change emits its event.

The record::

    active       bool: the last change switched it on (see is_active for expiry)
    id           this maintenance (kept by renewals; told to the peer, so a repeated request is a no-op)
    rev          this change (a later change has another rev)
    since/until  ISO times (until_ts: epoch seconds, the one compared)
    reason       free text or null
    set_by       "user@node" (set_by_user, set_by_node)
    origin       "local" (a command on this node) or "peer" (asked by the other node)
    peer_told    true / false (could not be told: the daemon tries again) / null (not to be told)
    ended_at, ended_by, end_cause   once ended: off | expired

Expiry is wall-clock (``until_ts``): it must survive restarts and reboots.
``is_active`` already says False past ``until``; the daemon then records the
end (``expire``) and emits ``maintenance_ended`` with cause ``expired``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from wazod.errors import ExitCode, WazodError
from wazod.locks import OperationLock
from wazod.state import StateStore

STATE_NAME = "maintenance"
LOCK_WAIT = 2.0  # seconds; a holder keeps the lock for a read and a write, never across network calls
REASON_MAX = 500


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).astimezone().isoformat()


def is_active(record: dict[str, Any] | None, now: float | None = None) -> bool:
    if not record or not record.get("active"):
        return False
    until = record.get("until_ts")
    if not isinstance(until, (int, float)):
        return False  # a hand-edited file without an end is not trusted to hold HA forever
    return (time.time() if now is None else now) < until


def clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    reason = " ".join(str(reason).split())
    if len(reason) > REASON_MAX:
        raise WazodError(f"reason too long ({len(reason)} characters, at most {REASON_MAX})", ExitCode.USAGE)
    return reason or None


class MaintenanceState:
    """Read and change this node's maintenance record (CLI and daemon alike)."""

    def __init__(self, state_dir: str | Path, node: str):
        self.state_dir = Path(state_dir)
        self.node = node
        self.store = StateStore(self.state_dir)

    @property
    def path(self) -> Path:
        return self.store.path(STATE_NAME)

    def read(self) -> dict[str, Any]:
        record = self.store.read(STATE_NAME, {})
        return record if isinstance(record, dict) else {}

    def signature(self) -> tuple | None:
        """Changes whenever the file is replaced (atomic writes give a new inode)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def locked(self, wait: float = LOCK_WAIT):
        lock = OperationLock(self.state_dir, "maintenance")
        lock.acquire_waiting(wait)
        try:
            yield
        finally:
            lock.release()

    # --- changes -----------------------------------------------------------------
    def switch_on(self, *, duration: float, reason: str | None, user: str, node: str, origin: str = "local",
                  maintenance_id: str | None = None, emitter=None, peer_told: bool | None = None,
                  now: float | None = None) -> tuple[dict[str, Any], bool]:
        """Maintenance on for ``duration`` seconds from now. Returns (record, changed).

        Already on: renewed (new until and reason, same id and since) and told again with
        ``renewed: true``. The same request again (same id, e.g. the peer retrying) changes nothing.
        """
        now = time.time() if now is None else now
        with self.locked():
            current = self._finish_expired(self.read(), emitter, now)
            active = is_active(current, now)
            if active and maintenance_id and current.get("id") == maintenance_id \
                    and abs(current.get("until_ts", 0) - (now + duration)) < 5:
                return current, False
            record = {
                "active": True,
                "id": (current.get("id") if active and not maintenance_id else maintenance_id) or uuid.uuid4().hex,
                "rev": uuid.uuid4().hex,
                "since": current["since"] if active else iso(now),
                "since_ts": current["since_ts"] if active else now,
                "until": iso(now + duration), "until_ts": now + duration,
                "reason": reason, "set_by": f"{user}@{node}", "set_by_user": user, "set_by_node": node,
                "origin": origin, "peer_told": peer_told,
            }
            self.store.write(STATE_NAME, record)
            if emitter is not None:
                emitter.emit("maintenance_started", {**event_view(record), "duration_s": round(duration, 3),
                                                     "renewed": active})
            return record, True

    def switch_off(self, *, user: str, node: str, origin: str = "local", emitter=None,
                   peer_told: bool | None = None, now: float | None = None) -> tuple[dict[str, Any], bool]:
        """Maintenance off. Returns (record, changed); not on: (record, False), nothing written."""
        now = time.time() if now is None else now
        with self.locked():
            current = self._finish_expired(self.read(), emitter, now)
            if not is_active(current, now):
                return current, False
            record = self._ended(current, now, cause="off", by=f"{user}@{node}", origin=origin)
            record["peer_told"] = peer_told
            self.store.write(STATE_NAME, record)
            if emitter is not None:
                emitter.emit("maintenance_ended", ended_view(record))
            return record, True

    def expire(self, emitter=None, now: float | None = None) -> dict[str, Any] | None:
        """Record the end of a maintenance whose time is up; the ended record, or None if none was due."""
        now = time.time() if now is None else now
        with self.locked():
            current = self.read()
            after = self._finish_expired(current, emitter, now)
            return after if after is not current else None

    def mark_peer_told(self, rev: str, told: bool) -> bool:
        """Note whether the peer has been told of change ``rev`` (ignored if a newer change replaced it)."""
        with self.locked():
            current = self.read()
            if current.get("rev") != rev or current.get("peer_told") is told:
                return False
            current["peer_told"] = told
            self.store.write(STATE_NAME, current)
            return True

    # --- internals -------------------------------------------------------------------
    def _ended(self, current: dict[str, Any], now: float, *, cause: str, by: str | None,
               origin: str) -> dict[str, Any]:
        return {**current, "active": False, "rev": uuid.uuid4().hex, "ended_at": iso(now), "ended_ts": now,
                "ended_by": by, "end_cause": cause, "end_origin": origin}

    def _finish_expired(self, current: dict[str, Any], emitter, now: float) -> dict[str, Any]:
        """Under the lock: a record still marked active past its end becomes ended (cause expired)."""
        if not current.get("active") or is_active(current, now):
            return current
        until = current.get("until_ts")
        end = until if isinstance(until, (int, float)) and until <= now else now
        record = self._ended(current, end, cause="expired", by=None, origin="local")
        record["peer_told"] = None  # the peer's own copy expires by itself at the same time
        self.store.write(STATE_NAME, record)
        if emitter is not None:
            emitter.emit("maintenance_ended", ended_view(record))
        return record


# --- what the outside world sees --------------------------------------------------------
def event_view(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "set_by", "reason", "since", "until", "origin")
    return {k: record.get(k) for k in keys}


def ended_view(record: dict[str, Any]) -> dict[str, Any]:
    lasted = None
    if isinstance(record.get("since_ts"), (int, float)) and isinstance(record.get("ended_ts"), (int, float)):
        lasted = round(record["ended_ts"] - record["since_ts"], 3)
    return {**event_view(record), "ended_at": record.get("ended_at"), "ended_by": record.get("ended_by"),
            "cause": record.get("end_cause"), "end_origin": record.get("end_origin"), "lasted_s": lasted}


def status_view(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The ``maintenance`` section of ``wazod status`` / ``/status`` (no per-second field, so the
    status file is not rewritten every second)."""
    if is_active(record, now):
        return {"active": True, "set_by": record.get("set_by"), "reason": record.get("reason"),
                "since": record.get("since"), "until": record.get("until"), "origin": record.get("origin"),
                "peer_told": record.get("peer_told")}
    out: dict[str, Any] = {"active": False}
    if record.get("since"):
        ended = record.get("ended_at") or record.get("until")
        out["last"] = {"set_by": record.get("set_by"), "reason": record.get("reason"), "since": record.get("since"),
                       "ended_at": ended, "ended_by": record.get("ended_by"),
                       "cause": record.get("end_cause") or "expired"}
    return out
