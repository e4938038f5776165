"""Continuous file sync: the master watches ``sync.paths`` and copies what changed within seconds.

Wazo's rsync ran once an hour, so a failover lost every voicemail greeting,
sound or dialplan file changed since. Here the daemon of the master watches
the synced paths with inotify (``asyncinotify``: maintained, pure Python over
the kernel's inotify, asyncio-native; subdirectories created or moved in are
watched as they appear), gathers the changes until ``sync.batch_delay``
seconds pass without a new one (at most ``BATCH_FACTOR`` times that, so a
file written continuously still goes), and copies only the directories that
changed (``wazod.sync.run_changed``: ``rsync -aR --delete-after`` of each,
so creations, changes, renames and deletions end exactly as the hourly full
rsync leaves them). The hourly full rsync stays as the safety net (changes
inotify cannot see: a lost watch, an overflowing queue triggers a full run
at once, paths appearing later are picked up every ``RESCAN`` seconds).

Events and lock as for continuous replication (``wazod.replication.continuous``):
a copy takes the ``sync`` lock and emits ``sync_completed`` with ``lag_s``
(from the first change seen to the end of the copy) and ``trigger:
continuous``; nothing is emitted while nothing changes; failures are retried
(the changed directories are kept) and reported after a grace period;
maintenance holds the copies (the changes wait); SIGTERM stops a copy in
flight (rsync replaces each file whole: the slave keeps old or new files).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from wazod.continuous import FailureReport
from wazod.errors import LockHeld
from wazod.jobs import run_job
from wazod.logsetup import get_logger
from wazod.scheduler import held_in_maintenance

log = get_logger("sync")

BATCH_FACTOR = 5  # a batch closes at most this many batch_delays after its first change
RESCAN = 60.0  # seconds between two looks for synced paths that appeared (a new tenant's sounds)
MAX_PENDING = 2000  # more changed directories than this: one full rsync instead
RETRY = 5.0  # first wait before copying again after a failure or a held lock

def _inotify():
    """(Mask, RecursiveInotify, watch mask), imported when a master starts watching (a slave never loads it)."""
    from asyncinotify import Mask, RecursiveInotify

    mask = (Mask.CLOSE_WRITE | Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.ATTRIB
            | Mask.DELETE_SELF | Mask.MOVE_SELF)
    return Mask, RecursiveInotify, mask


def synced_roots(config) -> list[Path]:
    """The synced paths that exist now, globs expanded, as absolute paths on this node."""
    from wazod.sync.rsync import expand

    sc = config.sync
    return [Path(arg.replace("/./", "/", 1)) for arg in expand(sc.paths, sc.local_root, sc.glob_exclude).args]


def directory_to_copy(path: Path, roots: list[Path]) -> Path | None:
    """What to copy again when ``path`` changed: its directory (the root itself for a root), None if outside."""
    for root in roots:
        if path == root:
            return root
        if root in path.parents:
            return path.parent
    return None


def outermost(paths: set[Path]) -> list[Path]:
    """``paths`` without those inside another one of them (copied recursively anyway)."""
    return sorted(p for p in paths if not any(a in paths for a in p.parents))


def existing_ancestor(path: Path, roots: list[Path]) -> Path | None:
    """``path``, or its nearest existing ancestor still inside a synced root (a whole tree was deleted)."""
    for root in roots:
        if path == root or root in path.parents:
            while path != root and not os.path.lexists(path):
                path = path.parent
            return path if os.path.lexists(path) else None
    return None


class ContinuousSync:
    """The daemon part: inotify on the synced paths, batched copies of what changed (master only)."""

    name = "sync-continuous"

    def __init__(self, ctx):
        self.ctx = ctx
        self.report = FailureReport()
        self.pending: set[Path] = set()
        self.first_change: float | None = None
        self.full_needed = False
        self.copies = 0
        self.last = None
        self._changed = asyncio.Event()
        self._restart = asyncio.Event()
        self._roots: list[Path] = []
        self._warned: str | None = None
        self.retry = RETRY
        ctx.registry["sync_continuous"] = self

    def enabled(self) -> str | None:
        """Why the watch does not run now (None: it runs)."""
        from wazod.sync.ssh import preflight

        config = self.ctx.config
        if config.role != "master" or not config.sync.continuous:
            return "not a master with sync.continuous"
        try:
            _inotify()
        except ImportError:
            return "asyncinotify is not installed"
        return preflight(config)

    async def reload(self) -> None:
        self._restart.set()

    # --- waiting ------------------------------------------------------------------------
    async def _wait(self, event: asyncio.Event | None, timeout: float) -> bool:
        """Wait for ``event`` (or stopping/restart) up to ``timeout``; True when ``event`` was set."""
        waits = [self.ctx.stopping, self._restart] + ([event] if event is not None else [])
        tasks = [asyncio.create_task(e.wait()) for e in waits]
        try:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
        return event is not None and event.is_set()

    def _interrupted(self) -> bool:
        return self.ctx.stopping.is_set() or self._restart.is_set()

    # --- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        while not self.ctx.stopping.is_set():
            self._restart.clear()
            why = self.enabled()
            if why:
                if why != self._warned and self.ctx.config.role == "master" and self.ctx.config.sync.continuous:
                    log.warning("continuous sync not running", reason=why)
                self._warned = why
                await self._wait(None, RESCAN)
                continue
            self._warned = None
            await self._session()

    async def _session(self) -> None:
        _mask, recursive_inotify, _ = _inotify()
        with recursive_inotify() as inotify:
            self._roots = []
            self._add_roots(inotify, starting=True)
            reader = asyncio.create_task(self._read(inotify), name="sync-watch")
            try:
                while not self._interrupted():
                    if not self.pending and not self.full_needed:
                        if not await self._wait(self._changed, RESCAN):
                            if not self._interrupted():
                                self._add_roots(inotify)
                            continue
                    await self._gather()
                    if self._interrupted():
                        break
                    await self._copy()
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    def _add_roots(self, inotify, starting: bool = False) -> None:
        """Watch every synced path not watched yet (all of them at the start of a session)."""
        for root in synced_roots(self.ctx.config):
            if root in self._roots:
                continue
            try:
                _m, _r, watch_mask = _inotify()
                if root.is_dir() and not root.is_symlink():
                    inotify.add_recursive_watch(root, watch_mask)
                else:
                    inotify.add_watch(root, watch_mask)
            except OSError as e:  # e.g. fs.inotify.max_user_watches reached: the hourly run covers it
                log.warning("cannot watch a synced path", path=str(root), error=str(e))
                continue
            if not starting:  # appeared while running: copy it now
                self._note(root)
            self._roots.append(root)

    async def _read(self, inotify) -> None:
        Mask = _inotify()[0]  # noqa: N806 - the library's name
        async for event in inotify:
            if Mask.Q_OVERFLOW in event.mask:
                log.warning("inotify queue overflow: a full sync runs")
                self.full_needed = True
            elif Mask.IGNORED in event.mask or event.path is None:
                continue
            else:
                directory = directory_to_copy(event.path, self._roots)
                if directory is None:
                    continue
                self._note(directory)
            self._changed.set()

    def _note(self, directory: Path) -> None:
        if self.first_change is None:
            self.first_change = time.time()
        self.pending.add(directory)
        if len(self.pending) > MAX_PENDING:
            self.full_needed = True
        self._changed.set()

    async def _gather(self) -> None:
        """Until ``batch_delay`` passes without a change, at most BATCH_FACTOR times that."""
        delay = self.ctx.config.sync.batch_delay
        deadline = time.monotonic() + delay * BATCH_FACTOR
        while not self._interrupted():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0 or not await self._wait(self._changed, min(delay, left)):
                return

    async def _copy(self) -> None:
        if held_in_maintenance(self.ctx, "sync"):
            await self._wait(None, self.retry)  # the changes wait for the end of maintenance
            return
        dirs = outermost({d for d in (existing_ancestor(p, self._roots) for p in self.pending) if d is not None})
        full, first = self.full_needed, self.first_change
        self.pending, self.full_needed, self.first_change = set(), False, None
        root = os.path.abspath(self.ctx.config.sync.local_root)
        rel = [os.path.relpath(d, root) for d in dirs]
        task = asyncio.create_task(self._run(rel, first, full), name="sync-copy")
        stop = asyncio.create_task(self.ctx.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        result = task.result() if task.done() and not task.cancelled() else None
        if result is None or result.status == "failed":
            # keep what is still to copy, wait, try again (the failure is reported after the grace)
            self.pending.update(dirs)
            self.full_needed = self.full_needed or full
            self.first_change = first if self.first_change is None else min(first or time.time(),
                                                                             self.first_change)
            if not self.ctx.stopping.is_set():
                await self._wait(None, self.report.delay(self.retry))

    async def _run(self, rel: list[str], first: float | None, full: bool):
        from wazod import sync

        async def entry(config, **_):
            if full:
                result = await sync.run(config)
                result.data["trigger"] = "continuous"
                if first is not None and result.ok:
                    result.data["lag_s"] = round(time.time() - first, 3)
                return result
            return await sync.run_changed(config, dirs=rel, first_change=first)

        try:
            result = await run_job("sync", self.ctx.config, self.ctx.emitter, entry=entry, lock_wait=RETRY,
                                   report=self.report)
        except LockHeld:
            return None
        self.last = result
        self.copies += result.status == "ok"
        return result


def component(ctx):
    """Built on every node (the role can change at run time); it watches only on a master."""
    return ContinuousSync(ctx)
