"""The daemon's HA part: probe rounds -> decision machine -> actions -> events and status.

One watch loop per role: on the slave it probes the master every
``ha.probe_interval`` and, when the machine says so, runs the takeover
(services start with the berofos switched to mode 0 at Wazo's point) or the
failback (files copied back to the master, berofos mode 1, services stop).
On the master it probes the slave and only reports (``ha_slave_down/up``).

Safety around the decisions:

* an action runs under the ``ha`` lock (in-process asyncio lock plus the
  shared file lock) and re-checks, under it, that this node is still a slave
  (ha.conf re-read) and that Wazo's ``is-secondary`` marker is there; a
  ``node_type`` change (ha.conf rewritten, config reloaded) is applied under
  the same lock, so a check can never race it;
* services are driven under the ``services`` lock shared with
  ``wazod services start|stop``;
* while ``ctx.registry["maintenance_active"]()`` is true the machine keeps
  probing and reporting but takes no action;
* start-up (and any restart of the loop) reads the real service state first
  and decides from fresh rounds, so a slave restarted while active keeps its
  services.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from typing import Any

from wazod.config import read_ha_conf
from wazod.errors import LockHeld, WazodError
from wazod.ha import services as svc
from wazod.ha.machine import Emit, Failback, Machine, Params, Round, Takeover
from wazod.ha.probes import Prober, RoundResult
from wazod.locks import OperationLock, is_held
from wazod.logsetup import get_logger
from wazod.statedir import ensure_private_dir

log = get_logger("ha")


def mono_to_iso(mono: float | None) -> str | None:
    if mono is None:
        return None
    wall = time.time() - (time.monotonic() - mono)
    return dt.datetime.fromtimestamp(wall, dt.UTC).astimezone().isoformat()


def _event_data(data: dict[str, Any]) -> dict[str, Any]:
    """Monotonic instants (``*_mono``) become ISO timestamps (``*_at``) for the outside world."""
    out = {}
    for key, value in data.items():
        if key.endswith("_mono"):
            out[key[: -len("_mono")] + "_at"] = mono_to_iso(value)
        else:
            out[key] = value
    return out


def marker_problem(ha, role: str) -> str | None:
    """Why Wazo's marker files forbid acting as ``role`` now, or None. Markers are honoured only where
    the marker directory exists (a Wazo host); ``ha.marker_dir: null`` disables them."""
    if not ha.marker_dir or not os.path.isdir(ha.marker_dir):
        return None
    mine, other = ("is-secondary", "is-primary") if role == "slave" else ("is-primary", "is-secondary")
    if not os.path.exists(os.path.join(ha.marker_dir, mine)):
        return f"{os.path.join(ha.marker_dir, mine)} is missing (HA mode changed?)"
    if os.path.exists(os.path.join(ha.marker_dir, other)):
        return f"{os.path.join(ha.marker_dir, other)} exists too"
    return None


class HaMonitor:
    name = "ha"

    def __init__(self, ctx):
        self.ctx = ctx
        self.machine: Machine | None = None
        self.role: str | None = None
        self.last_round: RoundResult | None = None
        self._alock = asyncio.Lock()
        self._reload = asyncio.Event()
        self._actions: set[asyncio.Task] = set()
        self._actions_started = 0  # a service-state read older than the last action is stale
        self._ha_key = self._watch_key()

    # --- the ha lock ------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def ha_lock(self, wait: float = 60.0):
        """The ``ha`` operation lock: in-process first (asyncio), then the file shared with other processes."""
        async with self._alock:
            lock = OperationLock(self.ctx.config.node.state_dir, "ha")
            await lock.acquire_async(wait)
            try:
                yield
            finally:
                lock.release()

    # --- lifecycle ----------------------------------------------------------------
    def _watch_key(self) -> tuple:
        cfg = self.ctx.config
        return (cfg.role, cfg.ha.model_dump_json())

    async def run(self) -> None:
        ctx = self.ctx
        ctx.registry["ha_monitor"] = self
        stop_wait = asyncio.create_task(ctx.stopping.wait())
        watch: asyncio.Task | None = None
        try:
            while not ctx.stopping.is_set():
                async with self.ha_lock():
                    self._reload.clear()
                    self._ha_key = self._watch_key()
                    watch = self._start_watch()
                reload_wait = asyncio.create_task(self._reload.wait())
                waiters = {stop_wait, reload_wait} | ({watch} if watch else set())
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                reload_wait.cancel()
                if watch is not None and watch.done() and not watch.cancelled() and watch.exception():
                    raise watch.exception()
                # a role change or the end: applied under the lock, after any running action finished
                async with self.ha_lock():
                    if watch is not None:
                        watch.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await watch
                if not ctx.stopping.is_set():
                    log.info("HA configuration changed: watch restarted", role=ctx.config.role)
        finally:
            stop_wait.cancel()
            if watch is not None and not watch.done():
                watch.cancel()
            if self._actions:  # a takeover or failback in flight finishes (the supervisor bounds the wait)
                await asyncio.gather(*self._actions, return_exceptions=True)

    @property
    def holds_services(self) -> bool:
        """Whether this node runs the telephony now (the berofos drift check drives the lines only then).

        A slave holds them while its services run and no takeover or failback is moving them.
        A master holds them while its slave is down; while the slave is up the master cannot
        tell a standby slave from one still active (failback pending), so it leaves the
        lines to the slave, as Wazo did.
        """
        m = self.machine
        if m is None or self._actions or m.pending is not None:
            return False
        if self.role == "slave":
            return m.services == "running"
        if self.role == "master":
            return m.peer_up is False
        return False

    async def reload(self) -> None:
        """Called by the supervisor after a config reload (SIGHUP or ha.conf rewritten)."""
        if self._watch_key() != self._ha_key:
            self._reload.set()

    def reevaluate(self) -> None:
        """Maintenance ended (wazod.maintenance calls this): restart the watch, so the decision comes from
        fresh probe rounds and the real service state, as after a daemon restart."""
        self._reload.set()

    def _start_watch(self) -> asyncio.Task | None:
        cfg = self.ctx.config
        role = cfg.role
        self.role = role
        self.machine = None
        if role == "disabled":
            self.ctx.status.update(ha_state="disabled", peer=None, ha_frozen=None)
            log.info("HA disabled: not watching")
            return None
        if not cfg.ha.remote_address:
            self.ctx.status.update(ha_state="unconfigured", peer=None)
            log.error("HA role without a remote address: not watching", role=role, ha_conf=cfg.ha.ha_conf)
            return None
        return asyncio.create_task(self._watch(role), name=f"ha-watch-{role}")

    # --- the watch loop -----------------------------------------------------------
    def _maintenance(self) -> bool:
        fn = self.ctx.registry.get("maintenance_active")
        if fn is None:
            return False
        try:
            return bool(fn())
        except Exception:
            log.exception("maintenance state unreadable: acting as if it were off")
            return False

    async def _watch(self, role: str) -> None:
        ha = self.ctx.config.ha
        probes = ha.probes if role == "slave" else ha.slave_probes
        prober = Prober(ha, ha.remote_address, probes, witnesses=ha.witnesses if role == "slave" else [])
        services_state = await svc.status(ha.services)  # the real state: decisions start from it
        machine = Machine(Params.from_config(ha, role), services_state)
        self.machine = machine
        self.ctx.status.update(ha_state=machine.state, services=services_state, ha_frozen=None)
        log.info("HA watch started", role=role, peer=ha.remote_address, probes=probes, witnesses=prober.witnesses,
                 services=services_state, interval=ha.probe_interval, fall=ha.fall, rise=ha.rise)
        next_at = time.monotonic()
        next_check = next_at + ha.services_check_interval
        check: asyncio.Task | None = None
        check_gen = 0
        try:
            while True:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                started = time.monotonic()
                next_at = max(next_at + ha.probe_interval, started)
                rnd = await prober.round()
                self.last_round = rnd
                _observe_rtts(rnd)
                actions = machine.observe(Round(rnd.started, rnd.ended, rnd.good, rnd.reason, rnd.witness_ok),
                                          maintenance=self._maintenance())
                if check is not None and check.done():
                    if check_gen == self._actions_started:
                        actions += self._services_checked(machine, check)
                    check = None
                if (role == "slave" and ha.services_check_interval and check is None
                        and time.monotonic() >= next_check and machine.pending is None and not self._actions
                        and not self._restore_running()):
                    next_check = time.monotonic() + ha.services_check_interval
                    check = asyncio.create_task(svc.status(ha.services))
                    check_gen = self._actions_started
                self._apply(actions, rnd)
                self._publish_status()
        finally:
            if check is not None:
                check.cancel()

    def _restore_running(self) -> bool:
        """``wazod restore`` stops the services on purpose: neither reconcile nor act meanwhile."""
        return is_held(self.ctx.config.node.state_dir, "restore")

    def _services_checked(self, machine: Machine, check: asyncio.Task) -> list:
        """Someone (or a crash) changed the services behind our back: take the real state, reconcile."""
        if check.cancelled() or check.exception() is not None:
            return []
        real = check.result()
        if real == "unknown" or real == machine.services or machine.pending is not None or self._actions:
            return []
        log.warning("services are not in the known state: reconciling", known=machine.services, real=real)
        machine.set_services(real)
        return machine.tick(time.monotonic(), self._maintenance())

    def _publish_status(self) -> None:
        m = self.machine
        if m is None:
            return
        peer = {"address": self.ctx.config.ha.remote_address,
                "state": {True: "up", False: "down", None: "unknown"}[m.peer_up]}
        if self.last_round is not None and not self.last_round.good:
            peer["reason"] = self.last_round.reason
        fields: dict[str, Any] = {"ha_state": m.state, "peer": peer, "ha_frozen": m.frozen}
        if m.p.role == "slave":
            fields["services"] = m.services
        self.ctx.status.update(**fields)

    def _apply(self, actions, rnd: RoundResult | None = None) -> None:
        for action in actions:
            if isinstance(action, Emit):
                data = _event_data(action.data)
                data["peer"] = self.ctx.config.ha.remote_address
                if rnd is not None and action.name in ("ha_master_down", "ha_slave_down", "ha_isolated"):
                    data["last_round"] = rnd.summary()
                self.ctx.emit(action.name, data)
            elif isinstance(action, (Takeover, Failback)):
                kind = "takeover" if isinstance(action, Takeover) else "failback"
                self._actions_started += 1
                task = asyncio.create_task(self._act(kind, action.data), name=f"ha-{kind}")
                self._actions.add(task)
                task.add_done_callback(self._actions.discard)

    # --- actions --------------------------------------------------------------------
    def _refusal(self) -> str | None:
        """Why this node must not move services now (checked under the ha lock)."""
        cfg = self.ctx.config
        if cfg.role != "slave" or self.role != "slave":
            return f"node_type is now {cfg.role}"
        if self.ctx.loaded.ha_conf_used and cfg.ha.node_type == "slave":
            try:
                current = read_ha_conf(cfg.ha.ha_conf).get("node_type") or "disabled"
            except WazodError as e:
                return str(e)
            if current != "slave":
                return f"{cfg.ha.ha_conf} now says node_type {current}"
        return marker_problem(cfg.ha, "slave")

    async def _act(self, kind: str, data: dict[str, Any]) -> None:
        machine = self.machine
        ok = False
        try:
            if self._restore_running():
                log.warning("HA action refused", action=kind, reason="a restore is running")
                self.ctx.emit(f"ha_{kind}_failed", {**_event_data(data), "failed_step": "precondition",
                                                    "error": "wazod restore is running (it holds the ha lock)",
                                                    "duration": 0.0})
                return
            async with self.ha_lock():
                if machine is not self.machine:
                    return  # the watch was restarted meanwhile: its new machine decides afresh
                refusal = self._refusal()
                if refusal:
                    log.warning("HA action refused", action=kind, reason=refusal)
                    self.ctx.emit(f"ha_{'takeover' if kind == 'takeover' else 'failback'}_failed",
                                  {**_event_data(data), "failed_step": "precondition", "error": refusal,
                                   "duration": 0.0})
                    return
                ok = await (self._takeover(data) if kind == "takeover" else self._failback(data))
        except asyncio.CancelledError:
            self.ctx.emit(f"ha_{kind}_failed", {**_event_data(data), "failed_step": "interrupted",
                                                "error": "daemon stopping"})
            raise
        except Exception as e:  # never let an action kill the watch; report it
            log.exception("HA action crashed", action=kind)
            self.ctx.emit(f"ha_{kind}_failed", {**_event_data(data), "failed_step": "internal", "error": str(e)})
        finally:
            if machine is self.machine and machine is not None:
                self._apply(machine.action_done(kind, ok, time.monotonic()))
                self._publish_status()

    async def _berofos(self, mode: int) -> list[dict[str, Any]] | str:
        try:
            from wazod.berofos import apply_mode
        except ImportError as e:
            log.warning("berofos support not available", error=str(e))
            return "not available"
        results = await apply_mode(self.ctx.config, mode, self.ctx.emitter)
        out = [{"name": r.name, "ok": r.ok, "mode": r.mode, "error": r.error} for r in results]
        if out:
            self.ctx.status.update(berofos={r["name"]: {"mode": r["mode"], "ok": r["ok"]} for r in out})
        return out

    async def _takeover(self, data: dict[str, Any]) -> bool:
        ha = self.ctx.config.ha
        first_failure = data.get("first_failure_mono")
        started = time.monotonic()
        self.ctx.emit("ha_takeover_started", {**_event_data(data), "peer": ha.remote_address,
                                              "since_first_failure_s": _since(first_failure, started)})
        berofos: dict[str, Any] = {}

        async def hook():
            berofos["result"] = await self._berofos(0)
            return berofos["result"]  # the step reports it ("no berofos configured", devices switched)

        try:
            async with svc.services_lock(self.ctx.config.node.state_dir, wait=ha.services.step_timeout):
                report = await svc.run_action(ha.services, "start", hook=hook)
        except LockHeld as e:
            report = svc.ServicesReport("start", ha.services.backend, ok=False, failed_step="services lock",
                                        error=str(e))
        ended = time.monotonic()
        result = {
            **_event_data(data), "peer": ha.remote_address, "duration": round(ended - started, 3),
            "since_first_failure_s": _since(first_failure, ended),
            "first_start_action_at": mono_to_iso(report.first_step_at),
            "skipped": report.skipped, "steps": report.to_dict()["steps"], "berofos": berofos.get("result", []),
        }
        if report.ok:
            self.ctx.emit("ha_takeover_completed", result)
        else:
            self.ctx.emit("ha_takeover_failed", {**result, "failed_step": report.failed_step, "error": report.error})
        return report.ok

    async def _copy_back(self) -> dict[str, Any]:
        try:
            from wazod.sync import copy_back
        except ImportError as e:
            log.warning("copy-back not available: files left on the slave stay there", error=str(e))
            return {"ok": False, "files": 0, "bytes": 0, "error": "copy-back not available"}
        try:
            res = await copy_back(self.ctx.config, timeout=self.ctx.config.ha.copy_back_timeout)
        except Exception as e:
            log.exception("copy-back crashed")
            return {"ok": False, "files": 0, "bytes": 0, "error": str(e)}
        return {"ok": bool(res.ok), "files": res.files, "bytes": res.bytes, "error": res.error}

    async def _failback(self, data: dict[str, Any]) -> bool:
        ha = self.ctx.config.ha
        started = time.monotonic()
        self.ctx.emit("ha_failback_started", {**_event_data(data), "peer": ha.remote_address})
        copy = await self._copy_back()
        if not copy["ok"]:
            log.warning("copy-back failed; failback goes on, the files stay on this node", error=copy["error"])
        berofos = await self._berofos(1)
        try:
            async with svc.services_lock(self.ctx.config.node.state_dir, wait=ha.services.step_timeout):
                report = await svc.run_action(ha.services, "stop")
        except LockHeld as e:
            report = svc.ServicesReport("stop", ha.services.backend, ok=False, failed_step="services lock",
                                        error=str(e))
        result = {**_event_data(data), "peer": ha.remote_address, "duration": round(time.monotonic() - started, 3),
                  "copy_back": copy, "files": copy["files"], "bytes": copy["bytes"], "berofos": berofos,
                  "steps": report.to_dict()["steps"]}
        if report.ok:
            self.ctx.emit("ha_failback_completed", result)
        else:
            self.ctx.emit("ha_failback_failed", {**result, "failed_step": report.failed_step, "error": report.error})
        return report.ok

    # --- for other parts (status endpoint, demo) -----------------------------------------
    def snapshot(self) -> dict[str, Any]:
        m = self.machine
        return {
            "role": self.role,
            "state": m.state if m else ("disabled" if self.role == "disabled" else "starting"),
            "frozen": m.frozen if m else None,
            "peer_up": m.peer_up if m else None,
            "services": m.services if m else None,
            "last_round": self.last_round.summary() if self.last_round else None,
        }


def _since(mono: float | None, now: float) -> float | None:
    return None if mono is None else round(now - mono, 3)


def component(ctx) -> HaMonitor:
    """Always built: a disabled node still answers reloads (ha.conf may turn it into a slave)."""
    ensure_private_dir(ctx.config.node.state_dir)
    monitor = HaMonitor(ctx)
    ctx.registry["ha_monitor"] = monitor  # at build time, so parts built later can find it
    return monitor


def _observe_rtts(rnd: RoundResult) -> None:
    """Feed each answered probe's round trip to the /metrics histogram, and the round to its counter."""
    from wazod.health.instruments import PROBE_ROUNDS, PROBE_RTT

    PROBE_ROUNDS.inc(rnd.good)
    for result in [*rnd.results, *rnd.witnesses]:
        if result.ok and result.rtt is not None:
            PROBE_RTT.observe(result.rtt)
