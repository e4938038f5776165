"""Starting and stopping the telephony services of a node, behind one interface, three backends.

* ``wazo``: the exact sequences of Wazo's ``xivo-manage-slave-services``
  (apply the replicated config, DHCP, pjsip invalidation, ``wazo-service``,
  agents relogged), start skipped when ``wazo-service status all`` says
  everything runs, as Wazo does;
* ``systemd``: ``systemctl start`` of each unit in order, stop in reverse;
* ``command``: argv lists from the configuration (the tests and the demo
  drive real processes with it).

Every step is logged with its duration and exit code, retried with
exponential backoff when it fails, and bounded by ``services.step_timeout``;
a cancelled action (SIGTERM) kills the running step's process group.
The berofos switch is driven at Wazo's point of the start sequence through a
hook the caller passes (the ``berofos`` marker step).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from wazod import proc
from wazod.locks import OperationLock
from wazod.logsetup import get_logger

log = get_logger("ha.services")

HOOK = "berofos"  # name of the marker step where the caller's hook runs


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...] | None  # None: the caller's hook
    required: bool = True  # an optional step that fails is logged and the sequence goes on


@dataclass
class StepReport:
    step: str
    ok: bool
    attempts: int
    duration: float
    returncode: int | None = None
    error: str | None = None
    skipped: bool = False
    note: str | None = None  # what the step did, when "ok" alone would mislead ("no berofos configured")


def hook_step(name: str, result: Any, duration: float) -> StepReport:
    """The marker step's report from the berofos hook's result: a list of per-device dicts
    (``[]``: no berofos on this site) or a string saying why nothing was done."""
    if isinstance(result, list):
        if not result:
            return StepReport(name, True, 1, duration, note="no berofos configured")
        failed = [d for d in result if not d.get("ok")]
        note = f"{len(result) - len(failed)} of {len(result)} device(s) switched"
        return StepReport(name, not failed, 1, duration, error="; ".join(str(d.get("error")) for d in failed) or None,
                          note=note)
    return StepReport(name, True, 1, duration, note=str(result) if result is not None else None)


@dataclass
class ServicesReport:
    action: str  # start | stop
    backend: str
    ok: bool = True
    skipped: bool = False  # start skipped: everything already ran
    failed_step: str | None = None
    error: str | None = None
    duration: float = 0.0
    first_step_at: float | None = None  # monotonic time the first service command began
    steps: list[StepReport] = field(default_factory=list)
    hook_result: Any = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("first_step_at", None)
        d.pop("hook_result", None)
        d["duration"] = round(self.duration, 3)
        for s in d["steps"]:
            s["duration"] = round(s["duration"], 3)
        return d


def _s(name: str, *argv: str, required: bool = True) -> Step:
    return Step(name, tuple(argv), required)


# Wazo's xivo-manage-slave-services, step by step (see shared/reference/wazo-behaviour.md)
WAZO_START = (
    _s("xivo-create-config", "xivo-create-config"),
    _s("xivo-update-config", "xivo-update-config"),
    _s("dhcpd-update", "dhcpd-update", "-dr", required=False),
    _s("isc-dhcp-server start", "service", "isc-dhcp-server", "start", required=False),
    _s("isc-dhcp-server enable", "update-rc.d", "isc-dhcp-server", "defaults", required=False),
    Step(HOOK, None),
    _s("pjsip invalidate", "wazo-confgen", "asterisk/pjsip.conf", "--invalidate", required=False),
    _s("wazo-service enable", "wazo-service", "enable"),
    _s("wazo-service start", "wazo-service", "start"),
    _s("agents relog", "wazo-agentd-cli", "-c", "relog all --timeout 60", required=False),
)
WAZO_STOP = (
    _s("wazo-service stop", "wazo-service", "stop", "wazo"),
    _s("wazo-service disable", "wazo-service", "disable"),
    _s("isc-dhcp-server disable", "update-rc.d", "isc-dhcp-server", "remove", required=False),
    _s("isc-dhcp-server stop", "service", "isc-dhcp-server", "stop", required=False),
    _s("wazo-service start (non-telephony)", "wazo-service", "start"),
)
WAZO_STATUS = ("wazo-service", "status", "all")


def sequence(services, action: str) -> tuple[list[Step], tuple[str, ...] | None]:
    """The steps of ``action`` (start|stop) for the configured backend, and its status argv."""
    if action not in ("start", "stop"):
        raise ValueError(f"unknown services action {action!r} (expected start or stop)")
    backend = services.backend
    if backend == "wazo":
        return list(WAZO_START if action == "start" else WAZO_STOP), WAZO_STATUS
    if backend == "systemd":
        units = list(services.units)
        status = ("systemctl", "is-active", "--quiet", *units) if units else None
        if action == "start":
            return [Step(HOOK, None)] + [_s(f"start {u}", "systemctl", "start", u) for u in units], status
        return [_s(f"stop {u}", "systemctl", "stop", u) for u in reversed(units)], status
    argvs = services.start if action == "start" else services.stop
    steps = [_s(f"{action} {i + 1}: {argv[0]}", *argv) for i, argv in enumerate(argvs)]
    if action == "start":
        steps.insert(0, Step(HOOK, None))
    return steps, tuple(services.status) if services.status else None


async def status(services) -> str:
    """``running`` / ``stopped`` from the backend's status command, ``unknown`` without one or on error."""
    _steps, argv = sequence(services, "start")
    if not argv:
        return "unknown"
    try:
        done = await proc.run(list(argv), timeout=services.step_timeout)
    except (OSError, TimeoutError) as e:
        log.warning("services status unknown", argv=list(argv), error=str(e))
        return "unknown"
    return "running" if done.ok else "stopped"


