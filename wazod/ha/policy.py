"""From one round of probe results to one verdict: is the peer good this round?

Pure and tiny on purpose: the rule that decides whether a round counts as a
failure is what separates "Asterisk died on a live host" (Wazo's blind spot:
it only pings) from "the link lost a few packets".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw of one target during one round.

    ``ok``: the probe's question got a good answer (echo reply, SIP response,
    TCP connect, healthy status). ``reachable``: the host answered *something*
    (also an ICMP port unreachable, a TCP reset, an unhealthy status), so it is
    alive even when ``ok`` is False.
    """

    probe: str  # icmp | sip | tcp:<port> | peer | witness
    target: str
    ok: bool
    reachable: bool
    rtt: float | None = None  # seconds to the first good answer
    sent: int = 0
    detail: str = ""
    pending: bool = False

    def to_dict(self) -> dict:
        return {
            "probe": self.probe, "target": self.target, "ok": self.ok, "reachable": self.reachable,
            "pending": self.pending,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3), "sent": self.sent,
            "detail": self.detail,
        }


POLICIES = ("unreachable_or_sip_dead", "unreachable", "any_failed")


def judge(policy: str, results: Iterable[ProbeResult]) -> tuple[bool, str]:
    """``(good, reason)`` of a round under ``policy``; reason is ``ok``, ``unreachable``, ``sip_dead`` or
    ``failed:<probes>``. An empty round (no probe configured) is bad: nothing proves the peer alive."""
    if policy not in POLICIES:
        raise ValueError(f"unknown HA policy {policy!r} (expected one of {', '.join(POLICIES)})")
    results = list(results)
    if not results or not any(r.reachable for r in results):
        return False, "unreachable"
    if policy == "unreachable":
        return True, "ok"
    if policy == "unreachable_or_sip_dead":
        sip = [r for r in results if r.probe == "sip"]
        if sip and not any(r.ok or r.pending for r in sip):
            return False, "sip_dead"
        return True, "ok"
    failed = sorted({r.probe for r in results if not r.ok and not r.pending})
    if failed:
        return False, "failed:" + ",".join(failed)
    return True, "ok"
