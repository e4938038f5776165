"""The HA decision as a pure state machine: probe rounds and monotonic time in, actions out.

No I/O, no clock, no asyncio: the monitor feeds it, the tests feed it tables
of rounds (in the style of Pacemaker's scheduler tests) and compare the exact
actions out. Everything that makes failover safe lives here, where it can be
proven round by round:

* hysteresis: the peer is down after ``fall`` consecutive bad rounds and up
  again after ``rise`` good ones (Wazo: one bad minute took over);
* failback only after ``failback_hold`` seconds of continuous health;
* blind rounds say nothing about the master: a bad round in which no witness
  answered either (or in which the peer's name did not resolve) is this
  node's own trouble. It neither counts as a failure of the peer nor as
  health; ``fall`` blind rounds in a row are an isolation (``ha_isolated``, no
  takeover), and after an isolation the peer's failure must be proven again
  by ``fall`` fresh rounds: the moment the links come back is no evidence;
* flap damping: more than ``flap_limit`` up/down transitions within
  ``flap_window`` seconds freeze the node (``ha_flapping``: no takeover, no
  up/down events) until the window calms down; an isolation moves no verdict,
  so it is never counted. It never holds a failback to a master that serves
  again (up here and, with an arbiter, up there too): holding the give-back
  would leave both nodes active; ``failback_hold`` is the failback's damping;
* services move only when the wanted state differs from the known one
  (never a "stop" every round), one action at a time, failed actions retried
  with exponential backoff;
* start-up decides from fresh rounds and the real service state, so a slave
  restarted while active keeps its services.

States (``Machine.state``), slave role:

=================  ============================================================
starting           no verdict yet (fewer than fall/rise rounds since start)
standby            master up, services stopped: the normal state of a slave
master_down        master down, services not running and no action allowed yet
                   (maintenance, backoff after a failure)
isolated           the last ``fall`` rounds were blind (nothing answered, not even a
                   witness, or the peer's name did not resolve): not taking over
taking_over        a takeover (services start) is running
active             master down, this node holds the services
failback_pending   master up again, waiting for failback_hold of continuous health
failing_back       a failback (copy back, berofos, services stop) is running
flapping           frozen: too many transitions in flap_window (no takeover; a failback to a
                   serving master still goes on after failback_hold)
=================  ============================================================

Master role: ``master`` (the slave is watched; only events come out); with an arbiter also ``fencing`` /
``fenced`` (no quorum) and ``released`` (its own services died: ownership given up, see ``own_services``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["master", "slave"]


@dataclass(frozen=True)
class Params:
    role: Role = "slave"
    fall: int = 3
    rise: int = 3
    failback_hold: float = 20.0
    flap_window: float = 120.0
    flap_limit: int = 4
    action_backoff: float = 10.0
    max_backoff: float = 300.0
    has_witnesses: bool = False
    has_arbiter: bool = False
    self_fence: bool = True
    # seconds of failing rounds before ha_partitioned is told: an etcd arbiter keeps a dead master "up" (its
    # lease) for up to ttl + 1 s, which is no partition (0: at fall rounds)
    partition_after: float = 0.0

    @classmethod
    def from_config(cls, ha, role: Role) -> Params:
        etcd = bool(ha.arbiter) and str(ha.arbiter).startswith("etcd://")
        return cls(role=role, fall=ha.fall, rise=ha.rise, failback_hold=ha.failback_hold,
                   flap_window=ha.flap_window, flap_limit=ha.flap_limit, action_backoff=ha.action_backoff,
                   has_witnesses=bool(ha.witnesses), has_arbiter=bool(ha.arbiter), self_fence=ha.self_fence,
                   partition_after=ha.etcd.ttl + 1.0 if etcd else 0.0)


@dataclass(frozen=True)
class Vote:
    """The arbiter's view in one round, relative to this node (the third vote of a majority of three)."""

    reachable: bool  # the arbiter answered (etcd: a quorum of its cluster did)
    peer_up: bool | None = None  # its verdict on the peer; None: it does not know
    owner: Literal["self", "peer"] | None = None  # who holds the services according to it


