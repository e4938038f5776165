"""The daemon's HTTP endpoint on ``status.listen``: one aiohttp server for every part.

Routes: the endpoint's own (``wazod.endpoint.routes``: /health, /liveness,
/status, /metrics) plus those other parts put in ``ctx.registry["http_routes"]``
as ``(method, path, async handler)`` before the server starts (maintenance's
GET and POST /maintenance, the arbiter's GET /arbiter). Every request passes,
in this order, the connection limits (``wazod.endpoint.limits``) and the
authentication (``wazod.endpoint.auth``: read token for reads when
``status.auth`` asks for it, the admin token for every change of state).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from aiohttp import web

from wazod.config.listen import is_loopback, parse_listen
from wazod.endpoint.auth import TokenChecker, auth_required, make_middleware
from wazod.endpoint.limits import BACKLOG, ConnectionLimits
from wazod.endpoint.routes import Routes
from wazod.logsetup import get_logger

log = get_logger("status-http")

MAX_BODY = 64 * 1024  # the largest body a route accepts (a maintenance request is a few hundred bytes)


class StatusServer:
    name = "status-http"

    def __init__(self, ctx):
        self.ctx = ctx
        self.routes = Routes(ctx)
        self.tokens = TokenChecker()
        self.limits: ConnectionLimits | None = None
        self.runner: web.AppRunner | None = None
        self.server: asyncio.Server | None = None
        self.listen: str | None = None
        self._started_with: tuple | None = None
        self.bound: tuple[str, int] | None = None
        self._restart = asyncio.Event()
        self._sweeper: asyncio.Task | None = None
        ctx.registry["status_http"] = self

    def build_app(self, limits: ConnectionLimits) -> web.Application:
        app = web.Application(middlewares=[limits.middleware, make_middleware(self.ctx, self.tokens)],
                              client_max_size=MAX_BODY)
        self.routes.add_to(app.router)
        for method, path, handler in self.ctx.registry.get("http_routes", []):
            app.router.add_route(method, path, handler)
        return app

    def _check_token_files(self, section) -> None:
        if section.token_file:
            try:
                if os.stat(section.token_file).st_mode & 0o077:
                    log.warning("status token file is readable by other users: chmod 600 it",
                                file=section.token_file)
            except OSError as e:
                log.error("status token file cannot be read: no static token", file=section.token_file,
                          error=e.strerror)
        if not section.admin_token_file:
            log.info("no status.admin_token_file: no change of state over HTTP (the peer cannot switch "
                     "maintenance here)")
        elif self.tokens.admin_token(section) is None:
            log.error("no usable admin token: changes of state over HTTP are refused",
                      file=section.admin_token_file)

    async def start(self) -> None:
        section = self.ctx.config.status
        host, port = parse_listen(section.listen)
        if section.auth == "never" and not is_loopback(host):
            log.warning("status endpoint open to the network without authentication for reads",
                        listen=section.listen)
        self._check_token_files(section)
        self.limits = ConnectionLimits(section.max_connections, section.header_timeout)
        # aiohttp's own idle timer backs ours up (it also closes a connection that never sends a request)
        self.runner = web.AppRunner(self.build_app(self.limits), access_log=None,
                                    keepalive_timeout=section.header_timeout)
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(self.limits.protocol_factory(self.runner.server), host, port,
                                                   reuse_address=True, backlog=BACKLOG)
        except OSError as e:
            await self.runner.cleanup()
            self.runner = None
            raise OSError(e.errno, f"status endpoint cannot listen on {section.listen}: {e.strerror}") from None
        self.listen = section.listen
        self._started_with = _restart_keys(section)
        sockname = self.server.sockets[0].getsockname() if self.server.sockets else (host, port)
        self.bound = (sockname[0], sockname[1])
        self._sweeper = asyncio.create_task(self.limits.run_sweeper(), name="status-http-sweeper")
        log.info("status endpoint listening", listen=section.listen, auth=auth_required(section),
                 max_connections=self.limits.cap, header_timeout=section.header_timeout)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self.server is not None:
            self.server.close()
            if self.limits is not None:
                self.limits.close_all()
            await self.server.wait_closed()
            self.server = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def reload(self) -> None:
        if _restart_keys(self.ctx.config.status) != self._started_with:
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


def _restart_keys(section) -> tuple:
    """What the listener is built with: a change of one of these on reload restarts it."""
    return section.listen, section.max_connections, section.header_timeout


def component(ctx) -> StatusServer:
    return StatusServer(ctx)
