"""Telling the other node of the pair: ``POST /maintenance`` on its status endpoint.

Maintenance applies to the pair (the slave must not take over while the
master is being upgraded, and the master must not replicate to a slave being
upgraded), so the node that receives the command passes it on. The request
goes through the peer's status endpoint with the peer's **admin** token in
``X-Auth-Token`` (``maintenance.peer_token_file``, else ``status.admin_token_file``:
a pair shares that file); the read token of ``status.token_file`` is not enough
to change state there. The peer applies
it to its own state file and emits its own event; it never passes it further,
so there is no ping-pong.

The remaining time is sent, not the end time, so a clock difference between
the nodes does not shorten or stretch the peer's maintenance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from wazod.config.listen import parse_listen
from wazod.tokenfile import read_token_file

PATH = "/maintenance"


@dataclass
class PeerAnswer:
    ok: bool
    url: str | None
    detail: str  # what happened, for the administrator (never a token)
    changed: bool = False
    record: dict[str, Any] | None = None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def peer_base_url(config) -> str | None:
    """Where the peer's status endpoint is, or None when there is no peer to tell."""
    remote = config.ha.remote_address
    if config.role == "disabled" or not remote:
        return None
    section = config.maintenance
    if section.peer_url:
        return section.peer_url.replace("{remote_address}", _host(remote)).rstrip("/")
    if config.ha.peer_url:
        parts = urlsplit(config.ha.peer_url.replace("{remote_address}", _host(remote)))
        return f"{parts.scheme}://{parts.netloc}"
    _, port = parse_listen(config.status.listen)
    return f"http://{_host(remote)}:{port}"


def admin_token(config) -> str | None:
    """The token that may change state on the peer: ``maintenance.peer_token_file``, else our own
    ``status.admin_token_file`` (the pair shares it)."""
    return read_token_file(config.maintenance.peer_token_file or config.status.admin_token_file)


def peer_headers(config, change: bool = True) -> dict[str, str]:
    """What to send in ``X-Auth-Token``: the admin token; for a read, failing that, a read token
    (``ha.peer_token_file``, else ``status.token_file``)."""
    token = admin_token(config)
    if token is None and not change:
        token = read_token_file(getattr(config.ha, "peer_token_file", None) or config.status.token_file)
    return {"X-Auth-Token": token} if token else {}


def request_for(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The body that makes the peer match ``record`` (this node's latest change)."""
    now = time.time() if now is None else now
    if record.get("active"):
        return {"action": "on", "id": record.get("id"), "remaining_s": round(record["until_ts"] - now, 3),
                "reason": record.get("reason"), "user": record.get("set_by_user"), "node": record.get("set_by_node")}
    by = record.get("ended_by") or ""
    user, _, node = by.partition("@")
    return {"action": "off", "id": record.get("id"), "user": user or None, "node": node or None}


async def tell_peer(config, body: dict[str, Any]) -> PeerAnswer:
    """POST ``body`` to the peer; never raises for network or HTTP errors (they are in the answer)."""
    return await _call(config, "POST", body)


async def ask_peer(config) -> PeerAnswer:
    """The peer's own view (GET); ``record`` is its ``maintenance`` section."""
    return await _call(config, "GET", None)


async def _call(config, method: str, body: dict[str, Any] | None) -> PeerAnswer:
    base = peer_base_url(config)
    if base is None:
        return PeerAnswer(False, None, "no peer: HA is disabled or ha.remote_address is not set")
    url = base + PATH
    change = method != "GET"
    if change and admin_token(config) is None:
        return PeerAnswer(False, url, "no admin token to send: set status.admin_token_file (the same file on "
                          "both nodes) or maintenance.peer_token_file")
    timeout = aiohttp.ClientTimeout(total=config.maintenance.peer_timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.request(method, url, json=body, headers=peer_headers(config, change)) as resp:
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                doc = None
            if resp.status == 200 and isinstance(doc, dict):
                return PeerAnswer(True, url, "done", bool(doc.get("changed")), doc.get("maintenance"))
            if resp.status in (401, 403):
                return PeerAnswer(False, url, f"the peer refused our token ({resp.status}): both nodes need the "
                                  "same status.admin_token_file (or maintenance.peer_token_file)")
            error = doc.get("error") if isinstance(doc, dict) else None
            return PeerAnswer(False, url, f"the peer answered {resp.status}" + (f": {error}" if error else ""))
    except TimeoutError:
        return PeerAnswer(False, url, f"no answer within {config.maintenance.peer_timeout:g} s")
    except aiohttp.ClientConnectorError as e:
        return PeerAnswer(False, url, f"cannot connect: {e.os_error.strerror or e.os_error}")
    except aiohttp.ClientError as e:
        return PeerAnswer(False, url, f"{type(e).__name__}: {e}")