@dataclass(frozen=True)
class Round:
    """One probe round: when it ran (monotonic), its verdict, and whether a witness answered."""

    started: float
    ended: float
    good: bool
    reason: str = "ok"
    witness_ok: bool | None = None  # None: no witness configured
    unresolved: bool = False  # the peer's name did not resolve: this node's problem, not the peer's death
    vote: Vote | None = None  # the arbiter's view this round (None: no arbiter configured)


# --- actions -------------------------------------------------------------------
@dataclass(frozen=True)
class Emit:
    name: str
    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Takeover:
    """Start the services here (slave). ``data`` carries the timing of the detection."""

    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Failback:
    """Give the services back to the master: copy back, berofos mode 1, services stop."""

    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Fence:
    """Stop this node's own services: it reaches neither its peer nor the arbiter (no quorum)."""

    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Unfence:
    """Start this node's services again (master): quorum is back and the other node does not hold them."""

    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Release:
    """Give the services' ownership up at the arbiter (master): its own services died while its wazod lives
    (etcd: the owner key is deleted, so the slave can obtain it; the owner's duty)."""

    data: dict[str, Any] = field(default_factory=dict, compare=False)


Action = Emit | Takeover | Failback | Fence | Unfence | Release
ServicesState = Literal["running", "stopped", "unknown"]


