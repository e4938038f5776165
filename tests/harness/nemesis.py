"""A Jepsen-style nemesis for the HA pair: random faults, heals, and an invariant checker.

Why: each HA rule is proven by its own lab test, but the bugs of issue 19 came from sequences (an isolation
after a failback, a heal one round before another). The nemesis runs a BridgeLab pair with an arbiter on the
third host (which also carries the berofos simulator) through faults one after the other:

* ``cut_nodes``: the link between master and slave alone;
* ``master_all`` / ``slave_all``: a node cut from everyone (blackholed);
* ``slave_witness``: the slave cut from the third host (arbiter and berofos);
* ``master_death``: the master host dies (daemon killed, Asterisk killed, blackholed); the heal boots it
  (daemon started again, its services started by the daemon once it has its quorum);
* ``asterisk_kill``: the master's Asterisk dies on a live host; the heal restarts it (as systemd would).

While it runs, a sampler thread reads both nodes' service markers (the stand-ins' pid files) every 0.1 s.
The checker counts: seconds with both nodes active beyond the grace (per overlap episode), berofos mode
writes per fault (from the simulator), the takeover delay after a real master death (fault -> the slave's
``ha_takeover_started``), the convergence after each heal (heal -> master serving alone, owner at the
arbiter, lines on the master) and the fences of a healthy master (the price of self-fencing).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ha_lab import FAST
from .util import wait_for

# the lab's short timings; flap_window 10 s: faults spaced more than that are each judged on their own
# (flap damping, which freezes a slave seeing too many transitions, has its own tests)
TIMINGS = {**FAST, "flap_window": 10.0}

FAULTS = ("cut_nodes", "master_all", "slave_all", "slave_witness", "master_death", "asterisk_kill")
GRACE = 10.0


class ActiveSampler:
    """Both nodes' service markers, every ``period`` s, in a thread: the instants with both active."""

    def __init__(self, pair, period: float = 0.1):
        self.pair = pair
        self.period = period
        self.both: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pair.master.standin_pid() and self.pair.slave.standin_pid():
                self.both.append(time.monotonic())
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def episodes(self) -> list[tuple[float, float]]:
        """Runs of consecutive both-active samples, as (start, end)."""
        out: list[tuple[float, float]] = []
        for t in self.both:
            if out and t - out[-1][1] <= 3 * self.period:
                out[-1] = (out[-1][0], t)
            else:
                out.append((t, t))
        return out

    def beyond_grace(self, grace: float = GRACE) -> float:
        return sum(max(0.0, end - start - grace) for start, end in self.episodes())


@dataclass
class FaultRecord:
    kind: str
    held_s: float
    mode_writes: int = 0
    ownership_moves: int = 0  # takeovers + failbacks completed in the cycle
    takeover_s: float | None = None  # fault -> ha_takeover_started (master deaths)
    converged_s: float | None = None  # heal -> converged
    master_fenced: bool = False
    started: float = 0.0  # monotonic
    ended: float = 0.0
    longest_overlap_s: float = 0.0  # the longest both-active episode that began in this cycle


@dataclass
class NemesisReport:
    faults: list[FaultRecord] = field(default_factory=list)
    both_active_beyond_grace_s: float = 0.0
    overlap_episodes: int = 0
    longest_overlap_s: float = 0.0

    def counts(self) -> dict[str, Any]:
        deaths = [f.takeover_s for f in self.faults if f.kind in ("master_death", "asterisk_kill")]
        conv = [f.converged_s for f in self.faults]
        return {
            "faults": len(self.faults),
            "by_kind": {k: sum(1 for f in self.faults if f.kind == k) for k in FAULTS},
            "both_active_beyond_grace_s": round(self.both_active_beyond_grace_s, 1),
            "overlap_episodes": self.overlap_episodes,
            "longest_overlap_s": round(self.longest_overlap_s, 1),
            "max_mode_writes_per_move": max((f.mode_writes - f.ownership_moves for f in self.faults), default=0),
            "mode_writes_total": sum(f.mode_writes for f in self.faults),
            "ownership_moves_total": sum(f.ownership_moves for f in self.faults),
            "takeover_after_master_death_s": [None if t is None else round(t, 2) for t in deaths],
            "takeover_after_master_death_max_s": max((t for t in deaths if t is not None), default=None),
            "takeovers_missing_after_master_death": sum(1 for t in deaths if t is None),
            "converged_after_heal_max_s": max((c for c in conv if c is not None), default=None),
            "not_converged": sum(1 for c in conv if c is None),
            "healthy_master_fences": sum(1 for f in self.faults if f.master_fenced and f.kind in
                                         ("slave_all", "slave_witness", "cut_nodes")),
            "master_fences": sum(1 for f in self.faults if f.master_fenced),
            "faults_with_overlap_beyond_grace": [(f.kind, round(f.longest_overlap_s, 1)) for f in self.faults
                                                 if f.longest_overlap_s > GRACE],
        }


