"""asyncpg connections that authenticate as a system user over the local socket, like ``sudo -u postgres``.

On a Wazo node PostgreSQL authenticates local socket connections by *peer*:
the server asks the kernel which user opened the socket (``SO_PEERCRED``)
and accepts the database role of the same name. Wazo's scripts run their
tools with ``sudo -u postgres``; wazod runs as root, so a plain connection
to ``postgresql:///asterisk`` arrives as role ``root`` and is refused.

What this does instead, when wazod is root and a ``db_os_user`` is set: the
Unix socket is opened by a short-lived thread whose *own* effective uid and
gid are that user's (raw ``setresuid``/``setresgid`` system calls change
the calling thread only, unlike the libc wrappers, which change every
thread of the process), and the connected socket is handed to asyncio. The
rest of the daemon never runs as another user, and the thread's credentials
end with it. TCP connections are untouched (they authenticate by password
or by address, as configured in ``pg_hba.conf``).

asyncpg opens its socket through the event loop it is given; a thin view of
the running loop that opens Unix sockets this way is passed to
``asyncpg.connect(loop=...)``. Everything else, TCP connections included, is
the running loop's own (so asyncpg's host resolution is not repeated here).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import pwd
import socket
import threading

import asyncpg

from wazod import dsn as dsnlib
from wazod.errors import ConfigError

# (setresuid, setresgid) system call numbers
_SYSCALLS = {"x86_64": (117, 119), "aarch64": (147, 149), "i686": (208, 210), "armv7l": (164, 170)}


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _set_thread_ids(libc, numbers: tuple[int, int], uid: int, gid: int) -> None:
    setresuid, setresgid = numbers
    keep = ctypes.c_long(-1)
    for number, value in ((setresgid, gid), (setresuid, uid)) if uid != 0 else ((setresuid, uid), (setresgid, gid)):
        if libc.syscall(ctypes.c_long(number), keep, ctypes.c_long(value), keep) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"set{'uid' if number == setresuid else 'gid'} for the database socket: "
                               f"{os.strerror(err)}")


def open_unix_socket_as(path: str, uid: int, gid: int, timeout: float | None = 30.0) -> socket.socket:
    """A Unix stream socket connected to ``path`` by a thread running as ``uid``/``gid``."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(f"connecting as another user is not supported on {platform.machine()}")
    result: dict[str, object] = {}

    def work() -> None:
        libc = _libc()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            _set_thread_ids(libc, numbers, uid, gid)
            try:
                sock.connect(path)  # SO_PEERCRED records this thread's credentials now
            finally:
                _set_thread_ids(libc, numbers, 0, 0)
            sock.settimeout(None)
            result["sock"] = sock
        except BaseException as e:
            sock.close()
            result["error"] = e

    thread = threading.Thread(target=work, name="wazod-db-socket", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["sock"]  # type: ignore[return-value]


class _LoopOpeningSocketsAs:
    """The running loop, except that Unix-socket connections are opened as another user."""

    def __init__(self, loop: asyncio.AbstractEventLoop, uid: int, gid: int, timeout: float | None) -> None:
        self._loop, self._uid, self._gid, self._timeout = loop, uid, gid, timeout

    def __getattr__(self, name: str):
        return getattr(self._loop, name)

    async def create_unix_connection(self, protocol_factory, path=None, **kwargs):
        if path is None or "sock" in kwargs:
            return await self._loop.create_unix_connection(protocol_factory, path, **kwargs)
        sock = await self._loop.run_in_executor(None, open_unix_socket_as, path, self._uid, self._gid,
                                                self._timeout)
        return await self._loop.create_unix_connection(protocol_factory, sock=sock, **kwargs)


async def connect(dsn: str, *, os_user: str | None = None, setting: str = "db_os_user",
                  dsn_setting: str = "dsn", **kwargs) -> asyncpg.Connection:
    """``asyncpg.connect`` to ``dsn``; as ``os_user`` on the local socket when wazod is root.

    ``dsn`` is read by libpq's parser (``wazod.dsn``): a URL or ``key=value`` pairs, as psql
    takes them; asyncpg gets the keywords as arguments. The role defaults to ``os_user`` when
    the DSN names none (libpq's rule: the role of a connection without a user is the system
    user's name). ``setting`` and ``dsn_setting`` name the configuration keys in errors.
    """
    arguments = dsnlib.asyncpg_arguments(dsn, dsn_setting)
    arguments.update(kwargs)
    if not os_user or os.geteuid() != 0:
        return await asyncpg.connect(**arguments)
    try:
        pw = pwd.getpwnam(os_user)
    except KeyError:
        raise ConfigError(f"{setting}: no system user {os_user!r}") from None
    if "user" not in arguments and not os.environ.get("PGUSER"):
        arguments["user"] = os_user
    loop = _LoopOpeningSocketsAs(asyncio.get_running_loop(), pw.pw_uid, pw.pw_gid, arguments.get("timeout"))
    return await asyncpg.connect(loop=loop, **arguments)
