"""Running external tools (pg_dump, rsync, tar, systemctl...) from asyncio.

argv lists only, never a shell. Each child gets its own process group, so a
cancelled run (SIGTERM of the daemon, a timeout) terminates the whole tree:
SIGTERM first, SIGKILL after a grace period. Logged argv are masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

from wazod.logsetup import get_logger
from wazod.secrets import mask_text

log = get_logger("proc")


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stderr_text(self, limit: int = 2000) -> str:
        return mask_text(self.stderr.decode(errors="replace").strip()[-limit:])


class CommandFailed(Exception):
    def __init__(self, completed: Completed, what: str | None = None):
        self.completed = completed
        name = what or os.path.basename(completed.argv[0])
        detail = completed.stderr_text(500)
        super().__init__(f"{name} exited with {completed.returncode}" + (f": {detail}" if detail else ""))


def display_argv(argv: list[str]) -> str:
    return mask_text(" ".join(argv))


async def _terminate(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def run(
    argv: list[str],
    *,
    timeout: float | None = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    check: bool = False,
    low_priority: bool = False,
    stdout=asyncio.subprocess.PIPE,
    log_level: str = "debug",
) -> Completed:
    """Run ``argv`` to completion; on cancellation or timeout, kill its process group."""
    if low_priority:
        argv = ["nice", "-n", "19", "ionice", "-c3", *argv]
    getattr(log, log_level)("run", argv=display_argv(argv))
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        await _terminate(proc)
        raise TimeoutError(f"{os.path.basename(argv[0])} did not finish within {timeout:g} s") from None
    except BaseException:
        await asyncio.shield(_terminate(proc))
        raise
    done = Completed(list(argv), proc.returncode, out or b"", err or b"")
    if check and not done.ok:
        raise CommandFailed(done)
    return done
