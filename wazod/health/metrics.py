"""Prometheus metrics of the node, served by GET /metrics.

Two kinds:

- what the daemon counts as it runs, kept in ``wazod.health.instruments``
  without this library (``PROBE_RTT``, the probes' round trips; ``PROBE_ROUNDS``,
  the probe rounds by result; the HA transitions), turned into families here at scrape time;
- everything else is read at scrape time from what the daemon already keeps
  (status board, job records in the state directory, the event store, the
  health checks), so no part has to remember to update a metric, and the
  figures cannot drift from ``wazod status``.

Names are prefixed ``wazod_``; timestamps are Unix seconds; levels are
0 ok, 1 warning, 2 critical.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from wazod import __version__
from wazod.health import instruments
from wazod.health.instruments import PROBE_ROUNDS, PROBE_RTT, HaTransitions
from wazod.health.levels import SEVERITY, UNKNOWN
from wazod.jobs import JOBS

REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY.register(PROBE_RTT)
REGISTRY.register(PROBE_ROUNDS)
ProcessCollector(registry=REGISTRY, namespace="wazod")  # the daemon's own CPU, memory, fds
for _collector in instruments.EXTRA_COLLECTORS:  # added by other parts before this module was loaded
    REGISTRY.register(_collector)

ROLES = ("master", "slave", "disabled")
RESULTS = ("ok", "failed", "skipped")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _ts(value) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _number(data: dict, *keys: str) -> float | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            return float(sum(value.values()))
    return None


def outbox_cursors(db_path: Path) -> dict[str, int]:
    """Every consumer's acknowledged seq, read from the event store without touching it."""
    if not db_path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2)) as db:
        try:
            return {c: int(s) for c, s in db.execute("SELECT consumer, seq FROM cursors")}
        except sqlite3.Error:
            return {}


