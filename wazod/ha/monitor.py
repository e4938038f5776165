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
from wazod.ha.advice import COPY_BACK_STATE, split_brain_warnings
from wazod.ha.clock import mono_to_iso
from wazod.ha.machine import Emit, Failback, Fence, Machine, Params, Release, Round, Takeover, Unfence, Vote
from wazod.ha.probes import Prober, RoundResult, SipWatcher
from wazod.ha.selfprobe import OwnSipStreak, own_sip_address, self_probe_possible, verdict
from wazod.locks import OperationLock, is_held
from wazod.logsetup import get_logger
from wazod.statedir import ensure_private_dir

log = get_logger("ha")


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
        self.arbiter = None  # this node's Arbiter (ha.arbiter), while a watch runs
        self.arbiter_service = None  # when this node IS the arbiter (node_type arbiter)
        self.last_vote = None  # the arbiter's last ArbiterView

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
        """Whether this node drives the berofos now (the drift check sets the lines only then).

        The berofos has one writer. A slave drives it while its services run and no takeover or failback
        is moving them. A master never does without an arbiter: a slave it cannot reach may well have
        taken the lines over (a cut of the link between the two alone), and flipping them back would drop
        every ISDN call, then the slave would flip them again (issue 19: 8 flips in a minute).
        """
        m = self.machine
        if m is None or self._actions or m.pending is not None or m.fenced:
            return False
        if m.p.has_arbiter:
            # only the node holding the quorum: the arbiter answers and names this node the owner
            return m.services == "running" and m.vote is not None and m.vote.reachable and m.vote.owner == "self"
        if self.role == "slave":
            return m.services == "running"
        return False

    async def confirm_berofos_writer(self) -> bool:
        """Right before a drift correction: is this node still the one writer? With an arbiter the last
        round's word is up to a round old (the other node may have been granted the services since), so
        the arbiter is asked now."""
        if not self.holds_services:
            return False
        if self.arbiter is None:
            return True
        try:
            view = await asyncio.wait_for(self.arbiter.observe(), 2.0)
        except Exception:
            return False
        return view.reachable and view.owner == self.arbiter.identity

    @property
    def lines_taken_watch(self) -> bool:
        """A master that cannot reach its slave: lines found on the slave are reported (``berofos_taken``),
        never switched back."""
        m = self.machine
        if self.role != "master" or m is None or self.holds_services:
            return False
        return m.peer_up is False or (m.vote is not None and m.vote.owner == "peer")

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
        if role == "arbiter":
            from wazod.ha.arbiter_server import ArbiterService

            if self.arbiter_service is None:
                self.arbiter_service = ArbiterService(self.ctx)
            return asyncio.create_task(self.arbiter_service.run(), name="ha-arbiter")
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
        from wazod.ha.arbiters import make_arbiter

        try:
            self.arbiter = arbiter = make_arbiter(self.ctx.config)
        except WazodError as e:
            log.error("arbiter unusable: watching without it would be unsafe; fix ha.arbiter", error=str(e))
            self.ctx.status.update(ha_state="unconfigured", peer=None)
            prober.close()
            return
        if arbiter is not None:
            await arbiter.start()
        machine = Machine(Params.from_config(ha, role), services_state)
        self.machine = machine
        self.ctx.status.update(ha_state=machine.state, services=services_state, ha_frozen=None)
        for warning in split_brain_warnings(self.ctx.config):
            log.warning(warning)
        log.info("HA watch started", role=role, peer=ha.remote_address, probes=probes, witnesses=prober.witnesses,
                 services=services_state, interval=ha.probe_interval, fall=ha.fall, rise=ha.rise)
        next_at = time.monotonic()
        next_check = next_at + ha.services_check_interval
        lookout = (asyncio.create_task(self._lookout(machine, arbiter), name="ha-arbiter-lookout")
                   if arbiter is not None and machine.p.partition_after > 0 else None)
        check: asyncio.Task | None = None
        check_gen = 0
        # the owner's duty (etcd): the master probes its own Asterisk each round, the cheap trigger of the check
        owner_duty = role == "master" and getattr(arbiter, "owner_duty", False)
        own_sip = SipWatcher(ha.sip_port, ha.sip_timeout) if owner_duty and self_probe_possible(ha) else None
        own_streak = OwnSipStreak(ha.fall)
        confirm = False  # the own SIP probe says dead: read the services at the next chance
        me = asyncio.current_task()
        try:
            while True:
                if me is not None and me.cancelling():
                    # Python 3.11's wait_for can swallow a cancellation that lands as its inner call ends
                    # (gh-86296); the restart of the watch (ha.conf changed) must never be lost to it
                    raise asyncio.CancelledError
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                started = time.monotonic()
                next_at = max(next_at + ha.probe_interval, started)
                if arbiter is not None:
                    rnd, view, own = await asyncio.gather(prober.round(),
                                                          _late_look(arbiter, ha.effective_round_timeout),
                                                          _own_sip_probe(own_sip, ha))
                    self.last_vote = view
                    vote = _vote(view, arbiter.identity)
                else:
                    rnd, vote, own = await prober.round(), None, None
                self.last_round = rnd
                _observe_rtts(rnd)
                reason = rnd.results[0].detail if rnd.unresolved and rnd.results else rnd.reason
                actions = machine.observe(Round(rnd.started, rnd.ended, rnd.good, reason, rnd.witness_ok,
                                                unresolved=rnd.unresolved, vote=vote),
                                          maintenance=self._maintenance())
                if check is not None and check.done():
                    if check_gen == self._actions_started and not owner_duty:  # the owner's: at once (below)
                        actions += self._services_checked(machine, check)
                    check = None
                # the slave reads its services for drift; a master whose arbiter holds it to the owner's duty
                # (etcd) reads its own, to release the ownership when they died behind its back: every
                # services_check_interval, and at once when its own Asterisk failed the SIP probe fall rounds
                if own_sip is not None and own_streak.observe(verdict(own), armed=(
                        machine.services == "running" and not machine.fenced and machine.released_at is None)):
                    log.warning("own Asterisk fails the SIP probe: reading the services now",
                                rounds=own_streak.dead_rounds, detail=own.detail if own else None)
                    confirm = True
                if ((role == "slave" or owner_duty) and (confirm or (ha.services_check_interval
                                                                     and time.monotonic() >= next_check))
                        and check is None and machine.pending is None and not self._actions
                        and not self._restore_running()):
                    confirm = False
                    next_check = time.monotonic() + ha.services_check_interval
                    check = asyncio.create_task(svc.status(ha.services))
                    check_gen = self._actions_started
                    if owner_duty:  # dead services are released the moment the read ends, not a round later
                        check.add_done_callback(lambda t, gen=check_gen: self._owner_checked(machine, t, gen))
                self._apply(actions, rnd)
                if arbiter is not None:
                    await self._keep_ownership(machine, arbiter)
                self._publish_status()
        finally:
            if lookout is not None:
                lookout.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lookout
            prober.close()
            if own_sip is not None:
                own_sip.close()
            if arbiter is not None:
                with contextlib.suppress(Exception):
                    await arbiter.close()
            self.arbiter = None
            if check is not None:
                check.cancel()

    async def _lookout(self, machine: Machine, arbiter, every: float = 0.1) -> None:
        """The slave waiting for a dead master's etcd lease to expire (its ``fall`` bad rounds done, the
        master still up at the arbiter) looks at the arbiter every ``every`` s, beside the rounds: the
        takeover starts as soon as etcd deleted the master's key, not at the next round's look (up to one
        probe interval later). Only then: a few reads per master death, none in normal operation."""
        timeout = self.ctx.config.ha.effective_round_timeout
        from wazod.ha.arbiter import observe_bounded

        while True:
            await asyncio.sleep(every)
            if self.machine is not machine or not machine.awaiting_arbiter(time.monotonic()):
                continue
            view = await observe_bounded(arbiter, timeout)
            if not view.reachable or view.peer_up is not False:
                continue
            actions = machine.revote(_vote(view, arbiter.identity), time.monotonic())
            if actions:
                self.last_vote = view
                self._apply(actions, self.last_round)
                self._publish_status()

    async def _keep_ownership(self, machine: Machine, arbiter) -> None:
        """A node running the services keeps its ownership alive (``renew`` every round: an etcd lease no
        longer proven means fencing) or takes it (``claim``, e.g. after an arbiter restart) when the arbiter
        allows; the arbiter refuses while the other node holds it and is up there."""
        vote = machine.vote
        if (vote is None or not vote.reachable or machine.services != "running"
                or machine.fenced or machine.pending is not None or self._actions):
            return
        if vote.owner == "self":
            try:
                kept = await asyncio.wait_for(arbiter.renew(), self.ctx.config.ha.effective_round_timeout)
            except Exception:
                kept = True  # one slow answer is no proof of loss (etcd's renew bounds that itself)
            if not kept:
                log.warning("services ownership lost at the arbiter", identity=arbiter.identity)
                self._apply(machine.ownership_lost("ownership lost at the arbiter"))
            return
        if (vote.owner == "peer" and self.role == "master" and getattr(arbiter, "owner_duty", False)
                and machine.fails >= machine.p.fall):
            # etcd names the slave owner and this master cannot reach it: the slave took over (the key was free:
            # this wazod restarted during a cut, or released it), so serving here too is the split brain
            log.warning("the slave holds the owner key and is unreachable from here: stopping this node's services")
            self._apply(machine.ownership_lost("the slave holds the owner key and is unreachable from here"))
            return
        with contextlib.suppress(Exception):
            if await asyncio.wait_for(arbiter.claim(), self.ctx.config.ha.effective_round_timeout):
                machine.vote = Vote(True, vote.peer_up, "self")
                log.info("services ownership held at the arbiter", identity=arbiter.identity)

    def _restore_running(self) -> bool:
        """``wazod restore`` stops the services on purpose: neither reconcile nor act meanwhile."""
        return is_held(self.ctx.config.node.state_dir, "restore")

    def _services_checked(self, machine: Machine, check: asyncio.Task) -> list:
        """Someone (or a crash) changed the services behind our back: take the real state, reconcile."""
        if check.cancelled() or check.exception() is not None:
            return []
        real = check.result()
        if self.role == "master":
            if machine.pending is not None or self._actions:
                return []
            if real == "stopped" and machine.services == "running" and not machine.fenced:
                log.warning("own services stopped behind wazod's back: giving the ownership up at the arbiter")
            return machine.own_services(real, time.monotonic())
        if real == "unknown" or real == machine.services or machine.pending is not None or self._actions:
            return []
        log.warning("services are not in the known state: reconciling", known=machine.services, real=real)
        machine.set_services(real)
        return machine.tick(time.monotonic(), self._maintenance())

    def _owner_checked(self, machine: Machine, check: asyncio.Task, gen: int) -> None:
        """The owner's read of its own services ended: applied at once (a release waits for no round)."""
        if self.machine is not machine or gen != self._actions_started:
            return  # the watch restarted, or an action ran since the read started: its result is stale
        actions = self._services_checked(machine, check)
        if actions:
            self._apply(actions, self.last_round)
            self._publish_status()

    def _publish_status(self) -> None:
        m = self.machine
        if m is None:
            return
        peer = {"address": self.ctx.config.ha.remote_address,
                "state": {True: "up", False: "down", None: "unknown"}[m.peer_up]}
        if self.last_round is not None and not self.last_round.good:
            peer["reason"] = self.last_round.reason
        fields: dict[str, Any] = {"ha_state": m.state, "peer": peer, "ha_frozen": m.frozen}
        if m.p.role == "slave" or m.p.has_arbiter:
            fields["services"] = m.services
        if m.p.has_arbiter:
            v = m.vote
            fields["arbiter"] = {"url": self.ctx.config.ha.arbiter, "reachable": bool(v and v.reachable),
                                 "peer_up": v.peer_up if v else None, "owner": v.owner if v else None,
                                 "fenced": m.fenced}
        self.ctx.status.update(**fields)

    def _apply(self, actions, rnd: RoundResult | None = None) -> None:
        for action in actions:
            if isinstance(action, Emit):
                data = _event_data(action.data)
                data["peer"] = self.ctx.config.ha.remote_address
                if rnd is not None and action.name in ("ha_master_down", "ha_slave_down", "ha_isolated"):
                    data["last_round"] = rnd.summary()
                self.ctx.emit(action.name, data)
            elif isinstance(action, (Takeover, Failback, Fence, Unfence, Release)):
                kind = {Takeover: "takeover", Failback: "failback", Fence: "fence", Unfence: "unfence",
                        Release: "release"}[type(action)]
                self._actions_started += 1
                task = asyncio.create_task(self._act(kind, action.data), name=f"ha-{kind}")
                self._actions.add(task)
                task.add_done_callback(self._actions.discard)

    # --- actions --------------------------------------------------------------------
    def _refusal(self) -> str | None:
        """Why this node must not move services now (checked under the ha lock): its role changed."""
        cfg = self.ctx.config
        role = self.role
        if cfg.role != role or role not in ("master", "slave"):
            return f"node_type is now {cfg.role}"
        if self.ctx.loaded.ha_conf_used and cfg.ha.node_type == role:
            try:
                current = read_ha_conf(cfg.ha.ha_conf).get("node_type") or "disabled"
            except WazodError as e:
                return str(e)
            if current != role:
                return f"{cfg.ha.ha_conf} now says node_type {current}"
        return marker_problem(cfg.ha, role)

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
                    self.ctx.emit(f"ha_{kind}_failed" if kind in ("takeover", "failback") else "ha_fence_failed",
                                  {**_event_data(data), "action": kind, "failed_step": "precondition",
                                   "error": refusal, "duration": 0.0})
                    return
                ok = await {"takeover": self._takeover, "failback": self._failback, "fence": self._fence,
                            "unfence": self._unfence, "release": self._release}[kind](data)
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
        if self.arbiter is not None and not await self._claim():
            # the arbiter refused: the master is up there, or it holds the services; nothing started
            self.ctx.emit("ha_takeover_failed", {**_event_data(data), "peer": ha.remote_address,
                                                 "failed_step": "arbiter claim",
                                                 "error": "the arbiter did not grant the services to this node",
                                                 "duration": round(time.monotonic() - started, 3)})
            return False

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

    def _record_copy_back(self, copy: dict[str, Any]) -> None:
        """A failed copy-back leaves voicemails on this node: a warning event and a status line until a
        copy-back succeeds (``wazod copy-back``)."""
        cfg = self.ctx.config
        if copy["ok"]:
            self.ctx.state.write(COPY_BACK_STATE, {})
            return
        record = {"at": dt.datetime.now(dt.UTC).astimezone().isoformat(), "error": copy["error"],
                  "paths": list(cfg.sync.copy_back_paths), "master": cfg.ha.remote_address, "node": cfg.node_name}
        self.ctx.state.write(COPY_BACK_STATE, record)
        log.warning("copy-back failed; failback goes on, the files stay on this node", error=copy["error"])
        self.ctx.emit("ha_copy_back_failed", {**record, "files_left_on": cfg.node_name,
                                              "remedy": "wazod copy-back (on this node, once the master is "
                                                        "reachable over ssh)"})

    async def _failback(self, data: dict[str, Any]) -> bool:
        ha = self.ctx.config.ha
        started = time.monotonic()
        self.ctx.emit("ha_failback_started", {**_event_data(data), "peer": ha.remote_address})
        copy = await self._copy_back()
        self._record_copy_back(copy)
        berofos = await self._berofos(1)
        try:
            async with svc.services_lock(self.ctx.config.node.state_dir, wait=ha.services.step_timeout):
                report = await svc.run_action(ha.services, "stop")
        except LockHeld as e:
            report = svc.ServicesReport("stop", ha.services.backend, ok=False, failed_step="services lock",
                                        error=str(e))
        if report.ok and self.arbiter is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.arbiter.release(), 5.0)  # the master takes the ownership back
        result = {**_event_data(data), "peer": ha.remote_address, "duration": round(time.monotonic() - started, 3),
                  "copy_back": copy, "files": copy["files"], "bytes": copy["bytes"], "berofos": berofos,
                  "steps": report.to_dict()["steps"]}
        if report.ok:
            self.ctx.emit("ha_failback_completed", result)
        else:
            self.ctx.emit("ha_failback_failed", {**result, "failed_step": report.failed_step, "error": report.error})
        return report.ok

    async def _claim(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.arbiter.claim(), 5.0))
        except Exception as e:
            log.warning("arbiter claim failed", error=str(e) or type(e).__name__)
            return False

    async def _fence(self, data: dict[str, Any]) -> bool:
        """No quorum: stop this node's own services (never the berofos: only the quorum holder writes)."""
        ha = self.ctx.config.ha
        started = time.monotonic()
        log.warning("no quorum (neither the peer nor the arbiter answers): stopping this node's services",
                    role=self.role, rounds=data.get("rounds"))
        report = await self._services_action("stop")
        result = {**_event_data(data), "peer": ha.remote_address, "arbiter": ha.arbiter,
                  "duration": round(time.monotonic() - started, 3), "ok": report.ok,
                  "steps": report.to_dict()["steps"]}
        if not report.ok:
            result.update(failed_step=report.failed_step, error=report.error)
        self.ctx.emit("ha_fenced", result)
        return report.ok

    async def _unfence(self, data: dict[str, Any]) -> bool:
        """Quorum back and the other node does not hold the services: start them again here (claiming them
        first when the arbiter answers and the slave does not hold them)."""
        ha = self.ctx.config.ha
        started = time.monotonic()
        if self.arbiter is not None and data.get("arbiter_reachable") and not data.get("slave_holds"):
            if not await self._claim():
                self.ctx.emit("ha_fence_failed", {**_event_data(data), "action": "unfence",
                                                  "failed_step": "arbiter claim",
                                                  "error": "the arbiter did not grant the services to this node"})
                return False
        report = await self._services_action("start")
        result = {**_event_data(data), "peer": ha.remote_address, "duration": round(time.monotonic() - started, 3),
                  "ok": report.ok, "steps": report.to_dict()["steps"]}
        if not report.ok:
            result.update(failed_step=report.failed_step, error=report.error)
            self.ctx.emit("ha_fence_failed", {**result, "action": "unfence"})
        else:
            self.ctx.emit("ha_unfenced", result)
        return report.ok

    async def _release(self, data: dict[str, Any]) -> bool:
        """The owner's duty: this node's services died while its wazod lives; give the ownership up at the
        arbiter (etcd: delete the owner key) so the slave can obtain it. Nothing is started here before the
        ownership is claimed back (the machine's ``released`` state)."""
        ha = self.ctx.config.ha
        started = time.monotonic()
        ok = True
        if self.arbiter is not None:
            try:
                ok = await asyncio.wait_for(self.arbiter.release(), 5.0) is not False  # HTTP: None, nothing to do
            except Exception as e:  # the machine tries again at the next check of the services
                ok = False
                log.warning("arbiter release failed", error=str(e) or type(e).__name__)
        self.ctx.emit("ha_released", {**_event_data(data), "peer": ha.remote_address, "arbiter": ha.arbiter,
                                      "ok": ok, "duration": round(time.monotonic() - started, 3)})
        return ok

    async def _services_action(self, action: str) -> svc.ServicesReport:
        ha = self.ctx.config.ha
        try:
            async with svc.services_lock(self.ctx.config.node.state_dir, wait=ha.services.step_timeout):
                return await svc.run_action(ha.services, action)
        except LockHeld as e:
            return svc.ServicesReport(action, ha.services.backend, ok=False, failed_step="services lock",
                                      error=str(e))

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


