"""Maintenance on /metrics: since, until, and who and why (the on/off gauge is the health part's).

The status endpoint's registry takes collectors from other parts
(``wazod.health.instruments.add_collector``); this one reads the maintenance record the
daemon part already holds (a dict replaced whole on every change, so reading
it from the scrape thread is safe). One collector per process, pointed at the
latest daemon part.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from wazod.maintenance.state import is_active

if TYPE_CHECKING:
    from prometheus_client.core import Metric

_part: weakref.ref | None = None
_registered = False


class MaintenanceCollector:
    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # at scrape time only

        part = _part() if _part is not None else None
        record = part.cached_record() if part is not None else {}
        active = is_active(record)
        since = GaugeMetricFamily("wazod_maintenance_since_timestamp_seconds",
                                  "When the current maintenance started (absent when off)")
        until = GaugeMetricFamily("wazod_maintenance_until_timestamp_seconds",
                                  "When the current maintenance ends by itself (absent when off)")
        info = GaugeMetricFamily("wazod_maintenance_info", "The current maintenance: who set it, why, where from",
                                 labels=["set_by", "reason", "origin"])
        if active:
            since.add_metric([], float(record.get("since_ts") or 0))
            until.add_metric([], float(record["until_ts"]))
            info.add_metric([str(record.get("set_by") or ""), str(record.get("reason") or ""),
                             str(record.get("origin") or "")], 1)
        yield since
        yield until
        yield info


def attach(part) -> None:
    """Point /metrics at ``part`` (registering the collector once per process)."""
    global _part, _registered
    _part = weakref.ref(part)
    if _registered:
        return
    from wazod.health.instruments import add_collector

    add_collector(MaintenanceCollector())
    _registered = True