class DaemonCollector:
    """Reads the daemon's state at scrape time. One per running daemon (per Context)."""

    def __init__(self, ctx, transitions: HaTransitions | None = None):
        """``transitions``: counted since the daemon started (built with the endpoint, before any scrape)."""
        self.ctx = ctx
        self._transitions = transitions or HaTransitions(ctx.status)

    @property
    def transitions(self) -> Tally[str]:
        return self._transitions.counts

    def capture(self) -> dict:
        """What lives in the event loop's objects, copied there (the rest is read from files in a thread)."""
        ctx = self.ctx
        checks = ctx.registry.get("health")
        active = ctx.registry.get("maintenance_active")
        try:
            maintenance = bool(active()) if active is not None else None
        except Exception:
            maintenance = None
        return {"config": ctx.config, "status": ctx.status.snapshot(),
                "levels": checks.levels() if checks is not None else None,
                "maintenance": maintenance, "transitions": dict(self.transitions)}

    def collect(self, captured: dict | None = None) -> Iterator[Metric]:
        captured = captured or self.capture()
        config, status = captured["config"], captured["status"]
        yield from self._node(config, status, captured["transitions"])
        yield from self._jobs(config, status)
        yield from self._outbox(config)
        yield from self._berofos(status)
        yield from self._health(status, captured["levels"])
        yield from self._maintenance(status, captured["maintenance"])

    def _node(self, config, status, transitions) -> Iterator[Metric]:
        info = GaugeMetricFamily("wazod_info", "This node and daemon", labels=["node", "role", "version"])
        info.add_metric([config.node_name, config.role, __version__], 1)
        yield info
        role = GaugeMetricFamily("wazod_role", "1 for the node's HA role", labels=["role"])
        for r in ROLES:
            role.add_metric([r], 1 if config.role == r else 0)
        yield role
        state = GaugeMetricFamily("wazod_ha_state", "1 for the current HA state", labels=["state"])
        state.add_metric([str(status.get("ha_state") or "unknown")], 1)
        yield state
        since = _ts(status.get("ha_since"))
        if since is not None:
            yield GaugeMetricFamily("wazod_ha_state_since_timestamp_seconds", "When the HA state last changed",
                                    value=since)
        trans = CounterMetricFamily("wazod_ha_transitions", "HA state changes since the daemon started, by new state",
                                    labels=["to"])
        for to, n in sorted(transitions.items()):
            trans.add_metric([to], n)
        yield trans
        services = GaugeMetricFamily("wazod_services_state", "1 for the telephony services' state", labels=["state"])
        services.add_metric([str(status.get("services") or "unknown")], 1)
        yield services

    def _jobs(self, config, status) -> Iterator[Metric]:
        last_ok = GaugeMetricFamily("wazod_job_last_success_timestamp_seconds", "Start of the last successful run",
                                    labels=["job"])
        last_run = GaugeMetricFamily("wazod_job_last_run_timestamp_seconds", "Start of the last run", labels=["job"])
        duration = GaugeMetricFamily("wazod_job_last_duration_seconds", "Duration of the last run", labels=["job"])
        result = GaugeMetricFamily("wazod_job_last_result", "1 for the last run's result", labels=["job", "result"])
        nxt = GaugeMetricFamily("wazod_job_next_run_timestamp_seconds", "Next scheduled run", labels=["job"])
        rows = GaugeMetricFamily("wazod_purge_rows_deleted", "Rows deleted by the last purge", labels=[])
        table_rows = GaugeMetricFamily("wazod_purge_table_rows_deleted", "Rows deleted by the last purge, per table",
                                       labels=["table"])
        backup = GaugeMetricFamily("wazod_backup_bytes", "Size of the archives written by the last backup",
                                   labels=["kind"])
        source = GaugeMetricFamily("wazod_backup_source_bytes", "Bytes of files read by the last data backup",
                                   labels=[])
        next_runs = status.get("next_runs") or {}
        for name in JOBS:
            rec = self.ctx.state.read(f"job-{name}", {}) or {}
            if not rec:
                continue
            for family, value in ((last_ok, _ts(rec.get("last_success"))), (last_run, _ts(rec.get("last_run"))),
                                  (duration, rec.get("duration")), (nxt, _ts(next_runs.get(name)))):
                if isinstance(value, (int, float)):
                    family.add_metric([name], float(value))
            if rec.get("last_result") in RESULTS:
                for r in RESULTS:
                    result.add_metric([name, r], 1 if rec["last_result"] == r else 0)
            data = rec.get("data") or {}
            if name == "purge":
                self._purge(data, rows, table_rows)
            elif name == "backup":
                self._backup(data, backup, source)
        yield from (last_ok, last_run, duration, result, nxt, rows, table_rows, backup, source)

    @staticmethod
    def _purge(data: dict, rows: GaugeMetricFamily, table_rows: GaugeMetricFamily) -> None:
        """The purge job's data: ``deleted`` (total) and ``tables: {name: {deleted: n}}``."""
        total = _number(data, "deleted", "rows_deleted")
        tables = data.get("tables") if isinstance(data.get("tables"), dict) else {}
        for table, entry in sorted(tables.items()):
            value = entry.get("deleted") if isinstance(entry, dict) else entry
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                table_rows.add_metric([table], value)
        if total is not None:
            rows.add_metric([], total)

    @staticmethod
    def _backup(data: dict, backup: GaugeMetricFamily, source: GaugeMetricFamily) -> None:
        """The backup job's data: ``data``/``db`` entries with the archive ``size``, ``data.bytes`` read."""
        for kind in ("data", "db"):
            entry = data.get(kind)
            if isinstance(entry, dict) and isinstance(entry.get("size"), (int, float)):
                backup.add_metric([kind], entry["size"])
        entry = data.get("data")
        if isinstance(entry, dict) and isinstance(entry.get("bytes"), (int, float)):
            source.add_metric([], entry["bytes"])

    def _outbox(self, config) -> Iterator[Metric]:
        store = self.ctx.emitter.store
        last = store.last_seq()
        yield GaugeMetricFamily("wazod_events_last_seq", "seq of the node's last event", value=last)
        depth = GaugeMetricFamily("wazod_outbox_depth", "Events not yet delivered, per output", labels=["consumer"])
        for consumer in sorted(outbox_cursors(Path(store.path))):
            depth.add_metric([consumer], store.depth(consumer))
        yield depth

    def _berofos(self, status) -> Iterator[Metric]:
        mode = GaugeMetricFamily("wazod_berofos_mode", "Relay mode per device (1 lines on the master, 0 on the slave)",
                                 labels=["device"])
        for device, info in sorted((status.get("berofos") or {}).items()):
            value = info.get("mode") if isinstance(info, dict) else info
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                mode.add_metric([device], value)
        yield mode

    def _health(self, status, levels) -> Iterator[Metric]:
        level = GaugeMetricFamily("wazod_health_check_level", "Reported level per check: 0 ok, 1 warning, 2 critical",
                                  labels=["check"])
        levels = levels if levels is not None else {
            name: (v.get("level") if isinstance(v, dict) else v) for name, v in (status.get("health") or {}).items()}
        for check, lvl in sorted(levels.items()):
            if lvl in SEVERITY and lvl != UNKNOWN:
                level.add_metric([check], SEVERITY[lvl])
        yield level

    def _maintenance(self, status, active) -> Iterator[Metric]:
        on = active if active is not None else bool((status.get("maintenance") or {}).get("active"))
        yield GaugeMetricFamily("wazod_maintenance_active", "1 while maintenance mode is on", value=1 if on else 0)


class _Exposition:
    """The module's instruments plus one daemon's collector, as one registry-like object."""

    def __init__(self, collector: DaemonCollector, captured: dict | None):
        self._collector = collector
        self._captured = captured

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self._collector.collect(self._captured)


def render(collector: DaemonCollector, captured: dict | None = None) -> bytes:
    """The text exposition format of every metric.

    Call ``collector.capture()`` in the event loop and pass it here when
    rendering in a thread, so live objects are never read from two threads.
    """
    return generate_latest(_Exposition(collector, captured))
