"""Switching and reading every configured berofos: concurrent, verified, retried, reported per device.

Wazo's ``xivo-berofos`` ran ``bnfos --set mode=N`` per device, one after the
other, and only logged a failure. Here every device is switched at the same
time, each change is verified by reading ``4_mode`` back, transient failures
are retried with backoff inside a per-device deadline, and the caller gets one
``DeviceResult`` per device (plus one event per device when it passes an
emitter), so a takeover knows exactly which lines moved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from wazod.berofos.client import (
    BerofosClient,
    DeviceError,
    DeviceVerifyError,
    backoff_delays,
    remember_schemes_in,
)
from wazod.berofos.conf import BnfosConfError, Device, configured_devices, select_devices
from wazod.berofos.protocol import EXPECTED_SETUP
from wazod.errors import LockHeld
from wazod.locks import OperationLock
from wazod.logsetup import get_logger

AUTH_SCHEMES_FILE = "berofos-auth.json"  # in state_dir: the scheme each device offered

log = get_logger("berofos")

T = TypeVar("T")

LINES_ON = {0: "slave", 1: "master"}


@dataclass
class DeviceResult:
    """Outcome of switching one device. ``mode`` is the mode it is now known to be in (None: unknown)."""

    name: str
    ok: bool
    mode: int | None
    error: str | None = None
    host: str | None = None
    previous: int | None = None
    attempts: int = 0

    @property
    def changed(self) -> bool:
        return self.ok and self.previous is not None and self.previous != self.mode

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changed"] = self.changed
        return d


@dataclass
class DeviceStatus:
    """What one device reports, and how it differs from the setup Wazo expects."""

    name: str
    host: str
    ok: bool
    error: str | None = None
    mode: int | None = None
    modedef: int | None = None
    scenario: int | None = None
    wdog: int | None = None
    wdogdef: int | None = None
    lines_on: str | None = None
    warnings: list[str] = field(default_factory=list)
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def setup_warnings(device_name: str, values: dict[str, int | None]) -> list[str]:
    """One line per setup value that differs from Wazo's procedure (wdog 0, wdogdef 0, scenario 0, modedef 1)."""
    why = {
        "wdog": "the watchdog is on: the device will switch the relays by itself when it is not kicked",
        "wdogdef": "the watchdog comes back on after a reboot",
        "scenario": "another failover scenario is configured",
        "modedef": "after a reboot the lines go to the slave",
    }
    out = []
    for name, expected in EXPECTED_SETUP.items():
        value = values.get(name)
        if value is None:
            out.append(f"{name} is not reported by the device (expected {expected})")
        elif value != expected:
            out.append(f"{name} is {value}, Wazo's setup expects {expected}: {why[name]} "
                       f"(fix: bnfos --set {name}={expected} -f {device_name})")
    return out


class _Tracker:
    """The last mode read from a device during an operation (for the result of a failed one)."""

    def __init__(self) -> None:
        self.mode: int | None = None
        self.attempts = 0


async def with_retries(device: Device, settings, op: Callable[[BerofosClient, _Tracker], Awaitable[T]],
                       what: str) -> tuple[T | None, str | None, _Tracker]:
    """Run ``op`` against ``device`` with the section's retries, backoff and deadline.

    Returns ``(value, None, tracker)`` or ``(None, error message, tracker)``; never raises for
    device errors (cancellation still propagates, leaving nothing half-done on our side:
    a relay switch is one idempotent request).
    """
    tracker = _Tracker()
    delays = backoff_delays(settings.retries, settings.retry_delay, settings.retry_delay_max)
    error: str | None = None
    try:
        async with asyncio.timeout(settings.switch_timeout):
            async with BerofosClient(device, timeout=settings.timeout) as client:
                for attempt in range(settings.retries + 1):
                    tracker.attempts += 1
                    try:
                        return await op(client, tracker), None, tracker
                    except DeviceError as e:
                        error = str(e)
                        final = not e.retryable or attempt == settings.retries
                        log.warning(f"berofos {what} attempt failed", device=device.name, host=device.address,
                                    attempt=tracker.attempts, error=error, retrying=not final)
                        if final:
                            break
                        await asyncio.sleep(delays[attempt])
    except TimeoutError:
        error = (f"{device}: {what} not done within {settings.switch_timeout:g} s"
                 + (f" (last error: {error})" if error else ""))
    except Exception as e:  # a bug must not stop the other devices from switching
        log.exception(f"berofos {what} crashed", device=device.name)
        error = f"{device}: {what} failed: {type(e).__name__}: {e}"
    return None, error, tracker


