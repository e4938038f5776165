"""The daemon's drift check: the ISDN lines stay on the node that holds the services.

Wazo only switched the berofos at takeover and failback; a device that rebooted
into its default mode, or a relay flipped by hand or by a forgotten watchdog,
stayed wrong until the next failover, silently. Every ``berofos.drift_interval``
seconds this part reads each device's mode, publishes it on the status board
(``wazod status``, the MQTT state topic), and, on the node that holds the
services only, sets it back (master: mode 1, slave after takeover: mode 0) and
reports it (``berofos_mode_changed`` with ``reason: drift``). A device that
becomes unreachable is reported once (``berofos_failed``), not every round.
Nothing is corrected while maintenance mode is on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from wazod.berofos.conf import BnfosConfError, configured_devices
from wazod.berofos.protocol import MODE_MASTER, MODE_SLAVE
from wazod.berofos.switch import DeviceResult, apply_mode, read_device, report_result
from wazod.errors import LockHeld
from wazod.locks import OperationLock, is_held
from wazod.logsetup import get_logger

log = get_logger("berofos")

DESIRED_BY_ROLE = {"master": MODE_MASTER, "slave": MODE_SLAVE}
IDLE_RECHECK = 30.0  # seconds between looks at the config while the check is disabled
FIGHT_CORRECTIONS = 3  # corrections of one device within FIGHT_WINDOW_ROUNDS rounds: someone else drives it
FIGHT_WINDOW_ROUNDS = 10


class BerofosDrift:
    name = "berofos"

    def __init__(self, ctx):
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._unreachable: set[str] = set()
        self._drift_reported: set[str] = set()
        self._conf_error: str | None = None
        self._corrections: dict[str, list[float]] = {}
        self._fight_reported: set[str] = set()
        self._taken_reported: set[str] = set()
        self.rounds = 0

    # --- who drives -------------------------------------------------------
    def holds_services(self) -> bool:
        """True when this node runs the telephony: the HA monitor says so, else the role and status tell."""
        monitor = self.ctx.registry.get("ha_monitor")
        if monitor is not None and hasattr(monitor, "holds_services"):
            value = monitor.holds_services
            return bool(value() if callable(value) else value)
        role = self.ctx.config.role
        if role == "master":
            # Without the monitor's word the master cannot know whether the slave holds the
            # services (master back, failback pending): as in Wazo, only the slave drives then.
            return False
        if role == "slave":
            return self.ctx.status.get("services") == "running"
        return False

    def watches_taken(self) -> bool:
        """A master cut from its slave: lines found on the slave were taken by it; leave them, say so once."""
        monitor = self.ctx.registry.get("ha_monitor")
        return bool(getattr(monitor, "lines_taken_watch", False)) and self.ctx.config.role == "master"

    def desired_mode(self) -> int | None:
        """The mode the devices must be in when this node drives them; None when it must not drive."""
        if not self.holds_services():
            return None
        maintenance = self.ctx.registry.get("maintenance_active")
        if callable(maintenance) and maintenance():
            return None
        if self._ha_action_running():
            return None  # a takeover or failback is moving the lines itself right now
        return DESIRED_BY_ROLE.get(self.ctx.config.role)

    def _ha_action_running(self) -> bool:
        """True while the HA monitor holds its lock (a takeover or failback in progress)."""
        return is_held(self.ctx.config.node.state_dir, "ha")

    # --- the loop -----------------------------------------------------------
    async def run(self) -> None:
        unsubscribe = self.ctx.emitter.subscribe(self._on_event)
        try:
            while not self.ctx.stopping.is_set():
                interval = self.ctx.config.berofos.drift_interval
                if interval > 0:
                    try:
                        await self.check_once()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("berofos drift check crashed")
                await self._sleep(interval if interval > 0 else IDLE_RECHECK)
        finally:
            unsubscribe()

    async def reload(self) -> None:
        """New config (maybe a new interval or bnfos.conf path): check now."""
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        stop = asyncio.ensure_future(self.ctx.stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (stop, wake):
                t.cancel()
            self._wake.clear()

    async def check_once(self) -> dict[str, Any]:
        """One round: read every device, correct drift where this node drives; returns the status published."""
        self.rounds += 1
        config = self.ctx.config
        settings = config.berofos
        try:
            devices = configured_devices(settings)
        except BnfosConfError as e:
            if str(e) != self._conf_error:
                log.error("berofos configuration unusable", error=str(e))
                self._conf_error = str(e)
            board = {settings.config: {"ok": False, "mode": None, "error": str(e)}}
            self.ctx.status.update(berofos=board)
            return board
        self._conf_error = None
        if not devices:
            self.ctx.status.update(berofos={})
            return {}
        desired = self.desired_mode()
        taken_watch = desired is None and self.watches_taken()
        statuses = await asyncio.gather(*(read_device(d, settings) for d in devices))
        board: dict[str, Any] = {}
        wrong = []
        for s in statuses:
            board[s.name] = {"mode": s.mode, "ok": s.ok, "host": s.host}
            if not s.ok:
                board[s.name]["error"] = s.error
                if s.name not in self._unreachable:
                    self._unreachable.add(s.name)
                    self.ctx.emit("berofos_failed", {"device": s.name, "host": s.host, "mode": None,
                                                     "error": s.error, "reason": "drift_check"})
                continue
            if s.name in self._unreachable:
                self._unreachable.discard(s.name)
                log.info("berofos device answers again", device=s.name, host=s.host, mode=s.mode)
            if taken_watch and s.mode == MODE_SLAVE:
                if s.name not in self._taken_reported:
                    self._taken_reported.add(s.name)
                    log.warning("berofos lines are on the slave while it is unreachable from here: left as they are",
                                device=s.name, host=s.host)
                    self.ctx.emit("berofos_taken", {"device": s.name, "host": s.host, "mode": s.mode,
                                                    "reason": "slave unreachable; the lines are left on it"})
            elif s.mode != MODE_SLAVE or not taken_watch:
                self._taken_reported.discard(s.name)
            if desired is not None and s.mode != desired:
                wrong.append(s)
            else:
                self._drift_reported.discard(s.name)
                if not self._recent_corrections(s.name):
                    self._fight_reported.discard(s.name)
        if wrong:
            await self._correct(wrong, desired, board)
        self.ctx.status.update(berofos=board)
        return board

    async def _correct(self, wrong: list, desired: int, board: dict[str, Any]) -> None:
        config = self.ctx.config
        for s in wrong:
            log.warning("berofos drift: device not in the mode of the node holding the services",
                        device=s.name, host=s.host, mode=s.mode, expected=desired)
        if not config.berofos.drift_correct:
            for s in wrong:
                if s.name not in self._drift_reported:
                    self._drift_reported.add(s.name)
                    _report_drift_only(self.ctx, s, desired)
            return
        wrong = self._without_fights(wrong, desired)
        if not wrong:
            return
        lock = OperationLock(config.state_dir, "berofos")
        try:
            lock.acquire()
        except LockHeld:
            log.info("berofos drift correction skipped: a switch is running", devices=[s.name for s in wrong])
            return
        try:
            # the decision may have changed while reading (takeover, failback): ask again under the lock
            if self.desired_mode() != desired:
                return
            confirm = getattr(self.ctx.registry.get("ha_monitor"), "confirm_berofos_writer", None)
            if confirm is not None and not await confirm():
                log.info("berofos drift correction skipped: this node is no longer the one writer")
                return
            results = await apply_mode(config, desired, self.ctx.emitter, devices=[s.name for s in wrong],
                                       reason="drift", lock=False)
        finally:
            lock.release()
        now = asyncio.get_running_loop().time()
        for r in results:
            if r.ok and r.changed:
                self._corrections.setdefault(r.name, []).append(now)
            if r.name in board:
                board[r.name]["mode"] = r.mode
                board[r.name]["ok"] = r.ok
                if r.error:
                    board[r.name]["error"] = r.error

    def _fight_window(self) -> float:
        return FIGHT_WINDOW_ROUNDS * max(self.ctx.config.berofos.drift_interval, 0.1)

    def _recent_corrections(self, name: str) -> list[float]:
        now = asyncio.get_running_loop().time()
        recent = [t for t in self._corrections.get(name, []) if now - t <= self._fight_window()]
        self._corrections[name] = recent
        return recent

    def _without_fights(self, wrong: list, desired: int) -> list:
        """Drop devices corrected again and again: another node (split brain) or a watchdog drives them.

        Two nodes that both think they hold the services would otherwise flip the
        relays back and forth every round, cutting every ISDN call each time (what
        Wazo's pair did after a cut link). Correcting stops, and it is reported once,
        until the device stays put for a whole window.
        """
        keep = []
        for s in wrong:
            recent = self._recent_corrections(s.name)
            if len(recent) < FIGHT_CORRECTIONS:
                self._fight_reported.discard(s.name)
                keep.append(s)
                continue
            window = self._fight_window()
            if s.name not in self._fight_reported:
                self._fight_reported.add(s.name)
                result = DeviceResult(
                    s.name, False, s.mode,
                    f"{s.name} {s.host}: switched back {len(recent)} times within {window:g} s: another node or "
                    f"the device's watchdog drives it; not correcting it for the next {window:g} s", s.host)
                report_result(result, self.ctx.emitter, "drift_fight")
        return keep

    def _on_event(self, envelope: dict[str, Any]) -> None:
        """Keep the status board in step with switches done by HA or this part (same process)."""
        if envelope.get("name") not in ("berofos_mode_changed", "berofos_failed"):
            return
        data = envelope.get("data") or {}
        name = data.get("device")
        if not name or data.get("reason") == "drift_check":
            return
        board = self.ctx.status.get("berofos") or {}
        entry = dict(board.get(name) or {})
        entry.update(mode=data.get("mode"), ok=envelope["name"] == "berofos_mode_changed",
                     host=data.get("host"))
        if entry["ok"]:
            entry.pop("error", None)
        else:
            entry["error"] = data.get("error")
        board[name] = entry
        with contextlib.suppress(Exception):
            self.ctx.status.update(berofos=board)


def _report_drift_only(ctx, status, desired: int) -> None:
    result = DeviceResult(status.name, False, status.mode,
                          f"{status.name} {status.host}: in mode {status.mode}, the node holding the services "
                          f"needs mode {desired}; not corrected (berofos.drift_correct is false)", status.host)
    report_result(result, ctx.emitter, "drift")


def component(ctx) -> BerofosDrift:
    """Always present: bnfos.conf may appear later (read each round); no file costs nothing."""
    return BerofosDrift(ctx)
