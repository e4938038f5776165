"""Small helpers shared by every harness component and by other engineers' tests.

Why this module exists: every fixture in the harness starts real processes
(postgres, mosquitto, sshd, commands inside network namespaces).  Those must
be cleaned up even when a test fails or the interpreter is interrupted, and
they must not collide with other engineers running tests on the same machine
at the same time.  The helpers here centralise the three things that are easy
to get subtly wrong: picking a free port, waiting for a condition without
sleeping blindly, and killing a whole process group.
"""
from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import pty
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")

__all__ = [
    "GiveUp",
    "on_a_terminal",
    "free_port",
    "wait_for",
    "wait_for_async",
    "wait_for_port",
    "kill_process_group",
    "stop_process_group",
    "server_factory",
    "register_cleanup",
    "unregister_cleanup",
    "run",
    "install_sigterm_handler",
    "fast_tmpdir",
]

# Ports handed out by this process recently; avoids giving the same port to two
# servers that are started back to back before either has bound it.
_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is currently free on ``host``.

    The kernel chooses it (bind to port 0), so it comes from the ephemeral
    range and is very unlikely to clash with a concurrent test run.  There is
    an unavoidable race between this call and the server binding the port;
    servers in the harness therefore retry with a new port if binding fails.
    """
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
        return port  # pragma: no cover - extremely unlikely


class GiveUp(Exception):
    """Raise from a :func:`wait_for` predicate to stop waiting at once (e.g.
    the server process being waited for has exited); it propagates as is."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.1,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Why: tests of an HA daemon are full of "eventually" conditions (a server is
    up, a failover happened).  Fixed sleeps are both slow and flaky; polling
    with a deadline is neither.  Exceptions raised by the predicate count as
    "not yet" (the last one is chained to the TimeoutError for debugging),
    except :class:`GiveUp`, which propagates immediately.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except GiveUp:
            raise
        except Exception as exc:  # noqa: BLE001 - "not ready yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                message or f"condition {getattr(predicate, '__name__', predicate)!r} "
                f"not met within {timeout}s"
            ) from last_exc
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], Union[T, Awaitable[T]]],
    timeout: float = 10.0,
    interval: float = 0.1,
    message: str | None = None,
) -> T:
    """Async twin of :func:`wait_for`; ``predicate`` may be sync or async.

    Uses ``asyncio.sleep`` so the daemon under test keeps running on the same
    event loop while the test waits.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value  # type: ignore[return-value]
            last_exc = None
        except GiveUp:
            raise
        except Exception as exc:  # noqa: BLE001
            last_exc = exc
        if loop.time() >= deadline:
            raise TimeoutError(
                message or f"condition {getattr(predicate, '__name__', predicate)!r} "
                f"not met within {timeout}s"
            ) from last_exc
        await asyncio.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until a TCP connect to ``host:port`` succeeds."""

    def _connect() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_for(_connect, timeout=timeout, interval=0.05,
             message=f"nothing listening on {host}:{port} after {timeout}s")