class Machine:
    def __init__(self, params: Params, services: ServicesState = "unknown"):
        self.p = params
        self.services: ServicesState = services
        self.peer_up: bool | None = None  # the hysteresis verdict; None until fall/rise rounds seen
        self.reason = ""
        self.fails = 0
        self.goods = 0
        self.fail_since: float | None = None  # start of the current failing streak
        self.good_since: float | None = None  # start of the current good streak
        self.down_since: float | None = None  # when the peer was declared down
        self.blind = 0  # consecutive blind rounds (bad, and no witness answered or the name did not resolve)
        self.isolation_cause: str | None = None
        self.partition_reported = False  # ha_partitioned told for the current failing streak
        self.fenced = False
        self.vote: Vote | None = None  # the last round's
        if (params.role == "master" and params.has_arbiter and params.self_fence and services == "stopped"):
            self.fenced = True  # a master's services always run unless it fenced itself (daemon restarted since)
        self.transitions: deque[float] = deque()
        self.flapping = False
        self.maintenance = False
        self.isolated = False
        self.pending: Literal["takeover", "failback", "fence", "unfence", "release"] | None = None
        self.released_at: float | None = None  # master: its own services died, ownership given up (owner's duty)
        self.next_action_at = float("-inf")
        self.backoff = params.action_backoff
        self.last_reported: bool | None = None  # last up/down state told by an event

    # --- inputs ----------------------------------------------------------------
    def update_params(self, params: Params) -> None:
        """New timings from a reloaded config; the observed state is kept."""
        self.p = params

    def set_services(self, state: ServicesState) -> None:
        """The real service state (read at start-up, or after a manual change)."""
        self.services = state

    def observe(self, rnd: Round, maintenance: bool = False) -> list[Action]:
        now = rnd.ended
        out: list[Action] = []
        self.maintenance = maintenance
        self.vote = rnd.vote
        if self._is_blind(rnd):
            self._blind_round(rnd, out)
        else:
            self._quorum_back(rnd, out)
            if rnd.good:
                if self.goods == 0:
                    self.good_since = rnd.started
                self.goods += 1
                self.fails = 0
                self.fail_since = None
            else:
                if self.fails == 0:
                    self.fail_since = rnd.started
                    self.partition_reported = False
                self.fails += 1
                self.goods = 0
                self.good_since = None
                self.reason = rnd.reason
        partitioned = self._is_partitioned(rnd)
        if partitioned and self.fails >= self.p.fall:
            # silent here, alive for the arbiter: the link between the two is cut; no down verdict
            if not self.partition_reported and (self.fail_since is None
                                                or now - self.fail_since >= self.p.partition_after):
                self.partition_reported = True
                out.append(Emit("ha_partitioned", {"rounds": self.fails, "arbiter_sees_peer": True,
                                                   "holds_services": self.services == "running"}))
        elif self.peer_up is not False and self.fails >= self.p.fall:
            self._transition(False, rnd, out)
        elif self.peer_up is not True and self.goods >= self.p.rise:
            self._transition(True, rnd, out)
        self._check_flapping(now, out)
        out += self._reconcile(now)
        return out

    def _is_blind(self, rnd: Round) -> bool:
        """A bad round that says nothing about the peer: its name did not resolve, or no witness answered
        (with an arbiter: the arbiter did not answer either: this node has no quorum)."""
        if rnd.good:
            return False
        if rnd.unresolved:
            return True
        if self.p.has_arbiter:
            return rnd.vote is None or not rnd.vote.reachable
        return self.p.has_witnesses and rnd.witness_ok is False

    def _is_partitioned(self, rnd: Round) -> bool:
        """The peer is silent here but up for the arbiter: the link between the two is cut, not the peer."""
        return (not rnd.good and self.p.has_arbiter and rnd.vote is not None and rnd.vote.reachable
                and rnd.vote.peer_up is True)

    def _quorum_back(self, rnd: Round, out: list[Action]) -> None:
        """A round that is not blind: this node reaches its peer or the arbiter again."""
        self.blind = 0
        if self.isolated:
            self.isolated = False
            self.isolation_cause = None
        if self.fenced and self.p.role == "slave":
            # the slave's services come back only through a takeover (master down, arbiter agreeing)
            self.fenced = False
            out.append(Emit("ha_unfenced", {"services": self.services, "restart": "by takeover, if the "
                                            "master is down and the arbiter agrees"}))

    def _blind_round(self, rnd: Round, out: list[Action]) -> None:
        """Neither a failure nor health: the good streak ends (the failback hold starts again), the failing
        streak is kept for a moment; ``fall`` blind rounds in a row are an isolation, after which the peer's
        failure must be proven again by fresh rounds."""
        self.blind += 1
        self.goods = 0
        self.good_since = None
        if self.blind >= self.p.fall and not self.isolated:
            self.isolated = True
            self.isolation_cause = "unresolved" if rnd.unresolved else "no_witness"
            self.fails = 0
            self.fail_since = None
            data: dict[str, Any] = {"cause": self.isolation_cause, "witnesses_reached": False,
                                    "rounds": self.blind, "master_down_since_mono": self.down_since}
            if rnd.unresolved:
                data["witnesses_reached"] = None
                data["error"] = rnd.reason
            out.append(Emit("ha_isolated", data))

    def tick(self, now: float, maintenance: bool | None = None) -> list[Action]:
        """Time passing without a round (e.g. maintenance ended): re-evaluate."""
        if maintenance is not None:
            self.maintenance = maintenance
        out: list[Action] = []
        self._check_flapping(now, out)
        out += self._reconcile(now)
        return out

    def awaiting_arbiter(self, now: float) -> bool:
        """The slave has its ``fall`` bad rounds and only the arbiter's word is missing, within the first
        ``partition_after`` seconds (an etcd lease that may still expire): worth a look between rounds."""
        v = self.vote
        return (self.p.role == "slave" and self.p.partition_after > 0 and self.pending is None
                and self.services != "running" and not self.isolated and not self.frozen
                and self.peer_up is not False and self.fails >= self.p.fall and self.fail_since is not None
                and now - self.fail_since <= self.p.partition_after + 1.0
                and v is not None and v.reachable and v.peer_up is not False)

    def revote(self, vote: Vote, now: float) -> list[Action]:
        """A fresh look at the arbiter between rounds, while ``awaiting_arbiter``: the last rounds' verdict
        stands (no round is counted), the arbiter's word is new. The slave takes over the moment an expired
        lease says the master is down, not at its next round."""
        if not self.awaiting_arbiter(now):
            return []
        self.vote = vote
        out: list[Action] = []
        if vote.reachable and vote.peer_up is False:
            self._transition(False, Round(now, now, False, self.reason, vote=vote), out)
            self._check_flapping(now, out)
            out += self._reconcile(now)
        return out

    def ownership_lost(self, reason: str) -> list[Action]:
        """The arbiter says this node, running the services, no longer owns them (an etcd lease no longer
        proven, an owner moved): with self-fencing, stop them before the other node may start."""
        if (not self.p.has_arbiter or not self.p.self_fence or self.services == "stopped" or self.fenced
                or self.pending is not None or self.maintenance):
            return []
        self.pending = "fence"
        return [Fence({"reason": reason, "role": self.p.role, "services_before": self.services})]

    def own_services(self, state: ServicesState, now: float) -> list[Action]:
        """Master with an arbiter: its own services as the backend's status command reads them now.

        Found stopped while they should run (not fenced, nothing pending): they died behind wazod's back (an
        Asterisk crash). The owner's duty: give the ownership up (``Release``), so the slave can take over,
        and start nothing before the ownership is claimed back. Found running again after a release
        (systemd restarted them): this node serves again and claims the ownership when it is free."""
        if self.p.role != "master" or not self.p.has_arbiter or self.pending is not None or state == "unknown":
            return []
        if state == "stopped" and self.services == "running" and not self.fenced and self.released_at is None:
            self.services = "stopped"
            self.released_at = now
            self.pending = "release"
            return [Release({"reason": "services_stopped", "role": self.p.role})]
        if state == "running" and self.released_at is not None:
            self.released_at = None
            self.services = "running"
        return []

    def action_done(self, kind: str, ok: bool, now: float) -> list[Action]:
        """The monitor finished a Takeover or Failback."""
        self.pending = None
        if kind == "release":
            if not ok:  # the key still names this node (and its lease is kept alive): the next check retries
                self.released_at = None
                self.services = "running"
            return self._reconcile(now)
        if kind == "fence":
            self.fenced = True  # even a failed stop: the next try comes from a new decision
            self.services = "stopped" if ok else "unknown"
            return self._reconcile(now)
        if kind == "unfence" and ok:
            self.fenced = False
            self.released_at = None
        if ok:
            self.services = "running" if kind in ("takeover", "unfence") else "stopped"
            self.backoff = self.p.action_backoff
            self.next_action_at = float("-inf")
        else:
            self.services = "unknown"
            self.next_action_at = now + self.backoff
            self.backoff = min(self.backoff * 2, self.p.max_backoff)
        return self._reconcile(now)

    # --- derived ---------------------------------------------------------------
    @property
    def frozen(self) -> str | None:
        if self.flapping:
            return "flapping"
        if self.maintenance:
            return "maintenance"
        return None

    @property
    def state(self) -> str:
        if self.pending == "fence":
            return "fencing"
        if self.fenced:
            return "fenced"
        if self.pending == "release" or (self.released_at is not None and self.p.role == "master"):
            return "released"
        if self.p.role == "master":
            return "master"
        if self.pending == "takeover":
            return "taking_over"
        if self.pending == "failback":
            return "failing_back"  # a failback to a serving master goes on while flapping
        if self.flapping:
            return "flapping"
        if self.isolated:
            return "isolated" if self.services != "running" else "active"  # cut off, still holding them
        if self.partition_reported and self.fails and self.peer_up is not False and self.services != "running":
            return "partitioned"
        if self.peer_up is None:
            return "starting"
        if self.services == "running":
            return "failback_pending" if self.peer_up else "active"
        if self.peer_up:
            return "standby" if self.services == "stopped" else "failback_pending"
        return "active" if self.services == "running" else "master_down"

    # --- internals -------------------------------------------------------------
    def _names(self) -> tuple[str, str]:
        return ("ha_slave_up", "ha_slave_down") if self.p.role == "master" else ("ha_master_up", "ha_master_down")

    def _transition(self, up: bool, rnd: Round, out: list[Action]) -> None:
        previous = self.peer_up
        self.peer_up = up
        if previous is not None:
            self.transitions.append(rnd.ended)
        if up:
            data = {"rounds": self.goods, "first_good_mono": self.good_since, "decided_mono": rnd.ended}
            if self.down_since is not None:
                data["down_for_s"] = round(rnd.ended - self.down_since, 3)
            self.down_since = None
            self.isolated = False
        else:
            self.down_since = rnd.ended
            data = {"reason": self.reason, "rounds": self.fails, "first_failure_mono": self.fail_since,
                    "decided_mono": rnd.ended,
                    "detection_s": round(rnd.ended - self.fail_since, 3) if self.fail_since is not None else None}
        if previous is None and up:
            self.last_reported = True  # start-up with a healthy peer: nothing to tell
            return
        if not self.flapping:
            self._report(up, data, out)

    def _report(self, up: bool, data: dict[str, Any], out: list[Action]) -> None:
        up_name, down_name = self._names()
        out.append(Emit(up_name if up else down_name, data))
        self.last_reported = up

    def _check_flapping(self, now: float, out: list[Action]) -> None:
        while self.transitions and self.transitions[0] <= now - self.p.flap_window:
            self.transitions.popleft()
        count = len(self.transitions)
        if not self.flapping and count > self.p.flap_limit:
            self.flapping = True
            out.append(Emit("ha_flapping", {"active": True, "transitions": count,
                                            "window_s": self.p.flap_window, "limit": self.p.flap_limit}))
        elif self.flapping and count <= self.p.flap_limit:
            self.flapping = False
            out.append(Emit("ha_flapping", {"active": False, "transitions": count,
                                            "window_s": self.p.flap_window, "limit": self.p.flap_limit}))
            if self.peer_up is not None and self.peer_up != self.last_reported:
                self._report(self.peer_up, {"after_flapping": True}, out)

    def _fence_due(self) -> bool:
        return (self.p.has_arbiter and self.p.self_fence and self.blind >= self.p.fall
                and self.services != "stopped" and not self.fenced)

    def _reconcile(self, now: float) -> list[Action]:
        if self.pending is not None:
            return []
        if self._fence_due() and not self.maintenance:
            # no quorum: stop our own services before the other side may take over (not even maintenance
            # holds this: serving without quorum is the split brain)
            self.pending = "fence"
            return [Fence({"rounds": self.blind, "role": self.p.role, "services_before": self.services})]
        if self.p.role == "master":
            return self._reconcile_master(now)
        if self.peer_up is None:
            return []
        out: list[Action] = []
        if self.isolated and self.services != "running":
            return out
        if self.maintenance or now < self.next_action_at:
            return out
        if self.peer_up is False and self.services != "running" and self.fails >= self.p.fall:
            # fall fresh bad rounds (an isolation or one good round in between resets them)
            if self.flapping:
                return out  # flap damping delays a takeover (the slave must not take over again and again)
            if self.p.has_arbiter and not (self.vote is not None and self.vote.reachable
                                           and self.vote.peer_up is False):
                return out  # the arbiter must agree that the master is down
            self.pending = "takeover"
            out.append(Takeover({"reason": self.reason, "first_failure_mono": self.fail_since,
                                 "decided_mono": self.down_since, "services_before": self.services}))
        elif self.peer_up is True and self.services != "stopped":
            if self.flapping and not self._master_serving():
                return out
            held = now - self.good_since if self.good_since is not None else 0.0
            if held >= self.p.failback_hold:
                self.pending = "failback"
                out.append(Failback({"master_up_for_s": round(held, 3), "services_before": self.services}))
        return out

    def _master_serving(self) -> bool:
        """While flapping, whether a failback may go on: the master serves again (up by this node's rounds
        and, with an arbiter, for the arbiter too). Holding it then would leave both nodes active for the
        rest of the flap window; the failback's own damping is ``failback_hold`` of continuous health."""
        if self.peer_up is not True:
            return False
        if not self.p.has_arbiter:
            return True
        return self.vote is not None and self.vote.reachable and self.vote.peer_up is True

    def _reconcile_master(self, now: float) -> list[Action]:
        """A fenced master starts its services again once it has its quorum back (reaches its slave or the
        arbiter) and the slave does not hold them. Reaching the slave directly while the arbiter says the
        slave holds them is the ordinary failback: both run until the slave gives back (failback_hold)."""
        vote = self.vote
        if self.released_at is not None and not self.fenced:
            # its own services died and it gave the ownership up: the slave may take over. It starts them
            # again itself only if nobody took the ownership within failback_hold (claiming it first)
            if (self.blind or self.maintenance or now < self.released_at + self.p.failback_hold
                    or now < self.next_action_at or vote is None or not vote.reachable or vote.owner is not None):
                return []
            self.pending = "unfence"
            return [Unfence({"slave_holds": False, "arbiter_reachable": True, "after_release": True})]
        if not self.fenced or self.blind or self.maintenance or now < self.next_action_at:
            return []  # flap damping does not hold it: the master is where the services belong
        slave_holds = vote is not None and vote.reachable and vote.owner == "peer"
        if slave_holds and not self.goods:
            return []
        self.pending = "unfence"
        return [Unfence({"slave_holds": slave_holds, "arbiter_reachable": bool(vote and vote.reachable)})]