async def _late_look(arbiter, round_timeout: float):
    """The arbiter's view in the second half of the round: as fresh as the round's own verdict (a view
    taken at the round's start would hold a takeover up by one round), bounded by the round."""
    from wazod.ha.arbiter import observe_bounded

    await asyncio.sleep(round_timeout / 2)
    return await observe_bounded(arbiter, round_timeout / 2)


async def _own_sip_probe(watcher: SipWatcher | None, ha):
    """This node's own Asterisk, probed as the slave probes it (a round's timeout, the SIP budget across
    rounds); None when not probed or no local address."""
    if watcher is None:
        return None
    address = await own_sip_address(ha)
    if address is None:
        return None
    return await watcher.probe(address, timeout=ha.effective_round_timeout, spacing=ha.retransmit_interval,
                               count=ha.icmp_count)


def _vote(view, identity: str) -> Vote:
    """The arbiter's view relative to this node: who owns the services, "self" or "peer"."""
    owner = None if view.owner is None else ("self" if view.owner == identity else "peer")
    return Vote(view.reachable, view.peer_up, owner)


def _since(mono: float | None, now: float) -> float | None:
    return None if mono is None else round(now - mono, 3)


def component(ctx) -> HaMonitor:
    """Always built: a disabled node still answers reloads (ha.conf may turn it into a slave)."""
    ensure_private_dir(ctx.config.node.state_dir)
    monitor = HaMonitor(ctx)
    ctx.registry["ha_monitor"] = monitor  # at build time, so parts built later can find it
    from wazod.ha.arbiter_server import register_routes

    register_routes(ctx, lambda: monitor.arbiter_service)  # GET /arbiter (404 unless node_type arbiter)
    return monitor


def _observe_rtts(rnd: RoundResult) -> None:
    """Feed each answered probe's round trip to the /metrics histogram, and the round to its counter."""
    from wazod.health.instruments import PROBE_ROUNDS, PROBE_RTT

    PROBE_ROUNDS.inc(rnd.good)
    for result in [*rnd.results, *rnd.witnesses]:
        if result.ok and result.rtt is not None:
            PROBE_RTT.observe(result.rtt)
