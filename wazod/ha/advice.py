"""What an administrator must know about this node's HA setup and its last failback, in plain words.

Pure functions of the configuration and of the saved state, shared by the daemon (logged at start),
``wazod config check`` and ``wazod status``, so the three say the same thing.
"""

from __future__ import annotations

from typing import Any

COPY_BACK_STATE = "ha-copy-back"  # StateStore name: the last failback's copy-back that failed (or absent)


def split_brain_warnings(config) -> list[str]:
    """Warnings about split brain for this node's HA setup (empty when there is nothing to say)."""
    ha = config.ha
    role = config.role
    arbiter = getattr(ha, "arbiter", None)
    if role == "master" and isinstance(arbiter, str) and arbiter.startswith("etcd://") and "sip" not in ha.probes \
            and (not ha.services_check_interval or ha.services_check_interval > 5):
        # the owner's duty: without the SIP probe (ha.probes) the master cannot probe its own Asterisk, so only
        # the periodic services check finds it dead
        every = f"every {ha.services_check_interval:g} s" if ha.services_check_interval else "only at start-up"
        return [f"etcd arbiter without the sip probe (ha.probes): this master finds its own Asterisk dead only by "
                f"reading its services, {every} (ha.services_check_interval); an Asterisk that dies here keeps the "
                "owner key that long, and the slave cannot take over before; add sip to ha.probes, or set "
                "ha.services_check_interval to 2 (docs/ha-etcd.md, the owner's duty)"]
    if role not in ("master", "slave") or arbiter:
        return []
    out = []
    if role == "slave" and not ha.witnesses:
        out.append("this slave has no witness and no arbiter: it takes over whenever it cannot reach the "
                   "master, even when it is the one cut off (its own cable, switch port or DNS); "
                   "set ha.arbiter (recommended) or at least ha.witnesses (e.g. the gateway)")
    out.append("no arbiter (ha.arbiter): a cut of the link between the two nodes alone makes both nodes active "
               "(both run the telephony until the link is back); set ha.arbiter to a third wazod "
               "(node_type arbiter) or an etcd cluster to prevent it")
    return out


def copy_back_lines(record: dict[str, Any] | None, node: str) -> list[str]:
    """The status lines of a failback whose copy-back failed: what stays where, and what to run."""
    if not record:
        return []
    paths = ", ".join(record.get("paths") or []) or "the copy-back paths"
    master = record.get("master") or "the master"
    return [
        f"COPY-BACK FAILED at the failback of {record.get('at', '?')}: the files changed on {node} during the "
        f"outage (voicemails, recordings, sounds under {paths}) stay on {node}; {master} does not have them",
        f"  run `wazod copy-back` on {node} once {master} is reachable over ssh (error: {record.get('error')})",
    ]
