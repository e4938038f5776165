"""The telephony processes this node should (or should not) run, found by name with psutil.

On the active node (the master, a node without HA, or a slave that took over)
Asterisk and the Wazo daemons must run: a missing one is critical, which is
exactly weakness 1 of Wazo's HA ("Asterisk dead, host still answers ping").
On a standby slave none of them should run: if some do, two nodes may answer
phones (the level is ``health.process.unexpected_level``).
"""

from __future__ import annotations

import os
import shutil

import psutil

from wazod.health.levels import CRITICAL, OK, CheckResult

COMM_LEN = 15  # the kernel truncates a process name (comm) to 15 characters
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
ACTIVE_SERVICES = {"running", "started", "active"}


def node_is_active(config, status: dict) -> bool:
    """Whether this node should be running the telephony services now."""
    if config.role != "slave":
        return True
    return status.get("services") in ACTIVE_SERVICES or status.get("ha_state") == "active"


def expected_names(config) -> list[str]:
    """Configured names, or the services units that are installed here."""
    section = config.health.process
    if section.names is not None:
        return list(section.names)
    installed = []
    for unit in config.ha.services.units:
        if shutil.which(unit) or os.path.exists(f"/usr/sbin/{unit}") or any(
            os.path.exists(f"{d}/{unit}.service") for d in UNIT_DIRS
        ):
            installed.append(unit)
    return installed


def running_names(wanted: list[str]) -> dict[str, list[int]]:
    """``{name: [pids]}`` of the wanted names that run, matched on comm or the program's file name.

    A Python daemon started from its script shows the script's name as comm;
    ``python3 /usr/bin/wazo-calld`` shows it as the first argument.
    """
    found: dict[str, list[int]] = {}
    by_comm = {name[:COMM_LEN]: name for name in wanted}
    by_file = set(wanted)
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        info = proc.info
        name = None
        if info.get("name") in by_comm:
            name = by_comm[info["name"]]
        else:
            argv = info.get("cmdline") or []
            for arg in argv[:2]:
                base = os.path.basename(arg)
                if base in by_file:
                    name = base
                    break
        if name is not None:
            found.setdefault(name, []).append(info["pid"])
    return found


def check_processes(config, status: dict) -> CheckResult:
    names = expected_names(config)
    active = node_is_active(config, status)
    running = running_names(names)
    values = {"active_node": active, "expected": names if active else [],
              "running": sorted(running), "pids": running}
    if not names:
        return CheckResult(OK, "no telephony process configured or installed", values)
    if active:
        missing = [n for n in names if n not in running]
        values["missing"] = missing
        if missing:
            return CheckResult(CRITICAL, "not running: " + ", ".join(missing), values)
        return CheckResult(OK, f"{len(names)} telephony processes running", values)
    unexpected = [n for n in names if n in running]
    values["unexpected"] = unexpected
    if unexpected:
        level = config.health.process.unexpected_level
        return CheckResult(level, "running on a standby slave: " + ", ".join(unexpected), values)
    return CheckResult(OK, "standby: no telephony process running", values)
