"""The arbiter node (``ha.node_type: arbiter``): the third vote of one pair, over HTTP.

It watches the two nodes of ``ha.arbiter_nodes`` with the same probes and the
same hysteresis a slave uses for its master (``Prober`` + ``Machine``) and
answers ``GET /arbiter`` (token as for /status)::

    {"nodes": {"<address>": {"state": "up"|"down"|"unknown", "since": "<iso>", "reason": "...",
                             "reachable": true, "failing": 0, "failed": false}},
     "owner": "<address>"|null, "agree_rounds": 2}

``state`` is about serving: a node whose Asterisk does not answer is down
(with the default policy), which is exactly what a slave must know before
taking over. ``failed`` is the arbiter's word that a node may be replaced:
down, or bad for its last ``agree_rounds`` rounds (fall - 1: the asking node
has counted its own ``fall`` rounds already, so the third vote adds no round
to a takeover).

``owner`` is derived from what the arbiter sees, not written by the nodes:
the node serving alone (up, and not failed: an owner is dropped the moment
the other node may be granted the services); while both serve (the failback overlap) it stays with
the previous owner; nobody while nobody serves. So every exchange is a read
(the endpoint's read token, ``ha.peer_token_file`` on the nodes: a state
change would need the arbiter's admin token) and an arbiter restart forgets
nothing that matters. An arbiter runs no job and drives no berofos.

The route logic is plain functions of an :class:`ArbiterState`, registered
through ``ctx.registry["http_routes"]`` (whichever package serves HTTP).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from wazod.ha.clock import mono_to_iso
from wazod.ha.machine import Machine, Params, Round
from wazod.logsetup import get_logger

log = get_logger("ha.arbiter")


@dataclass
class NodeView:
    state: str = "unknown"  # up | down | unknown
    since: float | None = None  # monotonic time of the last change
    reason: str = ""
    reachable: bool | None = None
    failing: int = 0  # consecutive bad rounds up to now


@dataclass
class ArbiterState:
    """What the arbiter knows: each node's verdict and the services' owner. Pure data + rules."""

    nodes: dict[str, NodeView] = field(default_factory=dict)
    owner: str | None = None
    fall: int = 3  # the hysteresis of its verdicts; it confirms a failure after agree_rounds bad rounds

    @property
    def agree_rounds(self) -> int:
        """Bad rounds of its own after which the arbiter confirms a node's failure to the other node, which
        has counted its own ``fall`` rounds already: one fewer than ``fall`` (at least one), so the third
        vote does not add a round to the takeover."""
        return max(1, self.fall - 1)

    def failed(self, node: str) -> bool:
        view = self.nodes[node]
        return view.state == "down" or view.failing >= self.agree_rounds

    def document(self) -> dict[str, Any]:
        return {"nodes": {name: {"state": v.state, "since": mono_to_iso(v.since), "reason": v.reason,
                                 "reachable": v.reachable, "failing": v.failing,
                                 "failed": self.failed(name)} for name, v in self.nodes.items()},
                "owner": self.owner, "agree_rounds": self.agree_rounds}

    def derive_owner(self) -> str | None:
        """The node serving alone owns the services; both serving: the previous owner keeps them; nobody
        serving: nobody owns them."""
        serving = [n for n, v in self.nodes.items() if v.state == "up" and not self.failed(n)]
        if len(serving) == 1:
            owner = serving[0]
        elif not serving:
            owner = None
        else:
            owner = self.owner if self.owner in serving else None
        if owner != self.owner:
            log.info("arbiter: services owner", owner=owner, previous=self.owner)
            self.owner = owner
        return owner


class ArbiterService:
    """The arbiter's watch: one prober and one hysteresis machine per node."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.state = ArbiterState()

    async def run(self) -> None:
        from wazod.ha.probes import Prober

        ha = self.ctx.config.ha
        nodes = list(ha.arbiter_nodes)
        self.state.fall = ha.fall
        self.state.nodes = {n: self.state.nodes.get(n, NodeView()) for n in nodes}
        if self.state.owner not in self.state.nodes:
            self.state.owner = None
        probers = {n: Prober(ha, n, ha.probes) for n in nodes}
        machines = {n: Machine(Params(role="master", fall=ha.fall, rise=ha.rise)) for n in nodes}
        self.ctx.status.update(ha_state="arbiter", peer={"nodes": nodes}, ha_frozen=None)
        log.info("arbiter watching", nodes=nodes, probes=ha.probes, interval=ha.probe_interval)
        next_at = time.monotonic()
        try:
            while True:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at = max(next_at + ha.probe_interval, time.monotonic())
                rounds = await asyncio.gather(*(probers[n].round() for n in nodes))
                for n, rnd in zip(nodes, rounds, strict=True):
                    m = machines[n]
                    m.observe(Round(rnd.started, rnd.ended, rnd.good, rnd.reason, unresolved=rnd.unresolved))
                    view = self.state.nodes[n]
                    new = {True: "up", False: "down", None: "unknown"}[m.peer_up]
                    view.reachable = any(r.reachable for r in rnd.results)
                    view.failing = 0 if rnd.good else view.failing + 1
                    if not rnd.good:
                        view.reason = rnd.reason
                    elif new == "up":
                        view.reason = "ok"
                    if new != view.state:
                        log.info("arbiter: node state", node=n, state=new, reason=view.reason)
                        view.state = new
                        view.since = rnd.ended
                self.state.derive_owner()
                self.ctx.status.update(peer={"nodes": {n: v.state for n, v in self.state.nodes.items()},
                                             "owner": self.state.owner})
        finally:
            for p in probers.values():
                p.close()


# --- HTTP routes -------------------------------------------------------------------------------
def register_routes(ctx, service_of) -> None:
    """``GET /arbiter`` on this node's endpoint; ``service_of()`` returns the running :class:`ArbiterService`
    or None (this node is no arbiter now: 404)."""
    from aiohttp import web

    async def get_arbiter(request: web.Request) -> web.Response:
        service = service_of()
        if service is None or ctx.config.role != "arbiter":
            raise web.HTTPNotFound(text="this node is not an arbiter (ha.node_type)\n")
        return web.json_response(service.state.document())

    ctx.registry.setdefault("http_routes", []).append(("GET", "/arbiter", get_arbiter))
