"""The status endpoint: GET /health, /liveness, /status, /metrics on ``status.listen``.

- ``/health``: ``{"status": "ok"|"degraded"|"critical", "checks": {...}}``, 200,
  or 503 when a check is critical. The other node's HA probe reads it.
- ``/liveness``: 503 once the supervisor's main loop has not ticked for
  ``status.liveness_limit`` seconds (a stuck reload, a blocked loop).
- ``/status``: the document of ``wazod status --json``.
- ``/metrics``: Prometheus text format (``wazod.health.metrics``).
- plus the routes other parts put in ``ctx.registry["http_routes"]`` as
  ``(method, path, handler)`` before the daemon starts (maintenance's POSTs).

Beyond loopback (``status.auth: auto``) every request needs a valid
``X-Auth-Token`` (``wazod.health.tokens``); without one the answer is a bare
401 whatever the path, so nothing is revealed, not even which paths exist.
Paths in ``status.anonymous_paths`` are served without a token: /health then
shows only the levels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from aiohttp import web

from wazod.health.levels import CRITICAL, OVERALL
from wazod.health.listen import is_loopback, parse_listen
from wazod.health.metrics import CONTENT_TYPE, DaemonCollector, render
from wazod.health.tokens import TokenChecker
from wazod.logsetup import get_logger

log = get_logger("status-http")

ANONYMOUS = web.RequestKey("wazod.anonymous", bool)


def auth_required(section) -> bool:
    if section.auth == "always":
        return True
    if section.auth == "never":
        return False
    host, _ = parse_listen(section.listen)
    return not is_loopback(host)


class StatusServer:
    name = "status-http"

    def __init__(self, ctx):
        self.ctx = ctx
        self.collector = DaemonCollector(ctx)
        self.tokens = TokenChecker()
        self.runner: web.AppRunner | None = None
        self.listen: str | None = None
        self.bound: tuple[str, int] | None = None
        self._restart = asyncio.Event()
        ctx.registry["status_http"] = self

    # -- handlers ---------------------------------------------------------------
    def health_document(self, anonymous: bool = False) -> dict:
        checks = self.ctx.registry.get("health")
        if checks is None:
            return {"status": OVERALL["ok"], "checks": {}}
        detail = checks.detail()
        doc = {"status": checks.overall(), "checks": detail}
        if anonymous:
            doc["checks"] = {name: {"level": d["level"]} for name, d in detail.items()}
        else:
            doc.update(node=self.ctx.config.node_name, role=self.ctx.config.role,
                       failing=sorted(n for n, d in detail.items() if d["level"] not in ("ok", "unknown")))
        return doc

    async def health(self, request: web.Request) -> web.Response:
        doc = self.health_document(anonymous=request.get(ANONYMOUS, False))
        return web.json_response(doc, status=503 if doc["status"] == OVERALL[CRITICAL] else 200)

    async def liveness(self, request: web.Request) -> web.Response:
        lag = time.monotonic() - self.ctx.last_tick
        limit = self.ctx.config.status.liveness_limit
        ok = lag < limit
        return web.json_response({"status": "ok" if ok else "stalled", "lag": round(lag, 3), "limit": limit},
                                 status=200 if ok else 503)

    async def status(self, request: web.Request) -> web.Response:
        from wazod.status_view import collect_status

        doc = await asyncio.to_thread(collect_status, self.ctx.config)
        doc["daemon"] = "running"  # this answer comes from the daemon itself
        return web.json_response(doc, dumps=_dumps)

    async def metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(render, self.collector, self.collector.capture())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    # -- authentication -----------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler):
        section = self.ctx.config.status
        if not auth_required(section):
            return await handler(request)
        if request.method in ("GET", "HEAD") and request.path in section.anonymous_paths \
                and not request.headers.get("X-Auth-Token"):
            request[ANONYMOUS] = True
            return await handler(request)
        if await self.tokens.valid(request.headers.get("X-Auth-Token"), section):
            return await handler(request)
        return web.json_response({"error": "unauthorized"}, status=401)

    # -- server -----------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/health", self.health)
        app.router.add_get("/liveness", self.liveness)
        app.router.add_get("/status", self.status)
        app.router.add_get("/metrics", self.metrics)
        for method, path, handler in self.ctx.registry.get("http_routes", []):
            app.router.add_route(method, path, handler)
        return app

    async def start(self) -> None:
        section = self.ctx.config.status
        host, port = parse_listen(section.listen)
        if section.auth == "never" and not is_loopback(host):
            log.warning("status endpoint open to the network without authentication", listen=section.listen)
        if section.token_file:
            try:
                if os.stat(section.token_file).st_mode & 0o077:
                    log.warning("status token file is readable by other users: chmod 600 it",
                                file=section.token_file)
            except OSError as e:
                log.error("status token file cannot be read: no static token", file=section.token_file,
                          error=e.strerror)
        self.runner = web.AppRunner(self.build_app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            self.runner = None
            raise OSError(e.errno, f"status endpoint cannot listen on {section.listen}: {e.strerror}") from None
        self.listen = section.listen
        addresses = self.runner.addresses
        self.bound = (addresses[0][0], addresses[0][1]) if addresses else (host, port)
        log.info("status endpoint listening", listen=section.listen, auth=auth_required(section))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def reload(self) -> None:
        if self.ctx.config.status.listen != self.listen:
            self._restart.set()

    async def run(self) -> None:
        await asyncio.sleep(0)  # let every part's factory register its routes first
        try:
            await self.start()
            while not self.ctx.stopping.is_set():
                stop = asyncio.create_task(self.ctx.stopping.wait())
                restart = asyncio.create_task(self._restart.wait())
                await asyncio.wait({stop, restart}, return_when=asyncio.FIRST_COMPLETED)
                for t in (stop, restart):
                    t.cancel()
                if self._restart.is_set() and not self.ctx.stopping.is_set():
                    self._restart.clear()
                    log.info("status endpoint moves", old=self.listen, new=self.ctx.config.status.listen)
                    await self.stop()
                    await self.start()
        finally:
            with contextlib.suppress(Exception):
                await self.stop()
            await self.tokens.close()


def _dumps(obj) -> str:
    import json

    return json.dumps(obj, default=str)


def component(ctx) -> StatusServer:
    return StatusServer(ctx)
