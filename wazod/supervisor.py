"""``wazod run``: the long-running supervisor of one node.

One asyncio process; its parts (scheduler, HA monitor, bus, health, status
server...) run as tasks of one task group. A part that crashes is logged and
restarted with backoff: one broken part never takes the others down.

Signals: SIGTERM (or SIGINT) stops cleanly within ``node.stop_timeout``,
cancelling running jobs so they unwind to a safe point; SIGHUP reloads the
configuration, keeping the running one when the new one is invalid. A change
of Wazo's ha.conf (rewritten by the web UI) triggers the same reload.

systemd: READY=1 once every part is started, STATUS= lines, WATCHDOG=1 at
half of WATCHDOG_USEC only while the main loop keeps ticking on time, and
STOPPING=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from wazod import __version__
from wazod.components import build_components
from wazod.config import LoadedConfig, load_config
from wazod.context import Context
from wazod.errors import ConfigError
from wazod.events import open_emitter
from wazod.locks import OperationLock
from wazod.logsetup import configure_logging, get_logger
from wazod.sdnotify import Notifier
from wazod.state import StateStore
from wazod.statusboard import StatusBoard

log = get_logger("supervisor")

TICK = 0.5  # seconds between main-loop ticks
RELOAD_TIMEOUT = 10.0  # seconds a reload may spend reading and validating the files
STALL_LIMIT = 5.0  # a tick later than this means the loop is stalled: no watchdog ping


class Supervisor:
    def __init__(self, loaded: LoadedConfig, notifier: Notifier | None = None):
        self.loaded = loaded
        self.notifier = notifier or Notifier()
        self.ctx: Context | None = None
        self.components: list = []
        self._stop_requested = asyncio.Event()
        self._reload_requested = asyncio.Event()

    # -- signals ---------------------------------------------------------
    def request_stop(self) -> None:
        self._stop_requested.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    # -- lifecycle -------------------------------------------------------
    async def run(self) -> int:
        config = self.loaded.config
        daemon_lock = OperationLock(config.node.state_dir, "daemon")
        daemon_lock.acquire()  # LockHeld -> exit 3: one daemon per state_dir
        state = StateStore(config.node.state_dir)
        emitter = open_emitter(config)
        status = StatusBoard(state, config.node_name, config.role)
        status.update(daemon="running", pid=os.getpid(), version=__version__)
        self.ctx = ctx = Context(self.loaded, emitter, state, status)
        ctx.last_tick = time.monotonic()
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            loop.add_signal_handler(sig, handler)
        try:
            self.components = build_components(ctx)
            tasks = [asyncio.create_task(self._supervise(c), name=f"part:{c.name}") for c in self.components]
            ctx.emit("daemon_started", {"version": __version__, "role": config.role,
                                        "parts": [c.name for c in self.components]})
            self.notifier.ready(f"running as {config.role}")
            log.info("daemon started", role=config.role, node=config.node_name,
                     parts=[c.name for c in self.components])
            await self._main_loop()
            # stopping
            self.notifier.stopping()
            self.notifier.status("stopping")
            ctx.emit("daemon_stopping", {})
            ctx.stopping.set()
            done, pending = await asyncio.wait(tasks, timeout=config.node.stop_timeout) if tasks else (set(), set())
            for t in pending:
                log.warning("part did not stop in time, cancelled", part=t.get_name())
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
            log.info("daemon stopped")
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            status.update(daemon="not running", pid=None)
            emitter.store.close()
            daemon_lock.release()

    async def _supervise(self, component) -> None:
        """Run one part; restart it with backoff if it crashes, until stopping."""
        backoff = 1.0
        while not self.ctx.stopping.is_set():
            started = time.monotonic()
            try:
                await component.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("part crashed, restarting", part=component.name, backoff=backoff)
            if time.monotonic() - started > 60:
                backoff = 1.0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ctx.stopping.wait(), backoff)
            backoff = min(backoff * 2, 60.0)

    async def _main_loop(self) -> None:
        ctx = self.ctx
        interval = self.notifier.watchdog_interval()
        last_ping = 0.0
        while not self._stop_requested.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), TICK)
            now = time.monotonic()
            lag = now - ctx.last_tick - TICK
            ctx.last_tick = now
            if interval and lag < STALL_LIMIT and now - last_ping >= interval:
                self.notifier.watchdog()
                last_ping = now
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                await self.reload("SIGHUP")
            elif self._ha_conf_changed():
                await self.reload("ha.conf changed")

    def _ha_conf_changed(self) -> bool:
        loaded = self.ctx.loaded
        if not loaded.ha_conf_used:
            return False
        try:
            mtime = os.stat(loaded.config.ha.ha_conf).st_mtime
        except OSError:
            mtime = None
        return mtime != loaded.ha_conf_mtime

    async def reload(self, reason: str) -> bool:
        ctx = self.ctx
        self.notifier.reloading()
        old = ctx.loaded
        try:
            # off the event loop and bounded: a slow or hostile file must not freeze HA
            new = await asyncio.wait_for(asyncio.to_thread(load_config, old.path, must_exist=old.must_exist),
                                         RELOAD_TIMEOUT)
        except Exception as e:  # whatever the files hold, the running daemon keeps its configuration
            if isinstance(e, TimeoutError):
                e = ConfigError(f"reading the configuration took more than {RELOAD_TIMEOUT:g} s: abandoned")
            elif not isinstance(e, ConfigError):
                e = ConfigError(f"reading the configuration failed: {type(e).__name__}: {str(e)[:200]}")
            log.error("configuration reload failed, keeping the running one", reason=reason, error=str(e))
            ctx.emit("config_reloaded", {"ok": False, "reason": reason, "error": str(e)})
            if old.ha_conf_used:  # do not retry the same broken ha.conf every tick
                with contextlib.suppress(OSError):
                    old.ha_conf_mtime = os.stat(old.config.ha.ha_conf).st_mtime
            self.notifier.ready(f"running as {old.config.role} (reload failed)")
            return False
        old_dump = old.config.model_dump()
        new_dump = new.config.model_dump()
        changed = sorted(k for k in new_dump if new_dump[k] != old_dump.get(k))
        ctx.loaded = new
        ctx.status.update(role=new.config.role)
        try:
            configure_logging(new.config.logging.level, file=new.config.log_file)
        except OSError as e:  # nothing changed: the previous file (or none) stays
            log.error("log file cannot be opened, logging unchanged", file=new.config.log_file, error=e.strerror)
        for component in self.components:
            hook = getattr(component, "reload", None)
            if hook is not None:
                try:
                    await hook()
                except Exception:
                    log.exception("part failed to apply the new configuration", part=component.name)
        ctx.emit("config_reloaded", {"ok": True, "reason": reason, "changed": changed, "role": new.config.role})
        self.notifier.ready(f"running as {new.config.role}")
        log.info("configuration reloaded", reason=reason, changed=changed)
        return True


def run_daemon(loaded: LoadedConfig) -> int:
    path = loaded.config.log_file
    try:
        configure_logging(loaded.config.logging.level, file=path)
    except OSError as e:
        raise ConfigError(f"logging.file: {path}: cannot be opened: {e.strerror}") from None
    return asyncio.run(Supervisor(loaded).run())
