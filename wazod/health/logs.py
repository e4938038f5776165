"""Log files (administration guide, section 8): logrotate keeping up with Asterisk and the Wazo daemons.

Every Wazo service logs under /var/log (Asterisk under /var/log/asterisk),
rotated daily by logrotate. When logrotate stops running (a broken cron or
timer, a syntax error in /etc/logrotate.d) or a debug log is left on, one file
grows until /var is full and telephony stops. The check reports a live log
file above a size, and a logrotate state file older than a limit. Rotated
files (``.1``, ``.gz``...) are not counted: they are what logrotate keeps.
"""

from __future__ import annotations

import os
import re
import time

from wazod.health.levels import CRITICAL, WARNING, CheckResult, worst

ROTATED = re.compile(r"(\.\d+|\.gz|\.xz|\.bz2|\.zst|\.old|-\d{8}(\.gz)?)$")
MB = 1024 * 1024


def _live_logs(directory: str) -> list[tuple[str, int]]:
    out = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return out
    for entry in entries:
        if ROTATED.search(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                out.append((entry.path, entry.stat(follow_symlinks=False).st_size))
        except OSError:
            continue
    return out


def check_logs(section) -> CheckResult:
    levels, notes = [], []
    big = {}
    for directory in section.paths:
        for path, size in _live_logs(directory):
            if size >= section.critical_file_mb * MB:
                level = CRITICAL
            elif size >= section.warning_file_mb * MB:
                level = WARNING
            else:
                continue
            big[path] = {"bytes": size, "level": level}
            levels.append(level)
    if big:
        notes.append("large log files: " + ", ".join(
            f"{p} {v['bytes'] / MB:.0f} MB" for p, v in sorted(big.items(), key=lambda kv: -kv[1]["bytes"])))
    values: dict = {"large_files": big}
    if section.logrotate_status:
        try:
            age_h = (time.time() - os.stat(section.logrotate_status).st_mtime) / 3600
        except FileNotFoundError:
            age_h = None
            values["logrotate"] = "no state file"
        except OSError as e:
            age_h = None
            values["logrotate"] = f"state file unreadable: {e.strerror}"
        if age_h is not None:
            values["logrotate_age_hours"] = round(age_h, 1)
            if age_h > section.logrotate_max_age_hours:
                levels.append(WARNING)
                notes.append(f"logrotate has not run for {age_h:.0f} h ({section.logrotate_status})")
    level = worst(levels)
    return CheckResult(level, "; ".join(notes) if notes else "log files rotated", values)