def kill_process_group(proc: subprocess.Popen | None, sig: int = signal.SIGKILL,
                       timeout: float = 5.0) -> None:
    """Send ``sig`` to the process group led by ``proc`` and reap ``proc``.

    Every harness process is started with ``start_new_session=True`` so that
    it leads its own group: killing the group also kills helpers it forked
    (postgres backends, sshd session children, ping under ``ip netns exec``)
    which would otherwise survive a failed test and hold ports or namespaces.
    """
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def group_alive(pgid: int) -> bool:
    """True while any process of process group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- last-resort cleanup -------------------------------------------------
# Fixtures clean up through finalizers.  But if pytest itself is killed by
# SIGTERM/timeout, finalizers do not run; the atexit registry makes sure we
# at least do not leave servers and namespaces around in the common cases.
_cleanups: dict[int, Callable[[], Any]] = {}
_cleanup_lock = threading.Lock()


def register_cleanup(func: Callable[[], Any]) -> int:
    """Register ``func`` to run at interpreter exit; returns a token."""
    with _cleanup_lock:
        token = id(func) ^ int(time.monotonic_ns())
        _cleanups[token] = func
        return token


def unregister_cleanup(token: int | None) -> None:
    """Forget a cleanup registered with :func:`register_cleanup`."""
    if token is None:
        return
    with _cleanup_lock:
        _cleanups.pop(token, None)


@atexit.register
def _run_cleanups() -> None:
    with _cleanup_lock:
        funcs = list(_cleanups.values())[::-1]
        _cleanups.clear()
    for func in funcs:
        try:
            func()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def fast_tmpdir() -> str | None:
    """Parent directory for big throw-away trees (PostgreSQL data dirs).

    ``$WAZOD_TEST_TMPDIR`` if set, else ``/dev/shm`` when it is a writable
    tmpfs (copying a 30 MB data dir there is >10x faster than on a VM disk),
    else None (= the system temporary directory).
    """
    env = os.environ.get("WAZOD_TEST_TMPDIR")
    if env:
        return env
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > 1 << 30:  # at least 1 GiB free
            return "/dev/shm"
    return None


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt for the test process.

    Why: CI cancellation and ``timeout`` send SIGTERM, whose default action
    kills Python without running fixture finalizers or atexit hooks, leaking
    servers and network namespaces.  KeyboardInterrupt makes pytest stop the
    same way as Ctrl-C: finalizers run.  Only installed when nothing else
    handles SIGTERM already (and only from the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second TERM kills
        raise KeyboardInterrupt(f"received signal {signum}")

    signal.signal(signal.SIGTERM, _handler)


def run(argv: list[str], *, check: bool = True, timeout: float = 60.0,
        input: str | None = None, **kw: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` with text I/O, captured output and a timeout.

    On failure the exception message includes stderr, which is what one needs
    when a fixture breaks on a colleague's machine.
    """
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         input=input, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(
            f"command {argv!r} failed with rc={res.returncode}\n"
            f"stdout: {res.stdout}\nstderr: {res.stderr}"
        )
    return res


def stop_process_group(proc: subprocess.Popen | None, timeout: float = 20.0) -> int | None:
    """SIGTERM the group of ``proc`` and wait (the clean stop systemd does); SIGKILL if it hangs.

    Returns the exit code, or None when the process had to be killed or never ran.
    """
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(proc)
        return None


def start_moving_port_if_taken(server: Any, start_once: Callable[[], T], reconfigure: Callable[[], None]) -> T:
    """``start_once()``; if the port free_port() picked was taken meanwhile, a new port and again.

    Only a server's first start may move (``server._started_once`` false, no
    port given: ``server._fixed_port``): restarts keep the port, because the
    clients under test (and known_hosts entries) name it. ``reconfigure()``
    rewrites the server's files for the new ``server.port``.
    """
    for attempt in range(5):
        try:
            return start_once()
        except RuntimeError as exc:
            if server._started_once or server._fixed_port or attempt == 4 or "in use" not in str(exc):
                raise
            server.port = free_port(server.host) if server.netns is None else free_port()
            reconfigure()
    raise AssertionError("unreachable")  # pragma: no cover


def tail_lines(path: Path, n: int) -> str:
    """The last ``n`` lines of a log file, for assertion messages ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def server_factory(cls: Callable[..., T], **defaults: Any):
    """Body of a factory fixture: ``yield from server_factory(Mosquitto)``.

    Yields ``factory(*, start=True, **kw)`` making ``cls(**defaults, **kw)``
    (started unless ``start=False``); every server made is destroyed at
    teardown, newest first, even when the test failed.
    """
    made: list = []

    def factory(*, start: bool = True, **kw):
        server = cls(**{**defaults, **kw})
        made.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in reversed(made):
        server.destroy()


def on_a_terminal(argv: list[str], *, drop_env: tuple[str, ...] = ("NO_COLOR",)) -> tuple[int, str]:
    """``argv`` with stdout and stderr on a pseudo-terminal, as a person at a console runs it (the
    variables ``drop_env`` left out of its environment); (exit code, everything it printed)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                                env={k: v for k, v in os.environ.items() if k not in drop_env})
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(60), out.decode(errors="replace")
    finally:
        os.close(master)
