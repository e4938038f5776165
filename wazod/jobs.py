"""Job results and the one runner every caller goes through.

A job (replication, sync, backup, purge) is a module with one async entry
point ``run(config, **options) -> JobResult``. The scheduler, the CLI and the
demo all call it through ``run_job``, which takes the per-operation lock,
measures the run, persists the record (``<state_dir>/job-<name>.json``) and
turns the result into the contract's event. Jobs themselves never emit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from wazod.errors import WazodError, WrongRole
from wazod.events import EVENT_NAMES, Emitter, now_iso
from wazod.locks import OperationLock
from wazod.logsetup import get_logger
from wazod.state import StateStore

log = get_logger("jobs")

Status = Literal["ok", "failed", "skipped"]


@dataclass
class JobResult:
    job: str
    status: Status
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: str = field(default_factory=now_iso)
    duration: float = 0.0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobSpec:
    name: str
    entry: str  # "module:function"
    roles: tuple[str, ...] | None  # None: every role
    held_in_maintenance: bool = False
    # the parts a run may cover, chosen by the run's option ``what`` (``all``: every part); each
    # part's last result is kept apart, so a data-only run cannot hide a failed db part
    parts: tuple[str, ...] = ()
    # seconds a run waits for the lock before LockHeld: the continuous checks of replication and sync
    # hold it for milliseconds (a copy for seconds), which must not refuse a scheduled or manual run
    lock_wait: float = 0.0

    def parts_of(self, options: dict[str, Any]) -> tuple[str, ...]:
        what = options.get("what") or "all"
        return self.parts if what == "all" else tuple(p for p in self.parts if p == what)

    def load(self) -> Callable[..., Awaitable[JobResult]]:
        module, func = self.entry.split(":")
        return getattr(importlib.import_module(module), func)


JOBS: dict[str, JobSpec] = {
    "replication": JobSpec("replication", "wazod.replication:run", ("master",), held_in_maintenance=True,
                           lock_wait=30.0),
    "sync": JobSpec("sync", "wazod.sync:run", ("master",), held_in_maintenance=True, lock_wait=30.0),
    "backup": JobSpec("backup", "wazod.backup:run", None, parts=("data", "db")),
    "purge": JobSpec("purge", "wazod.purge:run", None),
}


def event_for(result: JobResult) -> tuple[str, dict[str, Any]]:
    """The contract's event name and data for a job result."""
    suffix = {"ok": "completed", "failed": "failed", "skipped": "skipped"}[result.status]
    name = f"{result.job}_{suffix}"
    data = dict(result.data)
    data["duration"] = round(result.duration, 3)
    if result.error:
        data["error"] = result.error
    if name not in EVENT_NAMES:  # e.g. sync has no _skipped event
        name = f"{result.job}_completed"
        data["skipped"] = True
    return name, data


def check_role(spec: JobSpec, role: str) -> None:
    if spec.roles is not None and role not in spec.roles:
        raise WrongRole(f"{spec.name} runs only on a {' or '.join(spec.roles)} node; this node is {role}")


async def run_job(
    name: str,
    config,
    emitter: Emitter | None,
    *,
    entry: Callable[..., Awaitable[JobResult]] | None = None,
    lock: bool = True,
    record: bool = True,
    lock_wait: float | None = None,
    report: Callable[[JobResult], bool] | None = None,
    **options: Any,
) -> JobResult:
    """Run job ``name`` under its lock, persist its record and emit its event.

    Raises LockHeld when another run holds the lock (after waiting up to
    ``lock_wait`` seconds for it; None: the job's own ``JobSpec.lock_wait``). Any exception of the job becomes a
    ``failed`` result; cancellation (SIGTERM) is recorded as failed
    ("interrupted") and re-raised so the supervisor can finish stopping.
    ``report(result)`` returning False keeps a result out of the record and
    the event stream (continuous checks that found nothing to do).
    """
    spec = JOBS[name]
    entry = entry or spec.load()
    state = StateStore(config.node.state_dir)
    op_lock = OperationLock(config.node.state_dir, name)
    if lock_wait is None:
        lock_wait = spec.lock_wait
    if lock:
        if lock_wait > 0:
            await op_lock.acquire_async(lock_wait)
        else:
            op_lock.acquire()
    started = now_iso()
    t0 = time.monotonic()
    cancelled = False
    try:
        try:
            result = await entry(config, **options)
        except asyncio.CancelledError:
            cancelled = True
            result = JobResult(name, "failed", error="interrupted (daemon stopping)")
        except WazodError as e:  # an expected failure, explained (a database that cannot be reached...):
            # the _failed event's line says it; no traceback, which would read as a crash
            result = JobResult(name, "failed", error=str(e))
        except Exception as e:  # reported, never crashes the caller
            log.exception("job crashed", job=name)
            result = JobResult(name, "failed", error=f"{type(e).__name__}: {e}")
        result.job = name
        result.started_at = started
        result.duration = time.monotonic() - t0
        result.dry_run = bool(options.get("dry_run"))
        if record and not result.dry_run and (report is None or report(result)):
            previous = state.read(f"job-{name}", {}) or {}
            parts = dict(previous.get("parts") or {})
            for part in spec.parts_of(options):
                parts[part] = {"last_result": result.status, "last_run": started, "error": result.error,
                               "last_success": started if result.status == "ok"
                               else (parts.get(part) or {}).get("last_success")}
            state.write(
                f"job-{name}",
                {
                    "last_result": result.status,
                    "last_run": started,
                    "duration": round(result.duration, 3),
                    "error": result.error,
                    "data": result.data,
                    **({"parts": parts} if spec.parts else {}),
                    **({"last_success": started} if result.status == "ok" else
                       {"last_success": previous.get("last_success")}),
                },
            )
            if emitter is not None:
                ev_name, ev_data = event_for(result)
                emitter.emit(ev_name, ev_data)
    finally:
        if lock:
            op_lock.release()
    if cancelled:
        raise asyncio.CancelledError()
    return result


def last_run(config, name: str) -> dt.datetime | None:
    rec = StateStore(config.node.state_dir).read(f"job-{name}", {}) or {}
    value = rec.get("last_run")
    return dt.datetime.fromisoformat(value) if value else None
