"""The etcd form of the HA arbiter (``ha.arbiter: etcd://HOST:PORT[,HOST:PORT...]``).

Patroni's model: an etcd v3 cluster holds the pair's owner key under a lease.

Key layout (``prefix`` defaults to ``/wazod``, ``pair_id`` is ``ha.etcd.pair_id``)::

    <prefix>/<pair_id>/owner              value: identity of the node running the services
    <prefix>/<pair_id>/members/<identity> value: that node's name; present while its wazod is alive

Each node holds one lease of ``ttl`` seconds (its session) and binds its
member key to it; the owner key is bound to the owner's session lease. A node
whose wazod dies, or that cannot reach a quorum of the cluster, stops sending
keepalives: after ``ttl`` seconds etcd itself deletes its keys. ``claim`` is
a transaction "create the owner key if it does not exist, bound to my lease",
so the slave obtains the key only once the master's lease has expired (or the
master released it): etcd's quorum is the third vote.

Identities are the nodes' HA roles (``master``, ``slave``): both nodes of a
pair name each other the same way whatever addresses they use, which an
address-based identity cannot guarantee (a node does not know the address its
peer uses for it).

Why one aetcd client per endpoint, with hedged calls: aetcd (the maintained
asyncio client) talks to one ``host:port``. A call goes to the endpoint that
answered last; if it fails, or has not answered after a fraction of the
budget, the same request also goes to the next endpoint, and the first answer
wins. Every request is idempotent for that reason (lease grant with an ID
chosen here, create-if-absent, compare-and-delete, keepalive). Reads are
linearizable: an answer proves that a quorum of the cluster agreed, which is
what ``reachable`` means. A member cut from the quorum does not answer them.

``renew`` returns False when the lease is gone on the server (expired,
revoked) or when this node cannot prove any more that it still lives: no
keepalive acknowledged for ``ttl - fence_margin`` seconds (counted from when
the acknowledged keepalive was sent, so the server's expiry is always later).
A master cut from etcd therefore reports the loss, and can fence itself,
before the slave can obtain the key; a single slow round does not.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aetcd
import grpc

from wazod.errors import ConfigError
from wazod.ha.arbiter import Arbiter, ArbiterView
from wazod.ha.etcd_client import TlsFiles, make_client
from wazod.logsetup import get_logger

__all__ = ["EtcdArbiter", "parse_etcd_url", "make_etcd_arbiter", "DEFAULT_PORT", "DEFAULT_PREFIX"]

log = get_logger("ha.etcd")

T = TypeVar("T")

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "/wazod"
PAIR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IDENTITY_RE = PAIR_ID_RE
PREFIX_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
MAX_VALUE = 256

_NETWORK_ERRORS = (aetcd.ClientError, grpc.RpcError, asyncio.TimeoutError, OSError)


class _Unavailable(Exception):
    """No endpoint answered within the budget."""


class _LeaseNotFound(Exception):
    """etcd refused a write bound to our lease: it expired or was revoked (not a network error)."""


def _lease_guard(exc: aetcd.ClientError) -> Exception:
    return _LeaseNotFound(str(exc)) if "lease not found" in str(exc) else exc


def parse_etcd_url(url: str, key: str = "ha.arbiter") -> list[tuple[str, int]]:
    """``etcd://HOST:PORT[,HOST:PORT...]`` -> [(host, port), ...]; ConfigError naming ``key`` otherwise.

    A missing port is etcd's 2379; an IPv6 address is written in brackets (``[::1]:2379``).
    """
    if not isinstance(url, str) or not url.startswith("etcd://"):
        raise ConfigError(f"{key}: {url!r} is not an etcd URL (etcd://HOST:PORT[,HOST:PORT...])")
    rest = url[len("etcd://"):]
    if rest.endswith("/"):
        rest = rest[:-1]
    if not rest:
        raise ConfigError(f"{key}: {url!r} names no etcd endpoint")
    if any(c in rest for c in "@/?#"):
        raise ConfigError(
            f"{key}: {url!r}: only HOST:PORT endpoints separated by commas are allowed "
            "(credentials go in ha.etcd.username / ha.etcd.password_file)"
        )
    endpoints: list[tuple[str, int]] = []
    for part in rest.split(","):
        part = part.strip()
        m = re.fullmatch(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<p6>[^:]*))?|(?P<host>[^:\[\]]+)(?::(?P<port>[^:]*))?", part)
        if not m:
            raise ConfigError(f"{key}: {part!r} in {url!r} is not HOST:PORT")
        host = m["v6"] or m["host"]
        port_text = m["p6"] if m["v6"] else m["port"]
        if m["v6"] is None and not _HOST_RE.match(host):
            raise ConfigError(f"{key}: {host!r} in {url!r} is not a host name or address")
        if port_text is None:
            port = DEFAULT_PORT
        else:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ConfigError(f"{key}: port {port_text!r} in {url!r} is not a TCP port")
            port = int(port_text)
        if (host, port) in endpoints:
            raise ConfigError(f"{key}: {host}:{port} appears twice in {url!r}")
        endpoints.append((host, port))
    return endpoints


class EtcdArbiter(Arbiter):
    """One node's view of its pair's owner key in an etcd v3 cluster (see the module docstring).

    ``endpoints``: the members' client addresses; ``identity`` / ``peer_identity``:
    how the two nodes are named in the keys; ``pair_id``: the pair's directory
    (unique per pair in the cluster, the same on both nodes); ``ttl``: lease
    seconds (whole seconds, etcd's unit); ``timeout``: budget of one call.
    ``fence_margin`` (default ttl / 2): renew reports a loss once ``ttl -
    fence_margin`` seconds passed without an acknowledged keepalive.
    ``username`` / ``password``: etcd authentication (the password is never logged).
    ``tls``: talk TLS to the members (CA, optional client certificate); None: plaintext.
    """

    #: a node running the services must release the owner key when they die (the HA loop then reads its
    #: own services' state on the master): etcd knows whether its wazod lives, not whether its Asterisk does
    owner_duty = True

    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        identity: str,
        peer_identity: str,
        pair_id: str,
        ttl: float,
        timeout: float,
        *,
        prefix: str = DEFAULT_PREFIX,
        fence_margin: float | None = None,
        username: str | None = None,
        password: str | None = None,
        node_name: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        if not endpoints:
            raise ConfigError("ha.arbiter: no etcd endpoint")
        for name, value in (("identity", identity), ("peer_identity", peer_identity)):
            if not isinstance(value, str) or not IDENTITY_RE.match(value):
                raise ConfigError(f"etcd arbiter: {name} {value!r} must be 1-64 of A-Z a-z 0-9 . _ -")
        if identity == peer_identity:
            raise ConfigError(f"etcd arbiter: identity and peer_identity are both {identity!r}")
        if not isinstance(pair_id, str) or not PAIR_ID_RE.match(pair_id):
            raise ConfigError(f"ha.etcd.pair_id: {pair_id!r} must be 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
        if not PREFIX_RE.match(prefix):
            raise ConfigError(f"ha.etcd.prefix: {prefix!r} must look like /wazod (segments of A-Z a-z 0-9 . _ -)")
        if ttl != int(ttl) or int(ttl) < 2:
            raise ConfigError(f"ha.etcd.ttl: {ttl!r} must be a whole number of seconds, at least 2 (etcd's unit)")
        if not 0 < timeout < ttl:
            raise ConfigError(f"ha.etcd.timeout: {timeout!r} must be more than 0 and less than ttl ({ttl})")
        margin = ttl / 2 if fence_margin is None else fence_margin
        if not 0 <= margin < ttl:
            raise ConfigError(f"etcd arbiter: fence margin {margin!r} must be at least 0 and less than ttl ({ttl})")
        if (username is None) != (password is None):
            raise ConfigError("ha.etcd: username and password_file go together")
        self.endpoints = list(endpoints)
        self.identity = identity
        self.peer_identity = peer_identity
        self.pair_id = pair_id
        self.ttl = int(ttl)
        self.timeout = float(timeout)
        self.fence_margin = float(margin)
        self.prefix = prefix
        self.node_name = node_name or identity
        self._username = username
        self._password = password
        self._tls = tls
        base = f"{prefix}/{pair_id}"
        self.owner_key = f"{base}/owner".encode()
        self.members_prefix = f"{base}/members/".encode()
        self.dir_key = f"{base}/".encode()
        self._clients: list[aetcd.Client | None] = [None] * len(self.endpoints)
        self._preferred = 0
        self._lease_id: int | None = None
        self._lease_ttl = self.ttl
        self._acked_at: float | None = None  # monotonic send time of the last acknowledged keepalive / grant
        self._owned = False
        self._grant_lock = asyncio.Lock()
        self._reachable: bool | None = None
        self._member_lease: int | None = None  # the session under which our member key was last written
        #: name of another node found writing this node's member key (same identity in the same pair), or None
        self.conflict: str | None = None

    # -- public helpers ----------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, identity: str, peer_identity: str, pair_id: str, ttl: float, timeout: float,
                 **kw: Any) -> EtcdArbiter:
        """Build from ``ha.arbiter``'s ``etcd://HOST:PORT[,HOST:PORT...]`` (ConfigError naming the key if bad)."""
        return cls(parse_etcd_url(url), identity, peer_identity, pair_id, ttl, timeout, **kw)

    @property
    def lease_id(self) -> int | None:
        """This node's session lease (None until etcd granted one)."""
        return self._lease_id

    @property
    def owns(self) -> bool:
        """True while this node holds the owner key as far as it knows (claim True, no renew False since)."""
        return self._owned

    def __repr__(self) -> str:
        eps = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        return f"EtcdArbiter(etcd://{eps}, {self.owner_key.decode()}, identity={self.identity})"

    # -- the Arbiter interface ---------------------------------------------------------
    async def start(self) -> None:
        """Open the session: a lease and this node's member key. Network errors are not raised (observe retries)."""
        try:
            await asyncio.wait_for(self._ensure_session(), self.timeout)
        except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound) as e:
            self._note_reachable(False, e)

    async def observe(self) -> ArbiterView:
        """Keepalive of the session lease and a linearizable read of the pair's keys, within ``timeout``."""
        try:
            return await asyncio.wait_for(self._observe(), self.timeout)
        except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound) as e:
            self._note_reachable(False, e)
            return ArbiterView(reachable=False, peer_up=None, owner=None)

    async def claim(self) -> bool:
        """Create the owner key bound to this node's lease if nobody holds it; True if this node is owner now."""
        try:
            owned = await asyncio.wait_for(self._claim(), self.timeout)
        except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound) as e:
            self._note_reachable(False, e)
            return False
        if owned and not self._owned:
            log.info("etcd: owner key obtained", key=self.owner_key.decode(), lease=self._lease_id)
        self._owned = owned
        return owned

    async def renew(self) -> bool:
        """Keep the lease alive; False once ownership is lost or can no longer be proven (see module doc)."""
        if not self._owned:
            return False
        started = time.monotonic()
        try:
            alive, held = await asyncio.wait_for(self._renew(), self.timeout)
        except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound) as e:
            self._note_reachable(False, e)
            if self._acked_at is not None and time.monotonic() < self._acked_at + self._lease_ttl - self.fence_margin:
                return True
            log.warning("etcd: ownership no longer proven (no keepalive acknowledged)",
                        key=self.owner_key.decode(), seconds=round(time.monotonic() - (self._acked_at or started), 2))
            self._owned = False
            return False
        self._note_reachable(True)
        if alive:
            self._acked_at = started
        if not alive or not held:
            log.warning("etcd: ownership lost", key=self.owner_key.decode(),
                        reason="lease expired or revoked" if not alive else "owner key no longer bound to our lease")
            self._owned = False
            return False
        return True

    async def release(self) -> bool:
        """Delete the owner key if this node holds it (compare-and-delete); never raises for network errors.
        False: etcd did not answer, the key may still name this node (the caller tries again)."""
        self._owned = False
        try:
            await asyncio.wait_for(self._release(), self.timeout)
        except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound) as e:
            self._note_reachable(False, e)
            log.warning("etcd: owner key not released (it expires with our lease unless renewed)", error=str(e))
            return False
        return True

    async def close(self) -> None:
        """Revoke the session lease (its keys go with it) and close the connections."""
        self._owned = False
        lease, self._lease_id = self._lease_id, None
        if lease is not None:
            try:
                await asyncio.wait_for(self._hedged(lambda c: _revoke(c, lease), self.timeout), self.timeout)
            except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound) as e:
                log.warning("etcd: lease not revoked at close (it expires by itself)", error=str(e))
        clients, self._clients = self._clients, [None] * len(self.endpoints)
        for client in clients:
            if client is not None:
                await _close_client(client)

    # -- internals -----------------------------------------------------------------------
    def _client(self, index: int) -> aetcd.Client:
        client = self._clients[index]
        if client is None:
            host, port = self.endpoints[index]
            client = make_client(host, port, timeout=self.timeout, username=self._username,
                                 password=self._password, tls=self._tls)
            self._clients[index] = client
        return client

    async def _drop_client(self, index: int) -> None:
        client, self._clients[index] = self._clients[index], None
        if client is not None:
            await _close_client(client)

    async def _hedged(self, op: Callable[[aetcd.Client], Awaitable[T]], budget: float) -> T:
        """Run ``op`` on the preferred endpoint; also on the next one when it fails or is slow. First answer wins."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        n = len(self.endpoints)
        order = [(self._preferred + k) % n for k in range(n)]
        hedge_after = budget / (n + 1)
        tasks: dict[asyncio.Task, int] = {}
        errors: list[str] = []
        launched = 0

        reauthenticated: set[int] = set()

        def launch(index: int | None = None) -> None:
            nonlocal launched
            if index is None:
                index = order[launched]
                launched += 1
            tasks[asyncio.ensure_future(op(self._client(index)))] = index

        launch()
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, hedge_after) if launched < n else remaining
                done, _ = await asyncio.wait(tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index = tasks.pop(task)
                    if task.cancelled():  # its channel was closed under it (another request re-authenticating)
                        host, port = self.endpoints[index]
                        errors.append(f"{host}:{port}: request cancelled with its channel")
                        if index not in reauthenticated:  # once more, on the member's fresh channel
                            reauthenticated.add(index)
                            launch(index)
                        continue
                    exc = task.exception()
                    if exc is None:
                        self._preferred = index
                        return task.result()
                    host, port = self.endpoints[index]
                    errors.append(f"{host}:{port}: {_describe(exc)}")
                    if isinstance(exc, (aetcd.exceptions.UnauthenticatedError, aetcd.exceptions.InvalidArgumentError)):
                        # Auth token expired (etcd's simple tokens live --auth-token-ttl, 5 min), or
                        # authentication refused: a fresh channel authenticates again (aetcd would keep
                        # the failed one open). An expired token is retried at once on the same member.
                        await self._drop_client(index)
                        if isinstance(exc, aetcd.exceptions.UnauthenticatedError) and index not in reauthenticated:
                            reauthenticated.add(index)
                            launch(index)
                    elif not isinstance(exc, _NETWORK_ERRORS):
                        raise exc
                if launched < n:
                    launch()
                elif not tasks:
                    break
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except BaseException:  # noqa: BLE001,S110 - a cancelled loser's outcome does not matter
                    pass
        raise _Unavailable("; ".join(errors) or f"no answer within {budget:.2f} s")

    def _budget(self, started: float) -> float:
        return max(0.001, self.timeout - (time.monotonic() - started))

    async def _ensure_session(self, started: float | None = None) -> int:
        """The session lease (granted if needed, with an ID chosen here so a hedged grant is idempotent)."""
        started = time.monotonic() if started is None else started
        async with self._grant_lock:
            if self._lease_id is not None:
                return self._lease_id
            lease_id = secrets.randbits(62) | 1
            sent = time.monotonic()
            granted = await self._hedged(lambda c: _grant(c, self.ttl, lease_id), self._budget(started))
            self._lease_id, self._lease_ttl, self._acked_at = lease_id, max(granted, 1), sent
            log.info("etcd: session lease granted", lease=lease_id, ttl=self._lease_ttl)
        await self._put_member(started)
        return lease_id

    async def _put_member(self, started: float) -> None:
        lease = self._lease_id
        key = self.members_prefix + self.identity.encode()
        await self._hedged(lambda c: _put(c, key, self.node_name.encode(), lease), self._budget(started))
        self._member_lease = lease

    def _lease_lost(self) -> None:
        if self._lease_id is not None:
            log.warning("etcd: session lease expired on the server", lease=self._lease_id)
        self._lease_id = None
        self._owned = False

    async def _observe(self) -> ArbiterView:
        started = time.monotonic()
        lease = self._lease_id
        keepalive = (asyncio.ensure_future(self._hedged(lambda c: _keepalive(c, lease), self.timeout))
                     if lease is not None else None)
        try:
            kvs = await self._hedged(lambda c: _read_dir(c, self.dir_key), self.timeout)
        except BaseException:
            if keepalive is not None:
                _discard(keepalive)
            raise
        alive: bool | None = None
        if keepalive is not None:
            try:
                alive = await keepalive
            except _NETWORK_ERRORS + (_Unavailable, _LeaseNotFound):
                alive = None
        self._note_reachable(True)
        if alive is True:
            self._acked_at = started
        elif alive is False and self._lease_id == lease:
            self._lease_lost()
        owner_kv = kvs.get(self.owner_key)
        owner = _text(owner_kv.value) if owner_kv is not None else None
        # "up" for the HA machine means serving, as for the HTTP arbiter: the peer holds the owner key. Its
        # member key alone (wazod alive) is not enough: a master whose services died releases the key (the
        # owner's duty) while its wazod lives, and the slave must then be able to take over.
        peer_up = owner == self.peer_identity
        if owner_kv is not None and owner == self.identity and owner_kv.lease != self._lease_id:
            self._owned = False
        # Heal our own member key (first round after a grant, an expired lease, a deleted key).
        mine = kvs.get(self.members_prefix + self.identity.encode())
        if (mine is not None and self._lease_id is not None and mine.lease != self._lease_id
                and self._member_lease == self._lease_id):
            self._note_conflict(_text(mine.value))
        try:
            if self._lease_id is None:
                await self._ensure_session(started)
            elif mine is None or mine.lease != self._lease_id:
                await self._put_member(started)
        except _LeaseNotFound:
            self._lease_lost()
        except _NETWORK_ERRORS + (_Unavailable,) as e:
            log.debug("etcd: member key not written this round", error=_describe(e))
        return ArbiterView(reachable=True, peer_up=peer_up, owner=owner)

    async def _claim(self) -> bool:
        started = time.monotonic()
        for attempt in (1, 2):
            lease = await self._ensure_session(started)
            try:
                ok, current = await self._hedged(
                    lambda c, lease=lease: _create_if_absent(c, self.owner_key, self.identity, lease),
                    self._budget(started))
                break
            except _LeaseNotFound:
                # Our session expired while nobody called observe: a new one, then the claim again.
                if self._lease_id == lease:
                    self._lease_lost()
                if attempt == 2:
                    raise
        self._note_reachable(True)
        if ok:
            return True
        if current is None:
            return False
        if current.value == self.identity.encode():
            if current.lease == lease:
                return True
            # Ours from an earlier session of this node (restart): bind it to the current lease.
            revision = current.mod_revision
            ok, _ = await self._hedged(
                lambda c: _rebind(c, self.owner_key, self.identity, lease, revision), self._budget(started))
            return ok
        return False

    async def _renew(self) -> tuple[bool, bool]:
        lease = self._lease_id
        if lease is None:
            return False, False
        keepalive = asyncio.ensure_future(self._hedged(lambda c: _keepalive(c, lease), self.timeout))
        try:
            kv = await self._hedged(lambda c: _get(c, self.owner_key), self.timeout)
        except BaseException:
            _discard(keepalive)
            raise
        alive = await keepalive
        if not alive and self._lease_id == lease:
            self._lease_lost()
        held = kv is not None and kv.value == self.identity.encode() and kv.lease == lease
        return alive, held

    async def _release(self) -> None:
        await self._hedged(lambda c: _delete_if_value(c, self.owner_key, self.identity), self.timeout)
        log.info("etcd: owner key released", key=self.owner_key.decode())

    def _note_conflict(self, other: str) -> None:
        """Our member key was rewritten under another lease in this session: a second node uses our identity."""
        if other != self.conflict:
            log.error(
                "etcd: another wazod uses this node's identity in this pair: check ha.etcd.pair_id and "
                "ha.node_type on both nodes", key=(self.members_prefix + self.identity.encode()).decode(),
                other_node=other,
            )
        self.conflict = other

    def _note_reachable(self, reachable: bool, error: BaseException | None = None) -> None:
        if reachable != self._reachable:
            if reachable:
                log.info("etcd: quorum reachable", endpoints=len(self.endpoints))
            else:
                log.warning("etcd: no quorum answered", error=_describe(error) if error else None)
        self._reachable = reachable


# -- one request each, on one client (all idempotent: they may be sent to two members) ------------
async def _grant(client: aetcd.Client, ttl: int, lease_id: int) -> int:
    try:
        return (await client.lease(ttl, lease_id=lease_id)).ttl
    except aetcd.exceptions.DuplicateLeaseError:
        return ttl  # granted by a hedged twin of this request


async def _keepalive(client: aetcd.Client, lease_id: int) -> bool:
    reply = await client.refresh_lease(lease_id)
    return reply is not None and reply.TTL > 0


async def _revoke(client: aetcd.Client, lease_id: int) -> None:
    try:
        await client.revoke_lease(lease_id)
    except aetcd.ClientError as e:
        if "lease not found" not in str(e):
            raise


async def _read_dir(client: aetcd.Client, dir_key: bytes) -> dict[bytes, Any]:
    result = await client.get_prefix(dir_key)
    return {kv.key: kv for kv in result}


async def _get(client: aetcd.Client, key: bytes) -> Any:
    return await client.get(key)


async def _put(client: aetcd.Client, key: bytes, value: bytes, lease: int) -> None:
    try:
        await client.put(key, value, lease=lease)
    except aetcd.ClientError as e:
        raise _lease_guard(e) from e


async def _create_if_absent(client: aetcd.Client, key: bytes, value: str, lease: int) -> tuple[bool, Any]:
    t = client.transactions
    try:
        ok, responses = await client.transaction(
            compare=[t.create(key) == 0],
            success=[t.put(key, value.encode(), lease=lease)],
            failure=[t.get(key)],
        )
    except aetcd.ClientError as e:
        raise _lease_guard(e) from e
    if ok:
        return True, None
    found = responses[0] if responses else []
    return False, (found[0][1] if found else None)


async def _rebind(client: aetcd.Client, key: bytes, value: str, lease: int, revision: int) -> tuple[bool, Any]:
    t = client.transactions
    try:
        ok, _ = await client.transaction(
            compare=[t.mod(key) == revision],
            success=[t.put(key, value.encode(), lease=lease)],
            failure=[t.get(key)],
        )
    except aetcd.ClientError as e:
        raise _lease_guard(e) from e
    if not ok:
        kv = await client.get(key)
        return (kv is not None and kv.value == value.encode() and kv.lease == lease), None
    return True, None


async def _delete_if_value(client: aetcd.Client, key: bytes, value: str) -> None:
    t = client.transactions
    await client.transaction(compare=[t.value(key) == value.encode()], success=[t.delete(key)], failure=[])


async def _close_client(client: aetcd.Client) -> None:
    try:
        await asyncio.wait_for(client.close(), 1.0)
    except Exception as e:  # noqa: BLE001 - closing a broken channel must not stop the caller
        log.debug("etcd: client close failed", error=_describe(e))


def _discard(task: asyncio.Future) -> None:
    """Cancel a side request whose outcome no longer matters, and consume its exception."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _text(value: bytes) -> str:
    return value[:MAX_VALUE].decode("utf-8", errors="replace")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text else type(exc).__name__


