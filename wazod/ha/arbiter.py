from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ArbiterView:
    reachable: bool          # the arbiter answered this round (etcd: a quorum of the cluster answered)
    peer_up: bool | None     # the arbiter's verdict on the peer node; None: it does not know
    owner: str | None        # who holds the services according to the arbiter (a node identity), None: nobody
class Arbiter(Protocol):
    identity: str                                 # this node's identity as the arbiter knows it
    async def start(self) -> None: ...
    async def observe(self) -> ArbiterView: ...   # one bounded look; never raises for network errors
    async def claim(self) -> bool: ...            # try to become the owner; True if this node is owner now
    async def renew(self) -> bool: ...            # keep ownership alive; False if it was lost
    async def release(self) -> None: ...          # give ownership up (failback, stop)
    async def close(self) -> None: ...
