"""Per-operation lock files shared by the daemon and the CLI.

``fcntl.flock`` on ``<state_dir>/locks/<operation>.lock``: the kernel drops it
when the holder dies, so a crash never leaves a stale lock behind. A manual
run and a scheduled run of the same operation therefore never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from pathlib import Path

from wazod.errors import LockHeld
from wazod.statedir import FILE_MODE, ensure_private_dir


class OperationLock:
    def __init__(self, state_dir: str | os.PathLike, operation: str):
        self.operation = operation
        self.path = Path(state_dir) / "locks" / f"{operation}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent.parent)
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        if os.fstat(fd).st_mode & 0o077:  # made 0644 by an older wazod: nobody else may open (and flock) it
            os.fchmod(fd, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 64, 0).decode().strip()
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise LockHeld(f"another {self.operation} run holds the lock {self.path}{who}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def acquire_waiting(self, wait: float, interval: float = 0.02) -> None:
        """Acquire, retrying for up to ``wait`` seconds (blocking); LockHeld after that."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.acquire()
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(interval)

    async def acquire_async(self, wait: float | None, interval: float = 0.1) -> None:
        """Acquire without blocking the event loop, retrying for up to ``wait`` seconds (None: forever)."""
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                return self.acquire()
            except LockHeld:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(interval)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> OperationLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.asynccontextmanager
async def holding(state_dir: str | os.PathLike, operations: tuple[str, ...] | list[str], wait: float = 0.0):
    """Hold every lock of ``operations`` (taken in that order, released in reverse); LockHeld if one is busy.

    ``wait`` seconds are allowed per lock, so a brief probe by the daemon (the
    berofos drift and the HA services check test whether a lock is free) does
    not make the caller fail.
    """
    taken: list[OperationLock] = []
    try:
        for operation in operations:
            lock = OperationLock(state_dir, operation)
            await lock.acquire_async(wait, interval=0.05)
            taken.append(lock)
        yield taken
    finally:
        for lock in reversed(taken):
            lock.release()


def is_held(state_dir: str | os.PathLike, operation: str) -> bool:
    """True while another process (or another open of the file here) holds ``operation``'s lock."""
    probe = OperationLock(state_dir, operation)
    try:
        probe.acquire()
    except LockHeld:
        return True
    probe.release()
    return False
