"""The status endpoint over real HTTP: health, liveness, status, metrics, authentication."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import web
from harness import free_port, wait_for_async
from harness.endpoint import Running
from harness.health import WazoAuthStandIn, make_tls_server_files
from prometheus_client.parser import text_string_to_metric_families

from wazod.endpoint.auth import auth_required
from wazod.health.metrics import PROBE_RTT
from wazod.jobs import JobResult, run_job


async def test_health_answers_200_then_503_with_the_failing_check(tmp_path):
    async with Running(tmp_path) as node:
        status, body = await node.get("/health")
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "ok" and doc["checks"]["disk"]["level"] == "ok"
        assert doc["node"] == "pbx-test" and doc["role"] == "master"

        node.ctx.config.health.disk.warning_free_percent = 100
        await wait_for_async(lambda: node.checks.trackers["disk"].level == "warning", timeout=10)
        status, body = await node.get("/health")
        assert status == 200 and json.loads(body)["status"] == "degraded"  # degraded still serves

        node.ctx.config.health.disk.critical_free_percent = 100
        await wait_for_async(lambda: node.checks.trackers["disk"].level == "critical", timeout=10)
        status, body = await node.get("/health")
        doc = json.loads(body)
        assert status == 503 and doc["status"] == "critical" and doc["failing"] == ["disk"]
        assert doc["checks"]["disk"]["level"] == "critical" and str(tmp_path) in doc["checks"]["disk"]["summary"]


async def test_liveness_follows_the_main_loop_tick(tmp_path):
    async with Running(tmp_path, status={"liveness_limit": 2.0}) as node:
        node.ctx.last_tick = time.monotonic()
        status, body = await node.get("/liveness")
        assert status == 200 and json.loads(body)["status"] == "ok"
        node.ctx.last_tick = time.monotonic() - 3.0  # the supervisor's loop stopped ticking 3 s ago
        status, body = await node.get("/liveness")
        assert status == 503 and json.loads(body)["status"] == "stalled" and json.loads(body)["lag"] >= 3.0


async def test_status_is_the_document_of_wazod_status_json(tmp_path):
    async with Running(tmp_path) as node:
        node.ctx.status.update(ha_state="active", services="running", berofos={"fos1": {"mode": 1}})
        status, body = await node.get("/status")
        assert status == 200
        doc = json.loads(body)
        cli = subprocess.run([sys.executable, "-m", "wazod", "status", "--json", "--config", str(node.cfg_path)],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        from_cli = json.loads(cli.stdout)
        assert doc["daemon"] == "running"
        doc.pop("daemon"), from_cli.pop("daemon")  # the CLI sees no daemon lock in this test
        assert doc == from_cli
        assert doc["ha_state"] == "active" and doc["berofos"] == {"fos1": {"mode": 1}}
        assert doc["health"]["disk"]["level"] == "ok"
        assert set(doc["jobs"]) == {"replication", "sync", "backup", "purge"}


async def test_metrics_parsed_by_prometheus_client(tmp_path):
    async with Running(tmp_path) as node:
        ctx, config = node.ctx, node.ctx.config

        async def backup(config, **kw):
            return JobResult("backup", "ok", data={  # as wazod.backup reports it
                "data": {"archive": "data.tgz", "size": 123456, "members": 12, "files": 10, "bytes": 999999},
                "db": {"archive": "db.tgz", "size": 65536, "members": 2}})

        async def purge(config, **kw):
            return JobResult("purge", "ok", data={  # as wazod.purge reports it
                "days_to_keep": 365, "deleted": 4242,
                "tables": {"cel": {"status": "ok", "deleted": 4000}, "queue_log": {"status": "ok", "deleted": 242}}})

        await run_job("backup", config, ctx.emitter, entry=backup)
        await run_job("purge", config, ctx.emitter, entry=purge)
        ctx.status.update(ha_state="standby")
        ctx.status.update(ha_state="active", berofos={"fos1": {"mode": 0}, "fos2": {"mode": 1}})
        ctx.registry["maintenance_active"] = lambda: True
        ctx.emitter.store.ack("mqtt", 1)
        PROBE_RTT.observe(0.004)
        status, text = await node.get("/metrics")
        depth = ctx.emitter.store.depth("mqtt")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(name, suffix=""):
        return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples if s.name == name + suffix}

    assert samples("wazod_role")[(("role", "master"),)] == 1 and samples("wazod_role")[(("role", "slave"),)] == 0
    assert samples("wazod_ha_state") == {(("state", "active"),): 1}
    assert samples("wazod_ha_transitions", "_total") == {(("to", "active"),): 1, (("to", "standby"),): 1}
    assert samples("wazod_ha_probe_rtt_seconds", "_count")[()] >= 1
    assert samples("wazod_job_last_result")[(("job", "backup"), ("result", "ok"))] == 1
    assert samples("wazod_job_last_result")[(("job", "backup"), ("result", "failed"))] == 0
    assert samples("wazod_job_last_success_timestamp_seconds")[(("job", "purge"),)] == pytest.approx(time.time(), abs=60)
    assert (("job", "backup"),) in samples("wazod_job_last_duration_seconds")
    assert samples("wazod_backup_bytes") == {(("kind", "data"),): 123456, (("kind", "db"),): 65536}
    assert samples("wazod_backup_source_bytes")[()] == 999999
    assert samples("wazod_purge_rows_deleted")[()] == 4242
    assert samples("wazod_purge_table_rows_deleted") == {(("table", "cel"),): 4000, (("table", "queue_log"),): 242}
    assert depth == 1 and samples("wazod_outbox_depth")[(("consumer", "mqtt"),)] == depth
    assert samples("wazod_berofos_mode") == {(("device", "fos1"),): 0, (("device", "fos2"),): 1}
    assert samples("wazod_health_check_level") == {(("check", "disk"),): 0}
    assert samples("wazod_maintenance_active")[()] == 1
    assert samples("wazod_info")[(("node", "pbx-test"), ("role", "master"), ("version", __import__("wazod").__version__))] == 1


def test_auth_applies_beyond_loopback_only():
    from wazod.config.sections.status import StatusSection

    assert not auth_required(StatusSection(listen="127.0.0.1:9599"))
    assert not auth_required(StatusSection(listen="[::1]:9599"))
    assert auth_required(StatusSection(listen="0.0.0.0:9599"))
    assert auth_required(StatusSection(listen="10.0.0.1:9599"))
    assert auth_required(StatusSection(listen="127.0.0.1:9599", auth="always"))
    assert not auth_required(StatusSection(listen="10.0.0.1:9599", auth="never"))
    with pytest.raises(ValueError, match="HOST:PORT"):
        StatusSection(listen="9599")
    with pytest.raises(ValueError, match="between 1 and 65535"):
        StatusSection(listen="0.0.0.0:70000")


async def test_without_a_valid_token_every_path_is_401(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-static-token\n")
    os.chmod(token_file, 0o600)
    auth = await WazoAuthStandIn().start()
    try:
        async with Running(tmp_path, status={"auth": "always", "token_file": str(token_file),
                                             "wazo_auth_url": auth.url, "token_cache": 30}) as node:
            for path in ("/health", "/status", "/metrics", "/liveness", "/no/such/path"):
                status, body = await node.get(path)
                assert status == 401 and json.loads(body) == {"error": "unauthorized"}, path
            status, _ = await node.get("/health", headers={"X-Auth-Token": "wrong"})
            assert status == 401
            assert auth.requests == ["wrong"]  # unknown tokens are asked to wazo-auth

            status, body = await node.get("/health", headers={"X-Auth-Token": "s3cret-static-token"})
            assert status == 200 and json.loads(body)["checks"]["disk"]["level"] == "ok"

            token = auth.issue()
            for _ in range(3):
                status, text = await node.get("/metrics", headers={"X-Auth-Token": token})
                assert status == 200 and "wazod_role" in text
            assert auth.requests.count(token) == 1  # cached: wazo-auth asked once
            status, _ = await node.get("/no/such/path", headers={"X-Auth-Token": token})
            assert status == 404  # only an authenticated client learns what exists
    finally:
        await auth.stop()


async def test_wazo_auth_acl_revocation_and_outage(tmp_path):
    auth = await WazoAuthStandIn().start()
    try:
        async with Running(tmp_path, status={"auth": "always", "wazo_auth_url": auth.url, "token_cache": 0,
                                             "wazo_auth_acl": "wazod.status.read"}) as node:
            allowed = auth.issue({"wazod.status.read"})
            other = auth.issue({"confd.users.read"})
            assert (await node.get("/status", headers={"X-Auth-Token": allowed}))[0] == 200
            assert (await node.get("/status", headers={"X-Auth-Token": other}))[0] == 401  # 403 from wazo-auth
            del auth.tokens[allowed]  # revoked (token_cache 0: asked every time)
            assert (await node.get("/status", headers={"X-Auth-Token": allowed}))[0] == 401
            fresh = auth.issue({"wazod.status.read"})
            await auth.stop()  # wazo-auth down: nobody gets in
            assert (await node.get("/status", headers={"X-Auth-Token": fresh}))[0] == 401
    finally:
        await auth.stop()


async def test_wazo_auth_over_https_verified_with_its_certificate(tmp_path):
    """Wazo's daemons reach wazo-auth over HTTPS with the node's certificate as CA; so does wazod."""
    (tmp_path / "tls").mkdir()
    crt, key = make_tls_server_files(tmp_path / "tls")
    auth = await WazoAuthStandIn(tls=(crt, key)).start()
    try:
        async with Running(tmp_path, status={"auth": "always", "wazo_auth_url": auth.url,
                                             "wazo_auth_verify": str(crt)}) as node:
            token = auth.issue()
            assert (await node.get("/health", headers={"X-Auth-Token": token}))[0] == 200
            assert auth.requests == [token]
            # the same server, but a CA that did not sign it: wazo-auth cannot be trusted, nobody gets in
            (tmp_path / "other").mkdir()
            other, _ = make_tls_server_files(tmp_path / "other")
            node.ctx.config.status.wazo_auth_verify = str(other)
            fresh = auth.issue()
            assert (await node.get("/health", headers={"X-Auth-Token": fresh}))[0] == 401
            assert fresh not in auth.requests  # the TLS handshake failed before any request
    finally:
        await auth.stop()


async def test_anonymous_health_shows_levels_only(tmp_path):
    async with Running(tmp_path, status={"auth": "always", "anonymous_paths": ["/health"]}) as node:
        status, body = await node.get("/health")
        assert status == 200 and json.loads(body) == {"status": "ok", "checks": {"disk": {"level": "ok"}}}
        assert (await node.get("/metrics"))[0] == 401


async def test_routes_of_other_parts_are_served_and_authenticated(tmp_path):
    token_file, admin_file = tmp_path / "token", tmp_path / "admin"
    token_file.write_text("tok\n")
    admin_file.write_text("admin-tok\n")
    admin_file.chmod(0o600)
    calls = []

    async def set_maintenance(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.json_response({"ok": True})

    async def arbiter(request: web.Request) -> web.Response:
        return web.json_response({"nodes": {}})

    node = Running(tmp_path, status={"auth": "always", "token_file": str(token_file),
                                     "admin_token_file": str(admin_file)})
    node.extra_routes.extend([("POST", "/maintenance", set_maintenance), ("GET", "/arbiter", arbiter)])
    async with node:
        async with node.http.post("/maintenance", json={"on": True}) as resp:
            assert resp.status == 401
        async with node.http.post("/maintenance", json={"on": True}, headers={"X-Auth-Token": "tok"}) as resp:
            assert resp.status == 403  # the read token does not change state
        async with node.http.post("/maintenance", json={"on": True}, headers={"X-Auth-Token": "admin-tok"}) as resp:
            assert resp.status == 200
        assert (await node.get("/arbiter"))[0] == 401
        assert (await node.get("/arbiter", headers={"X-Auth-Token": "tok"})) == (200, '{"nodes": {}}')
    assert calls == [{"on": True}]


async def test_reload_moves_the_listener(tmp_path):
    async with Running(tmp_path) as node:
        new_port = free_port()
        node.ctx.config.status.listen = f"127.0.0.1:{new_port}"
        await node.server.reload()
        await wait_for_async(lambda: node.server.bound and node.server.bound[1] == new_port, timeout=10)
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{new_port}/health") as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            await node.get("/health")
