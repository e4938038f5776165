"""The endpoint's own read-only routes: GET /health, /liveness, /status, /metrics.

- ``/health``: ``{"status": "ok"|"degraded"|"critical", "checks": {...}}``, 200,
  or 503 when a check is critical. The other node's HA probe reads it.
- ``/liveness``: 503 once the supervisor's main loop has not ticked for
  ``status.liveness_limit`` seconds (a stuck reload, a blocked loop).
- ``/status``: the document of ``wazod status --json``.
- ``/metrics``: Prometheus text format (``wazod.health.metrics``).

Other parts add theirs through ``ctx.registry["http_routes"]`` (see
``wazod.endpoint.server``); they all pass the same authentication and limits.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from wazod.endpoint.auth import ANONYMOUS
from wazod.health.instruments import HaTransitions
from wazod.health.levels import CRITICAL, OVERALL
from wazod.status_view import collect_status


class Routes:
    def __init__(self, ctx):
        self.ctx = ctx
        self.transitions = HaTransitions(ctx.status)  # counted from the start, exposed at the first scrape
        self._collector = None

    @property
    def collector(self):
        """The /metrics collector, built (with prometheus_client) when first scraped."""
        if self._collector is None:
            from wazod.health.metrics import DaemonCollector

            self._collector = DaemonCollector(self.ctx, self.transitions)
        return self._collector

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/health", self.health)
        router.add_get("/liveness", self.liveness)
        router.add_get("/status", self.status)
        router.add_get("/metrics", self.metrics)

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
        doc = await asyncio.to_thread(collect_status, self.ctx.config)
        doc["daemon"] = "running"  # this answer comes from the daemon itself
        return web.json_response(doc, dumps=_dumps)

    async def metrics(self, request: web.Request) -> web.Response:
        from wazod.health.metrics import CONTENT_TYPE, render

        body = await asyncio.to_thread(render, self.collector, self.collector.capture())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _dumps(obj) -> str:
    return json.dumps(obj, default=str)
