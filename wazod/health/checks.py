"""The health-check component of the daemon: each check on its own interval, hysteresis, events.

Checks: disk, process, ntp, certificate, postgresql, logs.

Every enabled check runs at start, then every ``health.<check>.interval``
seconds (``health.interval`` when null). Slow or blocking work (psutil,
reading files) runs in a thread so the main loop keeps ticking. Reported
levels follow ``health.fall`` / ``health.rise`` (see ``levels``); a change
emits ``health_degraded`` or ``health_recovered`` once, is written to the
status board (``wazod status``, the MQTT state) and to ``health.json`` in the
state directory, so a daemon restart does not announce a known problem again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from wazod.health.certificates import check_certificates
from wazod.health.disk import check_disk
from wazod.health.levels import OVERALL, UNKNOWN, WARNING, CheckResult, LevelTracker, worst
from wazod.health.logs import check_logs
from wazod.health.ntp import check_ntp
from wazod.health.postgres import check_postgres
from wazod.health.processes import check_processes
from wazod.logsetup import get_logger

log = get_logger("health")

STATE_NAME = "health"
CHECK_TIMEOUT = 120.0  # a check that hangs longer is reported, and the next run starts


def _disk(ctx) -> Awaitable[CheckResult]:
    return asyncio.to_thread(check_disk, ctx.config.health.disk)


def _processes(ctx) -> Awaitable[CheckResult]:
    return asyncio.to_thread(check_processes, ctx.config, ctx.status.snapshot())


def _ntp(ctx) -> Awaitable[CheckResult]:
    return check_ntp(ctx.config.health.ntp)


def _certificate(ctx) -> Awaitable[CheckResult]:
    return asyncio.to_thread(check_certificates, ctx.config.health.certificate)


def _postgresql(ctx) -> Awaitable[CheckResult]:
    return check_postgres(ctx.config.health.postgresql)


def _logs(ctx) -> Awaitable[CheckResult]:
    return asyncio.to_thread(check_logs, ctx.config.health.logs)


CHECKS: dict[str, Callable[[Any], Awaitable[CheckResult]]] = {
    "disk": _disk,
    "process": _processes,
    "ntp": _ntp,
    "certificate": _certificate,
    "postgresql": _postgresql,
    "logs": _logs,
}


class HealthChecks:
    """Runs the checks; ``ctx.registry["health"]`` is this object (read by /health and metrics)."""

    name = "health"

    def __init__(self, ctx):
        self.ctx = ctx
        saved = ctx.state.read(STATE_NAME, {}) or {}
        self.trackers = {
            name: LevelTracker(name, saved.get(name, {}).get("level", UNKNOWN), saved.get(name, {}).get("since"))
            for name in CHECKS
        }
        self._wake = asyncio.Event()
        ctx.registry["health"] = self

    # -- reading --------------------------------------------------------------
    def enabled(self) -> list[str]:
        return [name for name in CHECKS if getattr(self.ctx.config.health, name).enabled]

    def interval(self, name: str) -> float:
        return getattr(self.ctx.config.health, name).interval or self.ctx.config.health.interval

    def levels(self) -> dict[str, str]:
        return {name: self.trackers[name].level for name in self.enabled()}

    def overall(self) -> str:
        return OVERALL[worst(self.levels().values())]

    def detail(self) -> dict[str, dict[str, Any]]:
        """Every enabled check: reported level, since when, what the last run saw."""
        out = {}
        for name in self.enabled():
            t = self.trackers[name]
            out[name] = {
                "level": t.level,
                "since": t.since,
                "observed": t.last.level if t.last else None,
                "summary": t.last.summary if t.last else "not checked yet",
                "values": t.last.values if t.last else {},
                "checked_at": t.checked_at,
                "interval": self.interval(name),
            }
        return out

    # -- running --------------------------------------------------------------
    async def run_check(self, name: str) -> CheckResult:
        try:
            return await asyncio.wait_for(CHECKS[name](self.ctx), CHECK_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a broken check is a finding, not a crash of the daemon
            log.exception("health check failed", check=name)
            return CheckResult(WARNING, f"check could not run: {type(e).__name__}: {e}", {"error": str(e)})

    async def run_once(self, name: str) -> None:
        result = await self.run_check(name)
        health = self.ctx.config.health
        transition = self.trackers[name].observe(result, health.fall, health.rise)
        if transition is not None:
            self.ctx.emit(transition.event, transition.event_data())
            self._save_levels()
        self._publish()

    def _save_levels(self) -> None:
        self.ctx.state.write(STATE_NAME, {n: {"level": t.level, "since": t.since} for n, t in self.trackers.items()
                                          if t.level != UNKNOWN})

    def _publish(self) -> None:
        board = {}
        for name in self.enabled():
            t = self.trackers[name]
            board[name] = {"level": t.level, "since": t.since,
                           "summary": t.last.summary if t.last else "not checked yet"}
        self.ctx.status.update(health=board)

    async def _loop(self, name: str) -> None:
        while not self.ctx.stopping.is_set():
            if getattr(self.ctx.config.health, name).enabled:
                await self.run_once(name)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stopping.wait(), self.interval(name))

    async def reload(self) -> None:
        self._publish()  # a check switched off disappears from the board at once

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._loop(name), name=f"health:{name}") for name in CHECKS]
        try:
            await self.ctx.stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def component(ctx) -> HealthChecks:
    return HealthChecks(ctx)
