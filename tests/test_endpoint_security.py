"""The HTTP endpoint against hostile clients: other local users, floods of idle connections, slowloris.

Real ``wazod run`` daemons and real sockets: the attacker is ``runuser -u nobody
-- curl`` (another local user of the PBX, as asterisk or www-data would be) or a
crowd of half-sent requests; the daemon's file-descriptor limit is lowered with
``prlimit`` so that exhausting it is cheap.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import structlog
from harness import wait_for, wait_for_async
from harness.endpoint import Running
from harness.maintenance import ADMIN_TOKEN, TOKEN, LoopNode, token_file

from wazod.logsetup import RepeatLimiter, configure_logging

ATTACK = {"action": "on", "remaining_s": 86400, "reason": "pwned", "user": "root", "node": "pbx1"}


def _curl_as(user: str, url: str, *, data: dict | None = None, token: str | None = None) -> tuple[int, str]:
    argv = ["runuser", "-u", user, "--", "curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}"]
    if data is not None:
        argv += ["-X", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(data)]
    if token is not None:
        argv += ["-H", f"X-Auth-Token: {token}"]
    res = subprocess.run([*argv, url], capture_output=True, text=True, timeout=30)
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body


@pytest.fixture
def daemon(tmp_path):
    started: list[LoopNode] = []

    def make(status: dict | None = None, wrapper: list[str] | None = None) -> LoopNode:
        node = LoopNode(tmp_path, "pbx1", token_file=token_file(tmp_path),
                        overrides={"status": {"auth": "auto", **(status or {})}})
        started.append(node)
        node.start(wrapper=wrapper)
        return node

    yield make
    for node in started:
        node.stop()


def test_another_local_user_cannot_change_state_on_loopback(daemon):
    """Default listen 127.0.0.1 and auth: auto: reads stay open to local users, a state change never is."""
    node = daemon()
    url = f"{node.url}/maintenance"
    assert _curl_as("nobody", f"{node.url}/liveness")[0] == 200  # reads: open on loopback, as configured
    assert _curl_as("nobody", url, data=ATTACK) == (401, '{"error": "unauthorized"}')
    # a read token (the one Prometheus holds) is not enough either
    code, body = _curl_as("nobody", url, data=ATTACK, token=TOKEN)
    assert code == 403 and "admin" in json.loads(body)["error"]
    assert not (node.state_dir / "maintenance.json").exists()
    assert node.events("maintenance_started") == []
    assert (node.status().get("maintenance") or {}).get("active") is not True
    # the admin token (mode 600, root's) does it: the refusals above were about the credential
    assert oct(node.admin_token_file.stat().st_mode & 0o777) == "0o600"
    code, body = _curl_as("root", url, data={**ATTACK, "remaining_s": 60}, token=ADMIN_TOKEN)
    assert code == 200 and json.loads(body)["maintenance"]["active"] is True
    before = (node.state_dir / "maintenance.json").read_bytes()
    assert json.loads(before)["active"] is True
    # nor can another user end it (the peer's failover held or released at will)
    assert _curl_as("nobody", url, data={"action": "off", "user": "root", "node": "pbx2"})[0] == 401
    assert (node.state_dir / "maintenance.json").read_bytes() == before


async def test_state_changes_need_the_admin_token_whatever_auth_says(tmp_path):
    admin = tmp_path / "admin"
    admin.write_text("the-admin-token\n")
    admin.chmod(0o644)  # readable by every local user: refused as an admin token

    async def change(request):
        return __import__("aiohttp").web.json_response({"changed": True})

    node = Running(tmp_path, status={"auth": "never", "admin_token_file": str(admin)})
    node.extra_routes.append(("POST", "/maintenance", change))
    async with node:
        for method in ("POST", "PUT", "DELETE"):
            async with node.http.request(method, "/maintenance") as resp:
                assert resp.status == 401, method
        async with node.http.post("/maintenance", headers={"X-Auth-Token": "the-admin-token"}) as resp:
            assert resp.status == 401  # the file is world-readable: no admin token at all
        admin.chmod(0o600)
        async with node.http.post("/maintenance", headers={"X-Auth-Token": "the-admin-token"}) as resp:
            assert resp.status == 200
        assert (await node.get("/health"))[0] == 200  # auth: never still serves reads


def _raise_own_fd_limit(needed: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    return soft, hard


def _half_sent(port: int, source: str = "127.0.0.1") -> socket.socket | None:
    s = socket.socket()
    try:
        s.settimeout(2)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: pbx1\r\nX-Slow: ")  # never finished
        return s
    except OSError:
        s.close()
        return None


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_flood_of_idle_connections_leaves_liveness_state_writes_and_the_log_alone(daemon):
    nofile, flood = 320, 500
    node = daemon(wrapper=["prlimit", f"--nofile={nofile}:{nofile}", "--"])
    old_limit = _raise_own_fd_limit(flood + 200)
    sockets: list[socket.socket] = []
    try:
        sockets = [s for s in (_half_sent(node.port) for _ in range(flood)) if s is not None]
        # liveness answers once the excess is shed (a newcomer pushes out the oldest idle one)
        def liveness() -> bool:
            try:
                with urllib.request.urlopen(f"{node.url}/liveness", timeout=3) as resp:
                    return resp.status == 200
            except (OSError, urllib.error.URLError):
                return False

        wait_for(liveness, timeout=30, message=f"no /liveness during the flood:\n{node.log_tail()}")
        assert _open_fds(node.proc.pid) < nofile - 64  # the daemon kept descriptors for everything else
        # a change of state is written (state file, status board, event store) in the middle of it
        req = urllib.request.Request(f"{node.url}/maintenance", method="POST",
                                     data=json.dumps({"action": "on", "remaining_s": 600}).encode(),
                                     headers={"Content-Type": "application/json", "X-Auth-Token": ADMIN_TOKEN})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        assert node.maintenance_file()["active"] is True
        wait_for(lambda: (node.status().get("maintenance") or {}).get("active") is True, timeout=10)
        assert len(node.events("maintenance_started")) == 1
        # the flood goes on: another wave, and the daemon still stands
        sockets += [s for s in (_half_sent(node.port) for _ in range(flood // 4)) if s is not None]
        wait_for(liveness, timeout=30, message=f"no /liveness after the second wave:\n{node.log_tail()}")
        assert node.proc.poll() is None
    finally:
        for s in sockets:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old_limit)
    log = node.log_path.read_text()
    assert "Too many open files" not in log and "out of system resource" not in log
    assert log.count("status endpoint closed connections") <= 4
    assert len(log) < 64 * 1024, f"{len(log)} bytes of log for one flood"


async def test_a_flooding_address_cannot_push_out_another_and_slowloris_is_closed(tmp_path):
    async with Running(tmp_path, status={"header_timeout": 3.0, "max_connections": 8}) as node:
        loop = asyncio.get_running_loop()
        # the peer (127.0.0.2) keeps its connections while 127.0.0.1 floods the endpoint
        # (the clients block: they run in a thread, the server in this loop)
        peer = [await asyncio.to_thread(_half_sent, node.port, "127.0.0.2") for _ in range(3)]
        flood = [await asyncio.to_thread(_half_sent, node.port) for _ in range(40)]
        assert all(peer) and all(flood)
        await wait_for_async(lambda: len(node.server.limits.open) <= 8, timeout=10)
        for s in peer:
            assert (await asyncio.to_thread(_answer_or_closed, s)).startswith(b"HTTP/1.1 200"), \
                "the peer's connection was shed"
            s.close()
        shed = [s for s in flood if (await asyncio.to_thread(_answer_or_closed, s)) == b""]
        assert len(shed) >= 40 - 8 + 3  # the flooding address lost its connections, not the peer
        for s in flood:
            s.close()
        assert (await node.get("/health"))[0] == 200

        # slowloris: one header byte at a time keeps nothing open past header_timeout
        slow = await asyncio.to_thread(_half_sent, node.port)
        slow.setblocking(False)

        async def closed_while_trickling() -> bool:
            try:
                await loop.sock_sendall(slow, b"a")
                data = await asyncio.wait_for(loop.sock_recv(slow, 1024), 0.2)
                return data == b"" or data.startswith(b"HTTP/1.1 408")
            except TimeoutError:
                return False
            except OSError:
                return True  # reset by the server

        await wait_for_async(closed_while_trickling, timeout=15)
        slow.close()


def _answer_or_closed(s: socket.socket) -> bytes:
    """What a half-sent connection gets once finished: an answer, or b"" when the server had closed it."""
    try:
        s.sendall(b"1\r\n\r\n")
        s.settimeout(5)
        return s.recv(4096)
    except OSError:
        return b""


def test_repeated_lines_are_collapsed_and_counted(tmp_path):
    now = [1000.0]
    out = tmp_path / "log"
    with open(out, "w") as stream:
        configure_logging("info", json=True, stream=stream, repeats=RepeatLimiter(burst=3, window=60, clock=lambda: now[0]))
        log = structlog.get_logger(component="test")
        import logging

        for _ in range(5000):
            logging.getLogger("asyncio").error("socket.accept() out of system resource")
            log.warning("same thing again", peer="10.0.0.2")
        log.info("another line")  # different lines pass
        now[0] += 61
        logging.getLogger("asyncio").error("socket.accept() out of system resource")
    lines = [json.loads(line[line.index("{"):]) for line in out.read_text().splitlines()]
    accept = [e for e in lines if e["event"] == "socket.accept() out of system resource"]
    assert len(accept) == 4 and accept[0]["component"] == "asyncio"
    assert "repeats_dropped_for_s" in accept[2] and accept[3]["repeated"] == 4997
    assert len([e for e in lines if e["event"] == "same thing again"]) == 3
    assert lines[-2]["event"] == "another line" and len(lines) == 8
    configure_logging("info", json=True)  # back to stdout for the tests after this one


def test_the_unit_leaves_the_endpoint_its_connections_and_ha_its_descriptors():
    from pathlib import Path

    from wazod.config.sections.status import StatusSection
    from wazod.endpoint.limits import RESERVED_FDS, connection_cap

    unit = (Path(__file__).parent.parent / "systemd" / "wazod.service").read_text()
    limit = int(next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("LimitNOFILE=")))
    default = StatusSection().max_connections
    assert connection_cap(default, limit) == default and limit - default > 10 * RESERVED_FDS
    assert connection_cap(default, 1024) == default  # systemd's default soft limit would still hold it
    assert connection_cap(default, 320) == 64  # a lower limit lowers the cap, never the reserve
