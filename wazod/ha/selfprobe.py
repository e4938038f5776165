"""The owner's own Asterisk, probed every round: a cheap trigger for the costly services check.

A master with an etcd arbiter must release the owner key when its own services die (the owner's duty,
docs/ha-etcd.md). Reading them is the backend's status command (``wazo-service status all``: a shell script
calling systemctl for about twelve services), run every ``ha.services_check_interval`` (30 s). The SIP probe
the slave aims at the master costs one datagram: the master aims it at itself each round, with the SIP
verdict's own budget (``ha.sip_timeout``: an Asterisk answering late is alive; a port unreachable is dead at
once), and after ``fall`` dead rounds in a row reads its services at once to confirm.

:class:`OwnSipStreak` is the pure part (verdicts in, "read the services now" out); the monitor runs the probe
(:func:`own_sip_address`, :class:`wazod.ha.probes.SipWatcher`) and the check.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from wazod.ha.policy import ProbeResult
from wazod.ha.probes import resolve


def verdict(result: ProbeResult | None) -> bool | None:
    """True: dead (refused, or silent beyond the SIP budget); False: alive; None: no verdict (an answer still
    within the budget, or the probe could not run)."""
    if result is None or result.pending:
        return None
    return not result.ok


@dataclass
class OwnSipStreak:
    """Counts the consecutive rounds in which this node's own Asterisk was found dead by SIP.

    ``observe`` says True once per dead streak, at its ``fall``-th round, and only while ``armed`` (the
    services are meant to run here: not fenced, not released, no action running); an answer ends the streak.
    Rounds without a verdict neither extend nor end it."""

    fall: int
    dead_rounds: int = 0
    fired: bool = False

    def observe(self, dead: bool | None, armed: bool) -> bool:
        if dead is None:
            return False
        if not dead:
            self.dead_rounds = 0
            self.fired = False
            return False
        self.dead_rounds += 1
        if armed and not self.fired and self.dead_rounds >= self.fall:
            self.fired = True
            return True
        return False


def self_probe_possible(ha) -> bool:
    """The self-probe needs the SIP probe (``sip`` in ``ha.probes``: Asterisk answers OPTIONS on sip_port)."""
    return "sip" in ha.probes


async def own_sip_address(ha) -> str | None:
    """Where this node's Asterisk is probed: ``ha.own_sip_address``, else the address this node uses towards
    its peer (the one the peer probes). None when there is no route (no verdict this round)."""
    if ha.own_sip_address:
        return ha.own_sip_address
    try:
        peer = await asyncio.wait_for(resolve(ha.remote_address), ha.effective_round_timeout)
        family = socket.AF_INET6 if ":" in peer else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((peer, ha.sip_port))  # a route lookup: nothing is sent
            return s.getsockname()[0]
    except (OSError, TimeoutError):
        return None
