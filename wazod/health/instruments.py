"""What the daemon counts while it runs, for /metrics, without loading prometheus_client.

Why apart from ``wazod.health.metrics``: the HA monitor observes every probe's
round trip twice a second and the HA transitions must be counted from the
daemon's start, but the Prometheus library is only needed when somebody
scrapes /metrics. Keeping the counting here (plain Python) lets a node that
is never scraped leave the library unloaded; ``wazod.health.metrics`` turns
these into Prometheus families at scrape time.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

# seconds: from a loopback answer to a SIP stack answering late
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RttHistogram:
    """``wazod_ha_probe_rtt_seconds``: round trips of the answered HA probes (Prometheus histogram rules)."""

    name = "wazod_ha_probe_rtt_seconds"
    documentation = "Round-trip time of the HA probes of the other node (successful probes only)"

    def __init__(self, buckets: tuple[float, ...] = RTT_BUCKETS):
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # /metrics renders in a thread

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], counts, strict=True):
            running += count
            out.append((bound, running))
        return out, total

    def collect(self) -> Iterator[Any]:
        """The Prometheus family (imports the library: call it at scrape time)."""
        from prometheus_client.core import HistogramMetricFamily

        buckets, total = self.snapshot()
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


PROBE_RTT = RttHistogram()


class ProbeRounds:
    """``wazod_ha_probe_rounds_total``: HA probe rounds, by result: shows the watch is alive (a stalled
    one stops counting) and how often the peer answered."""

    name = "wazod_ha_probe_rounds"
    documentation = "HA probe rounds of the other node, by result (good: the peer answered as required)"

    def __init__(self):
        self.counts: Counter[str] = Counter({"good": 0, "failed": 0})
        self._lock = threading.Lock()

    def inc(self, good: bool) -> None:
        with self._lock:
            self.counts["good" if good else "failed"] += 1

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=["result"])
        with self._lock:
            for result, n in sorted(self.counts.items()):
                family.add_metric([result], n)
        yield family


PROBE_ROUNDS = ProbeRounds()


class HaTransitions:
    """HA state changes since the daemon started, by new state, counted from the status board."""

    def __init__(self, status):
        self.counts: Counter[str] = Counter()
        self._state = status.get("ha_state")
        status.subscribe(self._on_status)

    def _on_status(self, snapshot: dict) -> None:
        state = snapshot.get("ha_state")
        if state != self._state:
            self.counts[str(state)] += 1
            self._state = state


EXTRA_COLLECTORS: list = []  # collectors of other parts, registered when /metrics is first served


def add_collector(collector) -> None:
    """Have ``collector`` served on /metrics (now if the exposition is loaded, else when it is)."""
    import sys

    EXTRA_COLLECTORS.append(collector)
    metrics = sys.modules.get("wazod.health.metrics")
    if metrics is not None:
        metrics.REGISTRY.register(collector)