# -- wiring for the HA monitor ---------------------------------------------------------------------
def make_etcd_arbiter(config: Any, url: str | None = None) -> EtcdArbiter:
    """The EtcdArbiter of this node from the configuration (``ha.arbiter``, ``ha.node_type``, ``ha.etcd``).

    ``url`` overrides ``ha.arbiter`` (which must be an ``etcd://`` URL).

    Identity: ``ha.node_type`` (master or slave), the peer is the other one.
    ``ha.etcd.timeout`` null: 0.8 x probe_interval. The fence margin is one
    probe interval plus the timeout: renew reports a loss at the first round
    after which the lease could have expired on the server.
    Raises ConfigError (exit 2) naming the key for anything missing or wrong.
    """
    ha = config.ha
    url = url if url is not None else getattr(ha, "arbiter", None)
    endpoints = parse_etcd_url(url)
    if ha.node_type not in ("master", "slave"):
        raise ConfigError(f"ha.arbiter: an etcd arbiter needs ha.node_type master or slave (not {ha.node_type!r})")
    section = ha.etcd
    if not section.pair_id:
        raise ConfigError(
            "ha.etcd.pair_id: required with an etcd arbiter: the same name on both nodes of the pair, "
            "different for every pair sharing the etcd cluster"
        )
    timeout = section.timeout if section.timeout is not None else 0.8 * ha.probe_interval
    margin = ha.probe_interval + timeout
    if margin >= section.ttl:
        raise ConfigError(
            f"ha.etcd.ttl: {section.ttl} s must exceed probe_interval + timeout ({margin:.2f} s): "
            "a master cut from etcd must notice the loss of its lease before it expires"
        )
    password = None
    if section.username is not None:
        password = read_password_file(section.password_file)
    tls = None
    if section.ca_file is not None:
        tls = TlsFiles.load(section.ca_file, section.cert_file, section.key_file)
    elif section.cert_file is not None or section.key_file is not None:
        raise ConfigError("ha.etcd.ca_file: required with cert_file / key_file (TLS verifies the members)")
    peer = "slave" if ha.node_type == "master" else "master"
    return EtcdArbiter(
        endpoints, ha.node_type, peer, section.pair_id, section.ttl, timeout,
        prefix=section.prefix, fence_margin=margin, username=section.username, password=password,
        node_name=config.node_name, tls=tls,
    )


def read_password_file(path: str | None) -> str:
    """The first line of ``ha.etcd.password_file`` (ConfigError naming the key when unset, unreadable or empty)."""
    if not path:
        raise ConfigError("ha.etcd.password_file: required when ha.etcd.username is set")
    try:
        with open(path) as f:
            password = f.readline().rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"ha.etcd.password_file: {path}: {e.strerror}") from None
    if not password:
        raise ConfigError(f"ha.etcd.password_file: {path} is empty")
    return password
