"""Check results and the hysteresis that turns raw observations into reported levels.

A check observes a level on every run; what the node *reports* (in /health,
``wazod status``, metrics and events) changes only once the new level has
been seen on ``fall`` consecutive runs (getting worse) or ``rise`` consecutive
runs (getting better). One bad run never flaps the pair's health, and an
event is sent per level change, never per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wazod.events import now_iso

OK, WARNING, CRITICAL, UNKNOWN = "ok", "warning", "critical", "unknown"
SEVERITY = {UNKNOWN: 0, OK: 0, WARNING: 1, CRITICAL: 2}
# /health's overall status for the worst reported level
OVERALL = {UNKNOWN: "ok", OK: "ok", WARNING: "degraded", CRITICAL: "critical"}


def worst(levels) -> str:
    result = OK
    for level in levels:
        if SEVERITY[level] > SEVERITY[result]:
            result = level
    return result


@dataclass
class CheckResult:
    """One run of one check: its level, a one-line summary for people, values for machines."""

    level: str
    summary: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Transition:
    check: str
    previous: str
    level: str
    result: CheckResult

    @property
    def event(self) -> str:
        return "health_degraded" if SEVERITY[self.level] > SEVERITY[self.previous] else "health_recovered"

    def event_data(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "previous": self.previous,
                "summary": self.result.summary, "values": self.result.values}


class LevelTracker:
    """Reported level of one check, with fall/rise hysteresis."""

    def __init__(self, check: str, level: str = UNKNOWN, since: str | None = None):
        self.check = check
        self.level = level
        self.since = since or now_iso()
        self._pending: str | None = None
        self._count = 0
        self.last: CheckResult | None = None
        self.checked_at: str | None = None

    def observe(self, result: CheckResult, fall: int, rise: int) -> Transition | None:
        """Record one run; returns the transition when the reported level changes."""
        self.last = result
        self.checked_at = now_iso()
        observed = result.level
        if self.level == UNKNOWN and observed == OK:
            # first run on a fresh node: nothing to announce
            self.level, self.since, self._pending, self._count = OK, self.checked_at, None, 0
            return None
        if observed == self.level:
            self._pending, self._count = None, 0
            return None
        if observed == self._pending:
            self._count += 1
        else:
            self._pending, self._count = observed, 1
        needed = fall if SEVERITY[observed] > SEVERITY[self.level] else rise
        if self._count < needed:
            return None
        previous = OK if self.level == UNKNOWN else self.level
        self.level, self.since, self._pending, self._count = observed, self.checked_at, None, 0
        if SEVERITY[observed] == SEVERITY[previous]:
            return None
        return Transition(self.check, previous, observed, result)
