"""``wazod status``: the contract's document, from the live daemon's snapshot or the saved one.

The daemon writes ``status.json`` on every change; job records are
``job-<name>.json``. Whether the daemon runs is read from its lock (the
kernel releases it when the process dies, so a crash cannot lie).
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
    next_runs = saved.get("next_runs", {}) if running else {}
    for name, spec in JOBS.items():
        applies = spec.roles is None or config.role in spec.roles
        rec = state.read(f"job-{name}", {}) or {}
        doc["jobs"][name] = {
            "last_result": rec.get("last_result"),
            "last_run": rec.get("last_run"),
            "duration": rec.get("duration"),
            "error": rec.get("error"),
            "next_run": (next_runs.get(name) or _next_run(config, name)) if applies else None,
            "applies": applies,
        }
    doc.pop("next_runs", None)
    doc.pop("pid", None) if not running else None
    return doc


def _c(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def render_status(doc: dict[str, Any], color: bool = False) -> str:
    good = {"ok", "running", "standby", "active", "master", "started"}
    lines = []
    if doc["daemon"] != "running":
        lines.append(_c("daemon: NOT RUNNING (showing the saved state)", "1;31", color))
    lines.append(f"node      {doc['node']}  role {doc['role']}  daemon {doc['daemon']}")
    since = f" since {doc['ha_since']}" if doc.get("ha_since") else ""
    state = doc.get("ha_state") or "unknown"
    lines.append(f"ha        {_c(state, '32' if state in good else '33', color)}{since}")
    lines.append(f"services  {doc.get('services')}")
    if doc.get("maintenance", {}) and doc["maintenance"].get("active"):
        m = doc["maintenance"]
        lines.append(_c(f"maintenance ON by {m.get('set_by')} until {m.get('until')}: {m.get('reason')}", "1;33", color))
    if doc.get("peer"):
        lines.append(f"peer      {doc['peer']}")
    for name, dev in (doc.get("berofos") or {}).items():
        lines.append(f"berofos   {name}: mode {dev.get('mode')}")
    lines.append("jobs")
    for name, job in doc["jobs"].items():
        if not job.get("applies", True):
            continue
        res = job["last_result"] or "never run"
        col = "32" if res in ("ok", "skipped") else ("31" if res == "failed" else "33")
        lines.append(f"  {name:<12} {_c(res, col, color):<10} last {job['last_run'] or '-'}  next {job['next_run'] or '-'}")
    for name, check in (doc.get("health") or {}).items():
        lvl = check.get("level", "?") if isinstance(check, dict) else check
        lines.append(f"health    {name}: {lvl}")
    return "\n".join(lines) + "\n"
