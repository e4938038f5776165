"""Free disk space on the paths a telephony node fills: backups, PostgreSQL, spool, logs.

Wazo has no such check: a full /var kills Asterisk's recordings, PostgreSQL
and the backups silently. Thresholds are in percent of the file system;
a path that does not exist on this node is skipped (not every node has
every directory). Each path is reported with its file system's figures, so
the administrator sees which of their paths is short of space.
"""

from __future__ import annotations

import os

import psutil

from wazod.health.levels import CRITICAL, OK, WARNING, CheckResult, worst


def check_disk(section) -> CheckResult:
    paths: dict[str, dict] = {}
    levels = []
    for path in section.paths:
        if not os.path.exists(path):
            continue
        usage = psutil.disk_usage(path)
        free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        if free_percent < section.critical_free_percent:
            level = CRITICAL
        elif free_percent < section.warning_free_percent:
            level = WARNING
        else:
            level = OK
        levels.append(level)
        paths[path] = {"free_bytes": usage.free, "total_bytes": usage.total,
                       "free_percent": round(free_percent, 1), "level": level}
    if not paths:
        return CheckResult(OK, "no configured path exists on this node", {"paths": {}})
    level = worst(levels)
    lowest = min(paths, key=lambda p: paths[p]["free_percent"])
    if level == OK:
        summary = f"lowest free space: {lowest} {paths[lowest]['free_percent']:.0f}%"
    else:
        bad = [p for p, v in paths.items() if v["level"] != OK]
        limit = section.critical_free_percent if level == CRITICAL else section.warning_free_percent
        summary = ", ".join(f"{p} {paths[p]['free_percent']:.0f}% free" for p in bad) + f" (below {limit:g}%)"
    return CheckResult(level, summary, {"paths": paths})
