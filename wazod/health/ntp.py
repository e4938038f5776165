"""Clock synchronisation, read from whatever the node runs: chronyc, ntpq or timedatectl.

Phones, CDRs, call-center statistics and the purge all trust the clock, and
the HA pair compares timestamps. The check reads the tool the node uses
(``ntpq -p``, as the administration guide shows, ``chronyc tracking`` or
``timedatectl show``) and also catches the guide's pitfall: a DHCP client
that wrote ``/var/lib/ntp/ntp.conf.dhcp``, which ntpd uses *instead of*
``/etc/ntp.conf``, so the servers the administrator configured are ignored.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass

from wazod import proc
from wazod.health.levels import CRITICAL, OK, WARNING, CheckResult, worst

TOOLS = ("chronyc", "ntpq", "timedatectl")


@dataclass
class NtpReading:
    tool: str
    synchronised: bool
    offset: float | None = None  # seconds, positive: our clock is ahead
    source: str | None = None
    stratum: int | None = None


def parse_chronyc_tracking(text: str) -> NtpReading:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    if "leap status" not in fields:
        raise ValueError("chronyc tracking: no 'Leap status' line in the output")
    synchronised = fields["leap status"].lower() != "not synchronised"
    offset = None
    m = re.match(r"([-+0-9.eE]+) seconds (fast|slow)", fields.get("system time", ""))
    if m:
        offset = float(m.group(1)) * (1 if m.group(2) == "fast" else -1)
    ref = fields.get("reference id", "")
    m = re.match(r"([0-9A-Fa-f]{8})\s*\((.*)\)", ref)
    source = (m.group(2) or m.group(1)) if m else (ref or None)
    if m and m.group(1).upper() == "7F7F0101":
        source = "local clock"
    stratum = int(fields["stratum"]) if fields.get("stratum", "").isdigit() else None
    return NtpReading("chronyc", synchronised and (m is None or m.group(1) != "00000000"), offset, source, stratum)


def parse_ntpq_peers(text: str) -> NtpReading:
    """``ntpq -p``: the peer marked ``*`` (or ``o``, PPS) is the one the clock follows."""
    for line in text.splitlines():
        if line[:1] in ("*", "o"):
            cols = line[1:].split()
            if len(cols) >= 9:
                try:
                    offset = float(cols[8]) / 1000.0  # ntpq shows milliseconds
                    stratum = int(cols[2])
                except ValueError:
                    offset, stratum = None, None
                return NtpReading("ntpq", True, offset, cols[0], stratum)
    if not any(line.lstrip().startswith("remote") for line in text.splitlines()):
        raise ValueError("ntpq -p: no peer table in the output")
    return NtpReading("ntpq", False)


def parse_timedatectl(text: str) -> NtpReading:
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "NTPSynchronized" not in fields:
        raise ValueError("timedatectl show: no NTPSynchronized property in the output")
    return NtpReading("timedatectl", fields["NTPSynchronized"] == "yes")


def _argv(tool: str, section) -> list[str]:
    if tool == "chronyc":
        host = ["-h", section.chronyc_host] if section.chronyc_host else []
        return ["chronyc", "-n", *host, "tracking"]
    if tool == "ntpq":
        return ["ntpq", "-n", "-p"]
    return ["timedatectl", "show"]


PARSERS = {"chronyc": parse_chronyc_tracking, "ntpq": parse_ntpq_peers, "timedatectl": parse_timedatectl}


def candidate_tools(section) -> list[str]:
    """The configured tool, or (auto) every installed one in order: chronyc, ntpq, timedatectl."""
    if section.tool != "auto":
        return [section.tool]
    return [t for t in TOOLS if shutil.which(t)]


async def _read_with(tool: str, section) -> NtpReading:
    try:
        done = await proc.run(_argv(tool, section), timeout=section.timeout)
    except FileNotFoundError:
        raise RuntimeError(f"{tool} is not installed") from None
    text = done.stdout.decode(errors="replace")
    if not done.ok:
        detail = (done.stderr_text(200) or text.strip()[:200] or f"exit {done.returncode}").splitlines()[0]
        raise RuntimeError(f"{tool} could not read the NTP daemon: {detail}")
    return PARSERS[tool](text)


async def read_clock(section) -> NtpReading:
    """The first tool that answers; RuntimeError naming every tool tried when none does.

    In auto mode an installed but idle client (chrony installed, ntpd running)
    does not hide the daemon that really runs.
    """
    tools = candidate_tools(section)
    if not tools:
        raise RuntimeError("no NTP tool installed (chronyc, ntpq or timedatectl)")
    errors = []
    for tool in tools:
        try:
            return await _read_with(tool, section)
        except (RuntimeError, ValueError, TimeoutError) as e:
            errors.append(str(e))
    raise RuntimeError("; ".join(errors))


_SERVER_RE = re.compile(r"^\s*(server|pool|peer)\s+(\S+)", re.MULTILINE)


def ntp_servers(path: str) -> list[str]:
    with open(path, errors="replace") as f:
        return [m.group(2) for m in _SERVER_RE.finditer(f.read())]


def dhcp_override(section) -> dict | None:
    """The guide's pitfall: ``ntp.conf.dhcp`` present and naming other servers than ``ntp.conf``."""
    if not os.path.exists(section.dhcp_conf):
        return None
    try:
        dhcp = ntp_servers(section.dhcp_conf)
    except OSError:
        dhcp = []
    try:
        configured = ntp_servers(section.ntp_conf)
    except OSError:
        configured = []
    if configured and sorted(dhcp) == sorted(configured):
        return None
    return {"file": section.dhcp_conf, "servers": dhcp, "ignored": section.ntp_conf, "ignored_servers": configured}


async def check_ntp(section) -> CheckResult:
    levels, notes, values = [], [], {}
    try:
        reading = await read_clock(section)
    except RuntimeError as e:
        levels.append(WARNING)
        notes.append(str(e))
        values["error"] = str(e)
    else:
        values.update(asdict(reading))
        if not reading.synchronised:
            levels.append(WARNING)
            notes.append(f"clock not synchronised ({reading.tool})")
        elif reading.offset is not None and abs(reading.offset) > section.critical_offset:
            levels.append(CRITICAL)
            notes.append(f"clock off by {reading.offset:+.3f} s")
        elif reading.offset is not None and abs(reading.offset) > section.warning_offset:
            levels.append(WARNING)
            notes.append(f"clock off by {reading.offset:+.3f} s")
        else:
            # no offset in the summary: it would change on every run (the values carry it)
            notes.append(f"synchronised to {reading.source or 'a server'}")
            levels.append(OK)
    override = dhcp_override(section)
    if override:
        values["dhcp_override"] = override
        levels.append(WARNING)
        notes.append(f"{override['file']} overrides {override['ignored']}: remove it and restart ntp")
    level = worst(levels)
    return CheckResult(level, "; ".join(notes), values)
