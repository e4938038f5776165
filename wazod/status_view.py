"""``wazod status``: the contract's document, from the live daemon's snapshot or the saved one.

The daemon writes ``status.json`` on every change; job records are
``job-<name>.json``. Whether the daemon runs is read from its lock (the
kernel releases it when the process dies, so a crash cannot lie).

The readable view is meant for an administrator at a glance: what is
wrong comes first (daemon down, maintenance, failed jobs, health problems),
the rest fits on a screen; colour only on a terminal (and never with
``NO_COLOR``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from typing import Any

from wazod.jobs import JOBS
from wazod.state import StateStore


def daemon_running(state_dir) -> bool:
    path = os.path.join(state_dir, "locks", "daemon.lock")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _next_run(config, name: str) -> str | None:
    from wazod.scheduler import make_trigger

    section = getattr(config, name)
    try:
        trigger = make_trigger(section.schedule)
    except Exception:
        return None
    nxt = trigger.get_next_fire_time(None, dt.datetime.now().astimezone())
    return nxt.isoformat() if nxt else None


def collect_status(config) -> dict[str, Any]:
    state = StateStore(config.node.state_dir)
    saved = state.read("status", {}) or {}
    running = daemon_running(config.node.state_dir)
    doc: dict[str, Any] = {
        "node": config.node_name,
        "role": config.role,
        "daemon": "running" if running else "not running",
        "ha_state": saved.get("ha_state", "disabled" if config.role == "disabled" else "unknown"),
        "ha_since": saved.get("ha_since"),
        "services": saved.get("services", "unknown"),
        "jobs": {},
        "berofos": saved.get("berofos", {}),
    }
    for key, value in saved.items():
        doc.setdefault(key, value)
    doc["daemon"] = "running" if running else "not running"
    if not running:
        try:
            mtime = os.stat(state.path("status")).st_mtime
            doc["saved_at"] = dt.datetime.fromtimestamp(mtime).astimezone().isoformat()
        except OSError:
            doc["saved_at"] = None
    # maintenance from its own file: it may have ended (expired) while the daemon was down
    from wazod.maintenance.state import MaintenanceState, status_view

    record = MaintenanceState(config.node.state_dir, config.node_name).read()
    if record:
        doc["maintenance"] = status_view(record)
    from wazod.ha.advice import COPY_BACK_STATE, split_brain_warnings

    doc["ha_warnings"] = split_brain_warnings(config)
    copy_back = state.read(COPY_BACK_STATE, {}) or {}
    doc["copy_back_failed"] = copy_back or None
    next_runs = saved.get("next_runs", {}) if running else {}
    for name, spec in JOBS.items():
        applies = spec.roles is None or config.role in spec.roles
        rec = state.read(f"job-{name}", {}) or {}
        job = doc["jobs"][name] = {
            "last_result": rec.get("last_result"),
            "last_run": rec.get("last_run"),
            "last_success": rec.get("last_success"),
            "duration": rec.get("duration"),
            "error": rec.get("error"),
            "next_run": (next_runs.get(name) or _next_run(config, name)) if applies else None,
            "applies": applies,
        }
        if spec.parts:
            _fold_parts(job, spec.parts, rec.get("parts") or {})
    doc.pop("next_runs", None)
    if not running:
        doc.pop("pid", None)
    return doc


def _fold_parts(job: dict[str, Any], parts: tuple[str, ...], recorded: dict[str, Any]) -> None:
    """A job of several parts (backup: data, db) is failed while any part's latest run failed.

    A manual ``wazod backup data`` after a failed morning backup must not turn the job ``ok``:
    the database is still unsaved. ``parts`` keeps each part's own last result.
    """
    job["parts"] = {p: recorded.get(p) for p in parts}
    failed = [p for p in parts if (recorded.get(p) or {}).get("last_result") == "failed"]
    job["failed_parts"] = failed
    if failed and job["last_result"] != "failed":
        job["last_result"] = "failed"
        job["error"] = "; ".join(f"{p}: {recorded[p].get('error')}" for p in failed)


# --- the readable view ----------------------------------------------------------

SUMMARY_MAX = 120  # characters of a check's summary in the readable view (--json has it whole)
# "active" is not good: a slave that took over runs the telephony alone, with no redundancy left
GOOD = {"ok", "running", "standby", "master", "started", "up", "connected", "true"}
BAD = {"failed", "critical", "not running", "down", "error", "isolated", "false", "fenced", "fencing",
       "partitioned", "released"}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def _tone(value: Any, color: bool, text: str | None = None) -> str:
    """Green for good words, red for bad ones, yellow for anything else (degraded, skipped, starting...)."""
    word = str(value).lower()
    shown = text if text is not None else str(value)
    code = "32" if word in GOOD else ("31" if word in BAD else "33")
    return _paint(shown, code, color)


def _when(value: Any, now: dt.datetime | None = None) -> str:
    """ISO time -> ``10:02 (12 min ago)`` today, ``Nov 26 06:25 (1 d ago)`` otherwise."""
    if not value:
        return "-"
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    now = now or dt.datetime.now().astimezone()
    if t.tzinfo is None:
        t = t.astimezone()
    t = t.astimezone(now.tzinfo)
    # the zone is said: the journal is in UTC, a reader must not guess which clock this is
    clock = t.strftime("%H:%M %Z") if t.date() == now.date() else t.strftime("%b %d %H:%M %Z")
    delta = (now - t).total_seconds()
    if abs(delta) < 1:
        return clock
    return f"{clock} ({_span(delta)} ago)" if delta > 0 else f"{clock} (in {_span(-delta)})"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _peer_line(peer: Any, color: bool) -> str:
    if not isinstance(peer, dict):
        return str(peer)
    parts = []
    name = peer.get("name") or peer.get("node") or peer.get("address")
    if name:
        parts.append(str(name))
    if peer.get("address") and peer.get("address") != name:
        parts[-1] += f" ({peer['address']})"
    state = peer.get("state", peer.get("status", peer.get("up")))
    if state is not None:
        label = {True: "up", False: "down"}.get(state, state) if isinstance(state, bool) else state
        parts.append(_tone(label, color))
    for key in ("last_probe", "last_seen", "checked_at"):
        if peer.get(key):
            parts.append(f"last probe {_when(peer[key])}")
            break
    shown = {"name", "node", "address", "state", "status", "up", "last_probe", "last_seen", "checked_at"}
    for key, value in peer.items():
        if key not in shown and isinstance(value, (str, int, float, bool)) and value is not None:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def _job_lines(doc: dict[str, Any], color: bool, running: bool) -> list[str]:
    lines = []
    rows = [(n, j) for n, j in doc.get("jobs", {}).items() if j.get("applies", True)]
    skipped = [n for n, j in doc.get("jobs", {}).items() if not j.get("applies", True)]
    width = max((len(n) for n, _ in rows), default=0)
    for name, job in rows:
        res = job.get("last_result")
        failed_parts = job.get("failed_parts") or []
        parts = job.get("parts") or {}
        if failed_parts and parts:
            last = _tone("failed", color) + " (" + ", ".join(
                f"{p} failed {_when(parts[p].get('last_run'))}" for p in failed_parts) + ")"
        elif res:
            took = f" in {job['duration']:.1f} s" if job.get("duration") is not None else ""
            last = f"{_tone(res, color)}{took} {_when(job.get('last_run'))}"
        else:
            last = _paint("never run", "33", color)
        nxt = _when(job.get("next_run")) if running else f"{_when(job.get('next_run'))} if the daemon runs"
        line = f"  {name:<{width}}  {last}  next {nxt}"
        if res == "failed" and job.get("error"):
            error = " ".join(str(job["error"]).split())  # one line: psql's errors span several
            line += "\n" + " " * (width + 4) + _paint(f"error: {error}", "31", color)
        if res == "failed" and job.get("last_success") and not failed_parts:
            line += "\n" + " " * (width + 4) + f"last success {_when(job['last_success'])}"
        if parts and any(parts.values()) and (failed_parts or len({(v or {}).get("last_run")
                                                                     for v in parts.values()}) > 1):
            line += "\n" + " " * (width + 4) + "parts: " + ", ".join(
                f"{p} {_tone(v.get('last_result'), color)} {_when(v.get('last_run'))}" if v else f"{p} never run"
                for p, v in parts.items())
        lines.append(line)
    if skipped:
        lines.append(f"  ({', '.join(skipped)}: not run on a {doc.get('role')} node)")
    return lines


def _health_lines(health: dict[str, Any], color: bool) -> list[str]:
    if not health:
        return []
    good, bad = [], []
    for name, check in health.items():
        level = check.get("level", "unknown") if isinstance(check, dict) else str(check)
        if level in ("ok",):
            good.append(name)
        else:
            summary = check.get("summary") if isinstance(check, dict) else None
            since = f" since {_when(check.get('since'))}" if isinstance(check, dict) and check.get("since") else ""
            if summary and len(summary) > SUMMARY_MAX:
                summary = summary[: SUMMARY_MAX - 3] + "..."
            bad.append(f"  {name:<12} {_tone(level, color)}{since}" + (f": {summary}" if summary else ""))
    lines = ["health" + (f"    ok: {', '.join(good)}" if good else "")]
    return lines + bad


def _snmp_lines(snmp: Any, color: bool) -> list[str]:
    """The engine ID (a v3 receiver needs it) and each notification target, failing ones in full."""
    if not isinstance(snmp, dict) or not (snmp.get("targets") or snmp.get("engine_id")):
        return []
    targets = snmp.get("targets") or {}
    good = [label for label, t in targets.items() if isinstance(t, dict) and t.get("ok") is not False]
    lines = [f"snmp      engine ID {snmp.get('engine_id') or '-'}"
             + (f"  {_tone('ok', color)}: {', '.join(good)}" if good else "")]
    for label, t in targets.items():
        if isinstance(t, dict) and t.get("ok") is False:
            lines.append(f"  {label} {_tone('failed', color)}: {t.get('error') or 'unknown error'} "
                         "(its notifications wait in the outbox)")
    return lines


def render_status(doc: dict[str, Any], color: bool = False) -> str:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        color = False
    running = doc.get("daemon") == "running"
    lines: list[str] = []
    if not running:
        saved = f" saved {_when(doc['saved_at'])}" if doc.get("saved_at") else ""
        lines.append(_paint(f"DAEMON NOT RUNNING: showing the state{saved}", "1;31", color))
    maint = doc.get("maintenance")
    if isinstance(maint, dict) and maint.get("active"):
        who = f" by {maint['set_by']}" if maint.get("set_by") else ""
        until = f" until {_when(maint['until'])}" if maint.get("until") else ""
        why = f": {maint['reason']}" if maint.get("reason") else ""
        lines.append(_paint(f"MAINTENANCE ON{who}{until}{why} (HA takes no action)", "1;33", color))

    frozen = doc.get("ha_frozen")
    if frozen and frozen != "maintenance":  # maintenance already said above
        lines.append(_paint(f"HA FROZEN ({frozen}): no automatic takeover or failback", "1;31", color))

    state = doc.get("ha_state") or "unknown"
    since = f" since {_when(doc['ha_since'])}" if doc.get("ha_since") else ""
    if state == "active":
        since += " (this slave runs the telephony: no redundancy)"
    head = _paint(str(doc.get("node")), "1", color)
    lines.append(f"{head}  {doc.get('role')}  HA {_tone(state, color)}{since}  "
                 f"services {_tone(doc.get('services', 'unknown'), color)}")
    if doc.get("peer"):
        lines.append(f"peer      {_peer_line(doc['peer'], color)}")
    arb = doc.get("arbiter")
    if isinstance(arb, dict) and arb.get("url"):
        from wazod.secrets import mask_text

        owner = {"self": "this node", "peer": "the peer", None: "nobody"}.get(arb.get("owner"), arb.get("owner"))
        text = (f"arbiter   {mask_text(str(arb['url']))} "
                + ("reachable" if arb.get("reachable") else "UNREACHABLE") + f", services owned by {owner}")
        lines.append(_paint(text, "31", color) if not arb.get("reachable") else text)
        if arb.get("fenced"):
            lines.append(_paint("FENCED: this node stopped its own services (no quorum); a master starts them "
                                "again once its quorum is back, a slave only by a takeover", "1;31", color))
    from wazod.ha.advice import copy_back_lines

    for i, line in enumerate(copy_back_lines(doc.get("copy_back_failed"), str(doc.get("node")))):
        lines.append(_paint(line, "1;33", color) if i == 0 else line)
    for warning in doc.get("ha_warnings") or []:
        lines.append(_paint(f"warning: {warning}", "33", color))
    berofos = doc.get("berofos") or {}
    if berofos:
        where = {0: "lines on slave", 1: "lines on master"}
        items = []
        for name, dev in sorted(berofos.items()):
            mode = dev.get("mode") if isinstance(dev, dict) else dev
            err = dev.get("error") if isinstance(dev, dict) else None
            text = f"{name} mode {mode}" + (f" ({where[mode]})" if mode in where else "")
            items.append(_paint(f"{text} error: {err}", "31", color) if err else text)
        lines.append("berofos   " + "  ".join(items))
    for key, label in (("bus", "bus      "), ("wazo_bus", "wazo bus ")):  # MQTT, then Wazo's RabbitMQ
        bus = doc.get(key)
        if isinstance(bus, dict) and "connected" in bus:
            if bus["connected"]:
                lines.append(f"{label} {_tone('connected', color)}")
            else:
                why = f": {bus['error']}" if bus.get("error") else ""
                lines.append(f"{label} {_paint('not connected', '31', color)}{why} (events wait in the outbox)")
    lines += _snmp_lines(doc.get("snmp"), color)
    lines.append("jobs")
    lines += _job_lines(doc, color, running)
    lines += _health_lines(doc.get("health") or {}, color)
    return "\n".join(lines) + "\n"
