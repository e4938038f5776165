"""Continuous replication: the master daemon checks for changes every few seconds and copies them at once.

Wazo replicated once an hour, so a failover lost up to an hour of
configuration. Here the daemon of the master runs the ordinary replication
job (same change test, same single slave transaction) every
``replication.check_interval`` seconds; the hourly schedule stays as the
safety net. What a check shares with the other runs, and why:

* **The lock.** Each check takes the ``replication`` lock for its duration,
  like a scheduled or a manual run; a check that finds the lock held is
  simply skipped (the run holding it does the copy). The scheduler and the
  CLI wait a little for the lock (a check holds it for milliseconds), so
  neither is refused because a check happened to be running.
* **Events.** A check that finds nothing to copy emits nothing and writes
  nothing (no job record, no event: every 5 s would flood the bus and wear
  the disk). A copy emits ``replication_completed`` with ``lag_s`` and
  ``trigger: continuous``. Failures are retried with a growing interval (up to
  a minute); ``replication_failed`` is emitted once a failure has lasted
  ``wazod.continuous.FAILURE_GRACE`` seconds (a slave restarting is not an alarm), again only
  when the error changes, and the first success after it is recorded and
  emitted (``replication_skipped`` or ``_completed``) as the all-clear.
* **Maintenance** holds the checks as it holds the scheduled runs.
* **Stopping.** On SIGTERM the check in flight is cancelled: the slave's
  transaction is rolled back and the slave keeps its last consistent state
  (whole-transaction rule; a master dying mid-copy has the same effect).
"""

from __future__ import annotations

import asyncio
import contextlib

from wazod.continuous import FailureReport
from wazod.errors import LockHeld
from wazod.jobs import JobResult, run_job
from wazod.logsetup import get_logger
from wazod.scheduler import held_in_maintenance

log = get_logger("replication")

class ContinuousReplication:
    """The daemon part: one change check every ``replication.check_interval`` seconds on the master."""

    name = "replication-continuous"

    def __init__(self, ctx):
        self.ctx = ctx
        self.report = FailureReport()
        self.checks = 0  # checks run (found nothing, copied or failed)
        self.copies = 0
        self.held = 0  # checks not run: maintenance
        self.busy = 0  # checks not run: another run held the lock
        self.last: JobResult | None = None
        ctx.registry["replication_continuous"] = self

    def enabled(self) -> bool:
        config = self.ctx.config
        return config.role == "master" and config.replication.continuous

    async def _entry(self, config, **options) -> JobResult:
        from wazod.replication import run

        result = await run(config, cheap_check=True, **options)
        result.data["trigger"] = "continuous"
        return result

    async def check_once(self) -> JobResult | None:
        """One check (and copy when something changed); None when held by maintenance or the lock."""
        if held_in_maintenance(self.ctx, "replication"):
            self.held += 1
            return None
        try:
            result = await run_job("replication", self.ctx.config, self.ctx.emitter, entry=self._entry,
                                   lock_wait=0, report=self.report)
        except LockHeld:
            self.busy += 1
            return None  # a scheduled or manual run is copying right now
        self.checks += 1
        self.copies += result.status == "ok"
        self.last = result
        if result.status == "ok":
            log.info("continuous copy", tables=result.data.get("tables"), lag_s=result.data.get("lag_s"))
        elif result.status == "failed":
            log.debug("continuous check failed", error=result.error, failures=self.report.failures)
        return result

    async def reload(self) -> None:
        from wazod.replication import close_kept

        await close_kept()  # the DSNs may have changed

    async def run(self) -> None:
        from wazod.replication import close_kept

        try:
            await self._loop()
        finally:
            await close_kept()

    async def _loop(self) -> None:
        stopping = self.ctx.stopping
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.report.delay(self.ctx.config.replication.check_interval))
            if stopping.is_set():
                continue
            if not self.enabled():
                from wazod.replication import close_kept

                await close_kept()
                continue
            check = asyncio.create_task(self.check_once(), name="replication-check")
            stop = asyncio.create_task(stopping.wait())
            try:
                await asyncio.wait({check, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not check.done():  # SIGTERM mid-copy: roll the slave's transaction back now
                    check.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await check


def component(ctx):
    """Built on every node: the role (and the key) can change at run time; it checks only on a master."""
    return ContinuousReplication(ctx)
