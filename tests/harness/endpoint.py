"""A status endpoint running in the test's own event loop: context, health checks, server.

Why: most endpoint tests need the real aiohttp server on a real loopback port,
but not a whole daemon process; this starts just those parts and stops them.
"""
from __future__ import annotations

import asyncio

import aiohttp

from wazod.endpoint.server import StatusServer
from wazod.health.checks import HealthChecks

from .health import make_context, quiet_health, write_config
from .util import free_port, wait_for_async


class Running:
    """A context, its health checks and its status server on a free loopback port."""

    def __init__(self, tmp_path, **config):
        self.port = free_port()
        status = {"listen": f"127.0.0.1:{self.port}", **config.pop("status", {})}
        health = config.pop("health", {"interval": 0.05, "fall": 1, "rise": 1, **quiet_health(
            disk={"paths": [str(tmp_path)], "warning_free_percent": 0, "critical_free_percent": 0})})
        self.cfg_path = write_config(tmp_path, {"status": status, "health": health, **config})
        self.ctx = make_context(self.cfg_path)
        self.checks = HealthChecks(self.ctx)
        self.extra_routes: list = []

    async def __aenter__(self):
        self.ctx.registry["http_routes"] = self.extra_routes
        self.server = StatusServer(self.ctx)
        self.tasks = [asyncio.create_task(self.checks.run()), asyncio.create_task(self.server.run())]
        self.http = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{self.port}")
        await wait_for_async(lambda: self.server.bound is not None, timeout=10)
        await wait_for_async(lambda: self.checks.trackers["disk"].last is not None, timeout=10)
        return self

    async def __aexit__(self, *exc):
        await self.http.close()
        self.ctx.stopping.set()
        await asyncio.gather(*self.tasks)
        self.ctx.emitter.store.close()

    async def get(self, path, **kw):
        async with self.http.get(path, **kw) as resp:
            return resp.status, await resp.text()
