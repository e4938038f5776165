"""What an event says in the journal: its priority and a short human message.

Why: ``journalctl -p notice`` must tell the HA story on its own (takeover,
failback, master up or down, reloads, maintenance), separate from routine
lines at info; failures at warning; and a reader of ``journalctl -o cat``
must see what happened before the JSON details. The event itself (name,
seq, data) is unchanged: this only decides how its journal line reads.
"""

from __future__ import annotations

import re
from typing import Any

WARNING_RE = re.compile(r"(_failed|_down|_isolated|_flapping|_degraded|_partitioned|_fenced|_released)$")
# the HA story and the daemon's life: journald priority 5 (notice)
NOTICE_RE = re.compile(r"^(ha_|maintenance_|daemon_|config_reloaded$|berofos_mode_changed$|berofos_taken$"
                       r"|health_recovered$|restore_completed$)")


def priority(name: str, data: dict[str, Any]) -> str:
    """``warning``, ``notice`` or ``info`` for the journal line of event ``name``."""
    if WARNING_RE.search(name) or data.get("ok") is False:
        return "warning"  # a refused reload (config_reloaded ok: false) included
    if NOTICE_RE.search(name):
        return "notice"
    return "info"


def _secs(value: Any) -> str:
    try:
        return f"{float(value):.1f} s"
    except (TypeError, ValueError):
        return "?"


def _first_line(text: Any, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


_TEMPLATES: dict[str, str] = {
    "daemon_started": "wazod started",
    "daemon_stopping": "wazod stopping",
    "ha_master_down": "the master is down",
    "ha_master_up": "the master is up",
    "ha_slave_down": "the slave is down",
    "ha_slave_up": "the slave is up",
    "ha_takeover_started": "takeover started: this slave starts the telephony services",
    "ha_takeover_completed": "takeover completed in {duration}: this slave runs the telephony",
    "ha_takeover_failed": "takeover FAILED at step {failed_step}",
    "ha_failback_started": "failback started: the services go back to the master",
    "ha_failback_completed": "failback completed in {duration}: the master runs the telephony again",
    "ha_failback_failed": "failback FAILED at step {failed_step}",
    "ha_isolated": "this node is cut off (nothing answers, not even a witness or the arbiter; or the master's "
                   "name does not resolve): not taking over",
    "ha_flapping": "the master flaps: HA frozen",
    "ha_partitioned": "the master is silent here but up for the arbiter (the link between the nodes is cut): "
                      "not taking over",
    "ha_fenced": "no quorum (neither the peer nor the arbiter answers): this node stopped its own services",
    "ha_unfenced": "quorum back: this node's services may run again",
    "ha_released": "this master's own services are stopped: ownership given up in the arbiter, the slave may "
                   "take over",
    "ha_fence_failed": "{action} FAILED at step {failed_step}",
    "ha_copy_back_failed": "copy-back FAILED: the files changed during the outage stay on {files_left_on}; "
                           "run `wazod copy-back` there",
    "berofos_taken": "berofos {device}: the lines are on the slave, which this master cannot reach: left as they are",
    "maintenance_started": "maintenance on: HA takes no action",
    "maintenance_ended": "maintenance off",
    "berofos_mode_changed": "berofos {device}: mode {mode}",
    "backup_completed": "backup ({what}) completed in {duration}",
    "purge_completed": "purge completed in {duration}",
    "replication_completed": "replication completed in {duration}",
    "replication_skipped": "replication skipped: nothing changed on the master",
    "sync_completed": "file sync completed in {duration}",
}


def message(name: str, data: dict[str, Any]) -> str:
    """One short line saying what happened; the details stay in the line's JSON fields."""
    if name == "config_reloaded":
        if data.get("ok") is False:
            return f"configuration reload REFUSED, the running configuration is kept: {_first_line(data.get('error'))}"
        changed = data.get("changed")
        return "configuration reloaded" + (f" ({', '.join(map(str, changed))} changed)"
                                           if isinstance(changed, list) and changed else "")
    fields = {k: v for k, v in data.items() if isinstance(k, str)}
    fields["duration"] = _secs(data.get("duration"))
    fields.setdefault("what", "all")
    fields.setdefault("device", data.get("name", "?"))
    template = _TEMPLATES.get(name)
    if template is not None:
        try:
            text = template.format_map(_Default(fields))
        except (ValueError, IndexError):
            text = name.replace("_", " ")
    else:
        text = name.replace("_", " ")
    if data.get("error") and "error" not in text:
        error = _first_line(data["error"])
        job = name.split("_", 1)[0]
        text += f": {error.removeprefix(job + ': ')}"  # "purge failed: purge: ..." says it twice
    return text


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "?"
