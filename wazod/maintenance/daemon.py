"""Maintenance inside the daemon: what other parts ask, the peer's requests, expiry.

* ``ctx.registry["maintenance_active"]()`` -> bool, asked by the HA monitor every
  round, the scheduler before replication and sync, the berofos drift watcher.
  It re-reads the state file only when the file was replaced (one ``stat``),
  so a ``wazod maintenance on`` typed while the daemon runs counts at once.
* ``ctx.registry["maintenance_holds"](job)`` -> bool: whether a scheduled job
  is held now (replication and sync always; backup and purge when
  ``maintenance.hold_backup`` / ``hold_purge`` say so).
* ``/metrics``: since, until and who/why of the current maintenance
  (``wazod.maintenance.metrics``);
* ``GET /maintenance`` and ``POST /maintenance`` on the status endpoint (same
  authentication as the rest of it): the peer switches us on or off.
* a watch loop every ``maintenance.watch_interval``: records the end of an
  expired maintenance (``maintenance_ended``, cause ``expired``), publishes the
  ``maintenance`` section of the status, retries telling a peer that could
  not be told, and, when maintenance ends, asks the HA monitor to decide
  afresh (``reevaluate()``), so a node whose services were moved by hand
  during the maintenance is brought back to the right state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from aiohttp import web

from wazod.errors import WazodError
from wazod.jobs import JOBS
from wazod.logsetup import get_logger
from wazod.maintenance.metrics import attach as attach_metrics
from wazod.maintenance.peer import PATH, request_for, tell_peer
from wazod.maintenance.state import MaintenanceState, clean_reason, is_active, status_view

log = get_logger("maintenance")

NAME_MAX = 64  # user and node names told by the peer


class MaintenanceComponent:
    name = "maintenance"

    def __init__(self, ctx):
        self.ctx = ctx
        self.state = MaintenanceState(ctx.config.node.state_dir, ctx.config.node_name)
        self._sig: tuple | None = None
        self._record: dict[str, Any] = {}
        self._was_active: bool | None = None
        self._seen_end: str | None = None
        self._next_peer_try = 0.0
        self._peer_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        ctx.registry["maintenance_active"] = self.active
        ctx.registry["maintenance_holds"] = self.holds
        ctx.registry["maintenance"] = self
        ctx.registry.setdefault("http_routes", []).extend([
            ("GET", PATH, self.http_get),
            ("POST", PATH, self.http_post),
        ])
        attach_metrics(self)

    # --- asked by other parts ---------------------------------------------------------
    def record(self) -> dict[str, Any]:
        sig = self.state.signature()
        if sig != self._sig:
            self._sig = sig
            self._record = self.state.read()
        return self._record

    def cached_record(self) -> dict[str, Any]:
        """The record as last read, without touching the file (safe from the /metrics thread)."""
        return self._record

    def active(self) -> bool:
        return is_active(self.record())

    def holds(self, job: str) -> bool:
        if not self.active():
            return False
        section = self.ctx.config.maintenance
        spec = JOBS.get(job)
        return bool((spec and spec.held_in_maintenance) or (job == "backup" and section.hold_backup)
                    or (job == "purge" and section.hold_purge))

    # --- the watch loop ----------------------------------------------------------------
    async def run(self) -> None:
        try:
            while not self.ctx.stopping.is_set():
                self.check()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.ctx.config.maintenance.watch_interval)
                self._wake.clear()
        finally:
            if self._peer_task is not None and not self._peer_task.done():
                self._peer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._peer_task

    def check(self) -> None:
        """One look: expiry, status, end of maintenance, pending peer."""
        record = self.record()
        if record.get("active") and not is_active(record):
            try:
                ended = self.state.expire(self.ctx.emitter)
            except WazodError as e:  # the lock is held by a command right now: next look
                log.warning("maintenance expiry postponed", error=str(e))
                ended = None
            if ended is not None:
                log.info("maintenance ended by itself", set_by=ended.get("set_by"), since=ended.get("since"))
            record = self.record()
        now_active = is_active(record)
        self.ctx.status.update(maintenance=status_view(record))
        ended_at = None if now_active else record.get("ended_at")
        if self._was_active is None:  # first look: the HA watch starts from fresh rounds anyway
            self._seen_end = ended_at
        elif now_active and not self._was_active:
            log.info("maintenance on: HA takes no action, replication and sync held", set_by=record.get("set_by"),
                     reason=record.get("reason"), until=record.get("until"))
        elif ended_at != self._seen_end and ended_at is not None:
            # an end not seen yet (even an on/off quicker than one look): decide afresh
            self._seen_end = ended_at
            log.info("maintenance off: HA decides afresh", set_by=record.get("set_by"),
                     cause=record.get("end_cause"), ended_by=record.get("ended_by"))
            self._reevaluate()
        self._was_active = now_active
        self._maybe_tell_peer(record)

    def _reevaluate(self) -> None:
        monitor = self.ctx.registry.get("ha_monitor")
        hook = getattr(monitor, "reevaluate", None)
        if callable(hook):
            hook()
        elif monitor is not None:
            log.warning("the HA monitor has no reevaluate(): it resumes from its current rounds")

    def _maybe_tell_peer(self, record: dict[str, Any]) -> None:
        section = self.ctx.config.maintenance
        # only changes made here are marked peer_told False (the peer's own requests are never passed back)
        if (record.get("peer_told") is not False or not section.tell_peer
                or (self._peer_task is not None and not self._peer_task.done())
                or time.monotonic() < self._next_peer_try):
            return
        if record.get("active") and not is_active(record):
            return  # expired: the peer's copy expires by itself
        self._next_peer_try = time.monotonic() + section.peer_retry_interval
        self._peer_task = asyncio.create_task(self._tell_peer(dict(record)), name="maintenance-peer")

    async def _tell_peer(self, record: dict[str, Any]) -> None:
        answer = await tell_peer(self.ctx.config, request_for(record))
        if answer.ok:
            log.info("peer told of the maintenance change it had missed", peer=answer.url,
                     active=bool(record.get("active")))
            with contextlib.suppress(WazodError):
                self.state.mark_peer_told(record["rev"], True)
            self._wake.set()
        else:
            log.warning("peer still not told of the maintenance change", peer=answer.url, error=answer.detail,
                        retry_in=self.ctx.config.maintenance.peer_retry_interval)

    # --- HTTP: the peer's requests ---------------------------------------------------------
    async def http_get(self, request: web.Request) -> web.Response:
        record = self.record()
        return web.json_response({"node": self.ctx.config.node_name, "maintenance": status_view(record)})

    async def http_post(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _bad("the body must be a JSON object")
        if not isinstance(body, dict):
            return _bad("the body must be a JSON object")
        action = body.get("action")
        user, node = body.get("user"), body.get("node")
        for name, value in (("user", user), ("node", node)):
            if value is not None and not (isinstance(value, str) and len(value) <= NAME_MAX and value.isprintable()):
                return _bad(f"{name} must be a printable string of at most {NAME_MAX} characters")
        user = _text(user) or "unknown"
        node = _text(node) or "peer"
        try:
            if action == "on":
                remaining = body.get("remaining_s")
                limit = self.ctx.config.maintenance.max_duration
                if isinstance(remaining, bool) or not isinstance(remaining, (int, float)) \
                        or not math.isfinite(remaining) or remaining <= 0:
                    return _bad("remaining_s must be a number of seconds above zero")
                if remaining > limit:
                    return _bad(f"remaining_s {remaining:g} exceeds this node's maintenance.max_duration {limit:g}")
                mid = body.get("id")
                if mid is not None and not (isinstance(mid, str) and 0 < len(mid) <= 64):
                    return _bad("id must be a short string")
                reason = clean_reason(_text(body.get("reason")))
                record, changed = self.state.switch_on(duration=float(remaining), reason=reason, user=user,
                                                       node=node, origin="peer", maintenance_id=mid,
                                                       emitter=self.ctx.emitter)
            elif action == "off":
                record, changed = self.state.switch_off(user=user, node=node, origin="peer",
                                                        emitter=self.ctx.emitter)
            else:
                return _bad("action must be 'on' or 'off'")
        except WazodError as e:
            return web.json_response({"error": str(e)}, status=409 if "lock" in str(e) else 400)
        log.info("maintenance changed by the peer", action=action, by=f"{user}@{node}", changed=changed,
                 peer=request.remote)
        self._wake.set()
        return web.json_response({"node": self.ctx.config.node_name, "changed": changed,
                                  "maintenance": status_view(record)})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def component(ctx) -> MaintenanceComponent:
    return MaintenanceComponent(ctx)
