"""The third vote of an HA pair, behind one small interface: a wazod arbiter (HTTP) or an etcd lease.

A two-node pair cannot tell "the master is dead" from "the link between us is
cut". A third party can: Pacemaker's qdevice, repmgr's witness, Patroni's
lease in etcd. The HA machine stays pure: what the arbiter says is one more
input of a round (``wazod.ha.machine.Vote``), read here once per round
(``observe``, bounded, never raising for network errors).

Two forms, one interface (:class:`Arbiter`):

* ``http://HOST:PORT``: a third ``wazod run`` with ``ha.node_type: arbiter``
  probes both nodes with the same probes and answers ``GET /arbiter``
  (``wazod.ha.arbiter_server``), naming the owner of the services from what
  it sees serving; ``claim`` is granted when nobody owns them, this node
  does, or the arbiter says the peer failed.
* ``etcd://HOST:PORT[,...]``: ``wazod.ha.arbiter_etcd.EtcdArbiter`` (a lease
  on the pair's owner key; ``peer_up`` is "the peer's session lease lives", so
  the slave takes over once the master's lease expired), imported only when
  configured.

``wazod.ha.arbiters.make_arbiter`` picks the one ``ha.arbiter`` names (it sits
above both forms, so that neither imports the other).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from wazod.logsetup import get_logger
from wazod.secrets import mask_text

log = get_logger("ha.arbiter")


@dataclass(frozen=True)
class ArbiterView:
    reachable: bool  # the arbiter answered this round (etcd: a quorum of the cluster answered)
    peer_up: bool | None  # the arbiter's verdict on the peer node; None: it does not know
    owner: str | None  # who holds the services according to the arbiter (a node identity), None: nobody


class Arbiter(Protocol):
    identity: str  # this node's identity as the arbiter knows it

    async def start(self) -> None: ...

    async def observe(self) -> ArbiterView: ...  # one bounded look; never raises for network errors

    async def claim(self) -> bool: ...  # try to become the owner; True if this node is owner now

    async def renew(self) -> bool: ...  # keep ownership alive; False if it was lost

    async def release(self) -> bool | None: ...  # give ownership up (failback, stop, own services dead); False: not done

    async def close(self) -> None: ...


UNREACHABLE = ArbiterView(False, None, None)


class HttpArbiter:
    """A wazod arbiter over HTTP (``GET /arbiter``, the endpoint's read token from ``ha.peer_token_file``).

    The arbiter names the two nodes by the addresses of its ``arbiter_nodes``; this node is the one that is
    not its peer (``ha.remote_address``), so nothing more needs configuring: ``identity`` is learned from
    the first answer (the node name until then).
    """

    def __init__(self, url: str, peer: str, *, token: str | None = None, timeout: float = 0.4,
                 node_name: str = ""):
        self.base = url.rstrip("/")
        self.peer = peer
        self.token = token
        self.timeout = timeout
        self.identity = node_name
        self._session = None
        self._warned: str | None = None

    async def start(self) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"X-Auth-Token": self.token} if self.token else {})

    def _warn_once(self, message: str, **kw) -> None:
        if self._warned != message:
            self._warned = message
            log.warning(message, arbiter=mask_text(self.base), **kw)

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        import aiohttp

        await self.start()
        try:
            async with self._session.request(method, self.base + path, json=body) as resp:
                if resp.status != 200:
                    self._warn_once("arbiter refused the request", path=path, status=resp.status)
                    return None
                doc = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as e:
            self._warn_once("arbiter unreachable", error=type(e).__name__)
            return None
        if not isinstance(doc, dict):
            return None
        self._warned = None
        return doc

    def _learn_identity(self, doc: dict) -> None:
        nodes = doc.get("nodes")
        if isinstance(nodes, dict) and self.peer in nodes:
            others = [n for n in nodes if n != self.peer]
            if len(others) == 1:
                self.identity = others[0]

    async def _look(self) -> tuple[ArbiterView, bool]:
        """The view, and whether the services may be this node's: the arbiter says the peer failed, or nobody
        (or this node) owns them and this node has not failed there."""
        doc = await self._call("GET", "/arbiter")
        if doc is None:
            return UNREACHABLE, False
        self._learn_identity(doc)
        nodes = doc.get("nodes") if isinstance(doc.get("nodes"), dict) else {}
        peer = nodes.get(self.peer)
        failed = False
        if not isinstance(peer, dict):
            self._warn_once("the arbiter does not watch this node's peer: check its ha.arbiter_nodes",
                            peer=self.peer, nodes=sorted(nodes))
            peer_up = None
        elif peer.get("failed") is True:
            peer_up, failed = False, True
        else:
            peer_up = {"up": True}.get(peer.get("state"))  # down but answering again: not known yet
        owner = doc.get("owner") if isinstance(doc.get("owner"), str) else None
        me = nodes.get(self.identity)
        self_failed = isinstance(me, dict) and me.get("failed") is True
        may = failed or (owner in (None, self.identity) and not self_failed)
        return ArbiterView(True, peer_up, owner), may

    async def observe(self) -> ArbiterView:
        return (await self._look())[0]

    async def claim(self) -> bool:
        """The services may be this node's: the arbiter says the peer failed, or it owns them there or nobody
        does and this node has not failed there. The arbiter derives the owner from what it sees serving,
        so nothing is written."""
        view, may = await self._look()
        return view.reachable and may

    async def renew(self) -> bool:
        """False only when the arbiter names the peer owner (it serves alone there): the services were lost.
        An unanswered look proves nothing (a node cut from everyone fences through its blind rounds)."""
        view, _ = await self._look()
        return not view.reachable or view.owner != self._peer_identity()

    def _peer_identity(self) -> str:
        return self.peer

    async def release(self) -> None:
        """Nothing to write: the owner follows what the arbiter sees serving."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def observe_bounded(arbiter: Arbiter, timeout: float) -> ArbiterView:
    """``arbiter.observe()`` that can never hold a round up (nor raise)."""
    try:
        return await asyncio.wait_for(arbiter.observe(), timeout)
    except (TimeoutError, OSError):
        return UNREACHABLE
    except Exception:
        log.exception("arbiter look failed")
        return UNREACHABLE