Hook = Callable[[], Awaitable[Any]]


async def _run_step(step: Step, services, attempts: int) -> StepReport:
    t0 = time.monotonic()
    error = None
    rc = None
    for attempt in range(1, attempts + 1):
        try:
            done = await proc.run(list(step.argv), timeout=services.step_timeout, log_level="info")
            rc = done.returncode
            if done.ok:
                report = StepReport(step.name, True, attempt, time.monotonic() - t0, rc)
                log.info("services step done", step=step.name, attempts=attempt, duration=round(report.duration, 3))
                return report
            error = f"exit {rc}" + (f": {done.stderr_text(300)}" if done.stderr else "")
        except (OSError, TimeoutError) as e:
            error = str(e) if isinstance(e, TimeoutError) else f"cannot run {step.argv[0]}: {e.strerror or e}"
        log.warning("services step failed", step=step.name, attempt=attempt, of=attempts, error=error)
        if attempt < attempts:
            await asyncio.sleep(services.retry_backoff * 2 ** (attempt - 1))
    return StepReport(step.name, False, attempts, time.monotonic() - t0, rc, error)


async def run_action(services, action: str, *, hook: Hook | None = None) -> ServicesReport:
    """Run the start or stop sequence; the report names the failing step. Never raises for step failures."""
    steps, status_argv = sequence(services, action)
    report = ServicesReport(action, services.backend)
    t0 = time.monotonic()
    skip_steps = False
    if action == "start" and services.backend == "wazo" and status_argv:
        skip_steps = (await status(services)) == "running"  # Wazo: start skipped when everything runs
        report.skipped = skip_steps
        if skip_steps:
            log.info("services already running: start steps skipped (berofos still applied)")
    log.info("services action begins", action=action, backend=services.backend, steps=len(steps))
    for step in steps:
        if step.argv is None:
            if hook is not None:
                h0 = time.monotonic()
                report.hook_result = await hook()
                report.steps.append(hook_step(step.name, report.hook_result, time.monotonic() - h0))
            continue
        if skip_steps:
            report.steps.append(StepReport(step.name, True, 0, 0.0, skipped=True))
            continue
        if report.first_step_at is None:
            report.first_step_at = time.monotonic()
        step_report = await _run_step(step, services, services.retries if step.required else 1)
        report.steps.append(step_report)
        if not step_report.ok and step.required:
            report.ok = False
            report.failed_step = step.name
            report.error = step_report.error
            break
    report.duration = time.monotonic() - t0
    log.info("services action ended", action=action, ok=report.ok, failed_step=report.failed_step,
             duration=round(report.duration, 3))
    return report


@contextlib.asynccontextmanager
async def services_lock(state_dir, wait: float | None = None):
    """The ``services`` operation lock shared with ``wazod services``; waits up to ``wait`` s (None: forever)."""
    lock = OperationLock(state_dir, "services")
    await lock.acquire_async(wait, interval=0.2)
    try:
        yield lock
    finally:
        lock.release()