def converged(pair) -> bool:
    """Master serving alone, owner of the services at the arbiter, lines on the master, slave standby."""
    if not pair.master.standin_pid() or pair.slave.standin_pid():
        return False
    if pair.slave.status().get("ha_state") != "standby":
        return False
    if pair.arbiter_view().get("owner") != pair.lab.master.addr:
        return False
    return pair.berofos_state().get("mode") == 1


class Nemesis:
    def __init__(self, pair, failback_hold: float, log: Callable[[str], None] = print):
        self.pair = pair
        self.failback_hold = failback_hold
        self.log = log
        self.report = NemesisReport()
        self.sampler: ActiveSampler | None = None

    # --- faults -------------------------------------------------------------------------------
    def _inject(self, kind: str) -> None:
        lab, pair = self.pair.lab, self.pair
        if kind == "cut_nodes":
            lab.cut("master", "slave")
        elif kind == "master_all":
            lab.blackhole("master")
        elif kind == "slave_all":
            lab.blackhole("slave")
        elif kind == "slave_witness":
            lab.cut("slave", "witness")
        elif kind == "master_death":
            lab.blackhole("master")
            pair.master.proc.kill()
            pair.master.proc.wait(10)
            pair.master.kill_standin()
        elif kind == "asterisk_kill":
            pair.master.kill_standin()
        else:
            raise ValueError(kind)

    def _heal(self, kind: str) -> None:
        lab, pair = self.pair.lab, self.pair
        lab.heal_all()
        if kind == "master_death":
            pair.master.start()  # the host boots: wazod starts, finds its services stopped, unfences them
        elif kind == "asterisk_kill":
            pair.start_master_asterisk()  # systemd restarts it

    # --- one cycle ------------------------------------------------------------------------------
    def cycle(self, kind: str, hold: float) -> FaultRecord:
        pair = self.pair
        rec = FaultRecord(kind, hold, started=time.monotonic())
        writes0 = pair.berofos_state().get("mode_changes", 0)
        marks = pair.master.last_seq(), pair.slave.last_seq()
        t0 = time.time()
        self._inject(kind)
        time.sleep(hold)
        if kind in ("master_death", "asterisk_kill"):
            started = pair.slave.events("ha_takeover_started", after=marks[1])
            if started:
                rec.takeover_s = _event_time(started[0]) - t0
        healed = time.monotonic()
        self._heal(kind)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: converged(pair), timeout=self.failback_hold + 30, interval=0.2)
            rec.converged_s = time.monotonic() - healed
        rec.mode_writes = pair.berofos_state().get("mode_changes", 0) - writes0
        names = [e["name"] for e in pair.slave.events(after=marks[1])]
        rec.ownership_moves = names.count("ha_takeover_completed") + names.count("ha_failback_completed")
        rec.master_fenced = bool(pair.master.events("ha_fenced", after=marks[0]))
        rec.ended = time.monotonic()
        self.log(f"  {kind:<14} held {hold:4.1f} s  writes {rec.mode_writes} moves {rec.ownership_moves}  "
                 f"takeover {_fmt(rec.takeover_s)}  converged {_fmt(rec.converged_s)}"
                 + ("  master fenced" if rec.master_fenced else ""))
        self.report.faults.append(rec)
        return rec

    def start(self) -> None:
        """Start sampling both nodes' service markers (before the first fault)."""
        self.sampler = ActiveSampler(self.pair)

    def finish(self) -> NemesisReport:
        """Stop sampling; fold the overlaps into the report."""
        self.sampler.stop()
        self.report.both_active_beyond_grace_s = self.sampler.beyond_grace()
        episodes = self.sampler.episodes()
        for rec in self.report.faults:
            rec.longest_overlap_s = max((e - b for b, e in episodes if rec.started <= b <= rec.ended), default=0.0)
        self.report.overlap_episodes = len(episodes)
        self.report.longest_overlap_s = max((e - s for s, e in episodes), default=0.0)
        return self.report

    def run(self, kinds: list[str], hold: tuple[float, float], rng: random.Random) -> NemesisReport:
        self.start()
        try:
            for kind in kinds:
                self.cycle(kind, rng.uniform(*hold))
        finally:
            self.finish()
        return self.report


def _event_time(event: dict[str, Any]) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(event["timestamp"]).timestamp()


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:5.2f} s"