async def switch_device(device: Device, mode: int, settings) -> DeviceResult:
    """Set one device to ``mode`` and verify it; a DeviceResult whatever happens."""

    async def op(client: BerofosClient, tracker: _Tracker) -> int:
        state = await client.read_state()
        tracker.mode = state.mode
        before = state.mode
        if before != mode:
            await client.set("mode", mode)
            after = (await client.read_state()).mode
            tracker.mode = after
            if after != mode:
                raise DeviceVerifyError(f"{device}: accepted mode={mode} (HTTP 200) but still reads back mode {after}")
        return before

    previous, error, tracker = await with_retries(device, settings, op, f"switch to mode {mode}")
    if error is None:
        return DeviceResult(device.name, True, mode, None, device.address, previous, tracker.attempts)
    return DeviceResult(device.name, False, tracker.mode, error, device.address, None, tracker.attempts)


async def read_device(device: Device, settings) -> DeviceStatus:
    async def op(client: BerofosClient, tracker: _Tracker):
        state = await client.read_state()
        tracker.mode = state.mode
        return state

    state, error, tracker = await with_retries(device, settings, op, "read")
    if state is None:
        return DeviceStatus(device.name, device.address, False, error, attempts=tracker.attempts)
    values = {"mode": state.mode, "modedef": state.modedef, "scenario": state.scenario,
              "wdog": state.wdog, "wdogdef": state.wdogdef}
    return DeviceStatus(device.name, device.address, True, None, **values, lines_on=LINES_ON.get(state.mode),
                        warnings=setup_warnings(device.name, values), attempts=tracker.attempts)


@contextlib.asynccontextmanager
async def berofos_lock(config, wait: float):
    """The ``berofos`` operation lock, waiting up to ``wait`` seconds for its holder (CLI or daemon)."""
    lock = OperationLock(config.state_dir, "berofos")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            lock.acquire()
            break
        except LockHeld:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.1)
    try:
        yield lock
    finally:
        lock.release()


def report_result(result: DeviceResult, emitter, reason: str | None) -> None:
    """The journal line and, with an emitter, the event of one device's outcome."""
    data = {"device": result.name, "host": result.host, "mode": result.mode, "attempts": result.attempts}
    if reason:
        data["reason"] = reason
    if result.ok:
        data.update(previous=result.previous, changed=result.changed, lines_on=LINES_ON.get(result.mode))
        log.info("berofos mode set", **data)
        _emit(emitter, "berofos_mode_changed", data)
    else:
        data["error"] = result.error
        log.error("berofos switch failed", **data)
        _emit(emitter, "berofos_failed", data)


def _emit(emitter, name: str, data: dict[str, Any]) -> None:
    """An event store problem must not turn a switched device into an exception for the takeover."""
    if emitter is None:
        return
    try:
        emitter.emit(name, data)
    except Exception:
        log.exception("berofos event not recorded", event=name, device=data.get("device"))


async def apply_mode(config, mode: int, emitter=None, *, devices: list[str] | None = None,
                     reason: str | None = None, lock: bool = True) -> list[DeviceResult]:
    """Switch every configured device (or those named) to ``mode``: 0 lines on the slave, 1 on the master.

    All devices concurrently, each verified by read-back; one DeviceResult per device,
    and ``berofos_mode_changed`` / ``berofos_failed`` per device when ``emitter`` is given.
    Never raises for device or bnfos.conf errors (they come back as failed results).
    No bnfos.conf: ``[]``. ``lock=False`` when the caller already holds the berofos lock.
    """
    if mode not in (0, 1):
        raise ValueError(f"berofos mode must be 0 or 1, not {mode!r}")
    settings = config.berofos
    remember_schemes_in(Path(config.state_dir) / AUTH_SCHEMES_FILE)
    try:
        targets = select_devices(configured_devices(settings), devices, settings.config)
    except BnfosConfError as e:
        result = DeviceResult(settings.config, False, None, str(e))
        report_result(result, emitter, reason)
        return [result]
    if not targets:
        return []

    async def one(device: Device) -> DeviceResult:
        result = await switch_device(device, mode, settings)
        report_result(result, emitter, reason)
        return result

    try:
        async with berofos_lock(config, settings.lock_wait) if lock else contextlib.nullcontext():
            return list(await asyncio.gather(*(one(d) for d in targets)))
    except LockHeld as e:
        results = [DeviceResult(d.name, False, None, f"{d}: not switched: {e}", d.address) for d in targets]
        for r in results:
            report_result(r, emitter, reason)
        return results


async def read_status(config, devices: list[str] | None = None) -> list[DeviceStatus]:
    """Read every configured device (or those named) concurrently. BnfosConfError on a bad bnfos.conf."""
    settings = config.berofos
    remember_schemes_in(Path(config.state_dir) / AUTH_SCHEMES_FILE)
    targets = select_devices(configured_devices(settings), devices, settings.config)
    return list(await asyncio.gather(*(read_device(d, settings) for d in targets)))
