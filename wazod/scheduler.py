"""Scheduling of the periodic jobs with APScheduler 3.x.

- five-field crontab expressions from the config, optional jitter;
- one run of a job at a time (``max_instances=1`` inside the daemon, the
  per-operation lock file against the CLI: a run that finds the lock held is
  skipped and logged);
- catch-up: a job whose scheduled time passed while the daemon was down (its
  next fire time after its last recorded run is already past) runs once soon
  after start, not once per missed period;
- jobs that do not apply to the node's role are not scheduled; jobs held in
  maintenance mode are skipped while it is on;
- a node with no backup at all (a fresh install) takes one soon after start.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from wazod.errors import ConfigError, LockHeld
from wazod.jobs import JOBS, last_run, run_job
from wazod.logsetup import get_logger

log = get_logger("scheduler")

CATCH_UP_DELAY = 5.0  # seconds after start before a missed job runs


def make_trigger(expr: str, jitter: int = 0) -> CronTrigger:
    try:
        trigger = CronTrigger.from_crontab(expr, timezone=_local_tz())
    except ValueError as e:
        raise ConfigError(f"invalid crontab schedule {expr!r}: {e}") from None
    if jitter:
        trigger.jitter = jitter
    return trigger


def _local_tz():
    return dt.datetime.now().astimezone().tzinfo


def missed_since(trigger: CronTrigger, last: dt.datetime | None, now: dt.datetime) -> bool:
    """True when a fire time fell between the last recorded run and now."""
    if last is None:
        return False
    nxt = trigger.get_next_fire_time(None, last + dt.timedelta(seconds=1))
    return nxt is not None and nxt <= now


def maintenance_active(ctx) -> bool:
    check = ctx.registry.get("maintenance_active")
    return bool(check and check())


def held_in_maintenance(ctx, name: str) -> bool:
    """Whether maintenance holds job ``name`` now (replication and sync always; backup/purge if configured)."""
    holds = ctx.registry.get("maintenance_holds")
    if holds is not None:
        return bool(holds(name))
    return JOBS[name].held_in_maintenance and maintenance_active(ctx)


class JobScheduler:
    """The scheduler component of the supervisor."""

    name = "scheduler"

    def __init__(self, ctx):
        self.ctx = ctx
        self.scheduler: AsyncIOScheduler | None = None
        self.running: dict[str, asyncio.Task] = {}
        ctx.registry["scheduler"] = self

    def applicable_jobs(self) -> list[str]:
        role = self.ctx.config.role
        return [name for name, spec in JOBS.items() if spec.roles is None or role in spec.roles]

    def next_runs(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        if self.scheduler is None:
            return out
        for job in self.scheduler.get_jobs():
            nxt = getattr(job, "next_run_time", None)  # absent until the scheduler has started
            out[job.id] = nxt.isoformat() if nxt else None
        return out

    def _configure(self) -> None:
        assert self.scheduler is not None
        self.scheduler.remove_all_jobs()
        cfg = self.ctx.config
        for name in self.applicable_jobs():
            section = getattr(cfg, name)
            trigger = make_trigger(section.schedule, getattr(section, "jitter", 0))
            self.scheduler.add_job(
                self._fire, trigger, args=[name], id=name, name=name,
                max_instances=1, coalesce=True, misfire_grace_time=300, replace_existing=True,
            )
        self._publish()

    def _publish(self) -> None:
        self.ctx.status.update(next_runs=self.next_runs())

    async def _fire(self, name: str) -> None:
        if name in self.running and not self.running[name].done():
            log.info("job still running, this run is skipped", job=name)
            return
        if held_in_maintenance(self.ctx, name):
            log.info("maintenance mode: scheduled run held", job=name)
            return
        task = asyncio.current_task()
        self.running[name] = task
        try:
            result = await run_job(name, self.ctx.config, self.ctx.emitter)
            log.info("job finished", job=name, status=result.status, duration=round(result.duration, 3))
        except LockHeld as e:
            log.warning("job skipped: lock held", job=name, reason=str(e))
        finally:
            self.running.pop(name, None)
            self._publish()

    def catch_up(self) -> list[str]:
        """Jobs whose scheduled time passed while the daemon was down."""
        now = dt.datetime.now().astimezone()
        due = []
        for name in self.applicable_jobs():
            section = getattr(self.ctx.config, name)
            if missed_since(make_trigger(section.schedule), last_run(self.ctx.config, name), now):
                due.append(name)
        return due

    def start_extra(self, name: str, delay: float = 0.0) -> None:
        """Run ``name`` once, ``delay`` seconds from now (catch-up, first backup...)."""
        assert self.scheduler is not None
        when = dt.datetime.now().astimezone() + dt.timedelta(seconds=delay)
        self.scheduler.add_job(self._fire, "date", run_date=when, args=[name], id=f"{name}-once",
                               replace_existing=True, misfire_grace_time=None)

    def _needs_initial_backup(self) -> bool:
        try:
            from wazod.backup import needs_initial_backup
        except ImportError:
            return False
        try:
            return bool(needs_initial_backup(self.ctx.config))
        except Exception:
            log.exception("could not tell whether a backup exists")
            return False

    async def reload(self) -> None:
        if self.scheduler is not None:
            self._configure()

    async def run(self) -> None:
        self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self._configure()
        self.scheduler.start()
        due = self.catch_up()
        for name in due:
            log.info("missed while down: runs once soon", job=name)
            self.start_extra(name, CATCH_UP_DELAY)
        if "backup" in self.applicable_jobs() and "backup" not in due and self._needs_initial_backup():
            # Wazo's logrotate-based backup made none on a fresh install: take the first one now
            log.info("no backup exists yet: the first one runs soon", job="backup")
            self.start_extra("backup", CATCH_UP_DELAY)
        try:
            await self.ctx.stopping.wait()
        finally:
            self.scheduler.shutdown(wait=False)
            tasks = [t for t in self.running.values() if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
