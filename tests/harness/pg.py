"""Throw-away PostgreSQL clusters for tests.

Why real clusters: wazod's HA logic drives PostgreSQL through ``psql``,
``pg_dump``/``pg_restore`` and asyncpg, and the interesting failures (master
killed in the middle of a copy, slave restarted, listen address changes) only
show up against a real server.  Each cluster lives in its own temporary
directory with its own port and Unix socket dir, so tests and engineers
running tests concurrently never share state.

Running as root: ``initdb`` and ``postgres`` refuse to run as root, so when
the test process is root every server-side binary is executed as the
``postgres`` system user (via ``setpriv``, which *execs* instead of forking
like ``runuser`` does, so the pid we hold is the postmaster itself) and the
temporary directory is chown'ed to it.  Client tools (``psql``) run as the
current user and connect over TCP with trust auth.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from .util import (
    GiveUp,
    fast_tmpdir,
    free_port,
    group_alive,
    kill_process_group,
    register_cleanup,
    run,
    server_factory,
    tail_lines,
    unregister_cleanup,
    wait_for,
)

__all__ = ["PgCluster", "PgPair", "pg_bindir", "make_pg_template"]


def _remove_shared_memory(shmid: int | None) -> None:
    """Mark this killed server's segment for removal (the kernel frees it once nothing is attached)."""
    if shmid is not None:
        subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, check=False)

_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/local/bin")


def pg_bindir() -> Path:
    """Directory holding initdb/postgres/psql (PostgreSQL 15 preferred)."""
    env = os.environ.get("WAZOD_TEST_PG_BINDIR")
    for cand in ([env] if env else []) + list(_BIN_CANDIDATES):
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL binaries (initdb/postgres) not found")


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) of the postgres system user when we are root, else None."""
    if not _is_root():
        return None
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _as_server_user(argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs as the postgres user when we are root."""
    if not _is_root():
        return list(argv)
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups",
            "--", *argv]


def _chown_tree(path: Path) -> None:
    ids = _server_user()
    if ids is None:
        return
    uid, gid = ids
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _initdb(datadir: Path) -> None:
    run(_as_server_user([
        str(pg_bindir() / "initdb"), "-D", str(datadir), "-U", "postgres",
        "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
    ]), timeout=120, cwd="/")


def make_pg_template() -> Path:
    """Run initdb once into a new temp dir and return the data directory.

    Copying this directory is ~10x faster than running initdb, which is why
    the session fixture ``pg_template`` exists.  The caller removes
    ``result.parent``.
    """
    base = Path(tempfile.mkdtemp(prefix="wzt-pgtpl-", dir=fast_tmpdir()))
    os.chmod(base, 0o755)
    _chown_tree(base)
    data = base / "data"
    _initdb(data)
    return data


class PgCluster:
    """One PostgreSQL cluster in a private temporary directory.

    ``listen_addresses`` defaults to ``127.0.0.1``; pass ``'*'`` or an address
    (e.g. a NetnsLab address together with ``netns=``) for HA lab tests.  The
    pg_hba always trusts every host (``0.0.0.0/0`` and ``::/0``, normal and
    replication connections) because the server only listens where told to.

    ``netns``: name of a network namespace to run the server (and ``psql``)
    in; used by the two-host lab.

    Settings go to ``<datadir>/harness.conf``, included at the end of
    postgresql.conf and rewritten at every :meth:`start` (so changing
    ``port``/``listen_addresses``/``extra_conf`` and restarting applies them);
    ``ALTER SYSTEM`` (postgresql.auto.conf) still overrides them, as in
    production.  ``init=False`` leaves ``datadir`` empty for the caller to
    fill (e.g. ``cluster.server_cmd(['pg_basebackup', '-D', str(cluster.datadir),
    ...])``); the harness settings are added at start.
    """

    def __init__(self, *, listen_addresses: str = "127.0.0.1", port: int | None = None,
                 template: Path | None = None, netns: str | None = None,
                 extra_conf: dict[str, str] | None = None,
                 base_dir: str | None = None, init: bool = True,
                 prefix: Sequence[str] = ()) -> None:
        self.listen_addresses = listen_addresses
        self.netns = netns
        # argv prefix of the server and client tools, e.g. nsenter into a mount namespace
        self.prefix = list(prefix)
        self.extra_conf = dict(extra_conf or {})
        self._fixed_port = port
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="wzt-pg-", dir=base_dir or fast_tmpdir()))
        os.chmod(self.base, 0o755)
        self.datadir = self.base / "data"
        self.sockdir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        self.sockdir.mkdir()
        _chown_tree(self.base)
        if not init:
            pass  # caller fills self.datadir (e.g. pg_basebackup via server_cmd)
        elif template is not None:
            # ``cp -a`` run as the server user is ~5x faster than copytree +
            # chown, and keeps the 0700 mode postgres insists on.
            run(_as_server_user(["cp", "-a", "--", str(template), str(self.datadir)]),
                cwd="/")
        else:
            _initdb(self.datadir)
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self._cleanup_token = register_cleanup(self.destroy)
        self._destroyed = False

    # -- configuration ----------------------------------------------------
    @property
    def host(self) -> str:
        """Address clients should use: 127.0.0.1 unless bound elsewhere; the socket directory
        when the server listens on no address at all (``listen_addresses=''``)."""
        if self.listen_addresses.strip() == "":
            return self.extra_conf.get("unix_socket_directories", str(self.sockdir)).split(",")[0].strip()
        la = self.listen_addresses.split(",")[0].strip()
        if la in ("*", "", "0.0.0.0", "localhost"):
            return "127.0.0.1"
        return la

    _HBA_MARK = "# wazod test harness"

    def _prepare_datadir(self) -> None:
        """Write harness.conf, include it and trust all hosts in pg_hba
        (idempotent, so it also works on a data dir copied from another
        harness cluster by pg_basebackup)."""
        conf = {
            "port": str(self.port),
            "listen_addresses": self.listen_addresses,
            "unix_socket_directories": str(self.sockdir),
            "fsync": "off",
            # synchronous_commit stays on: with fsync=off a commit is just a
            # write() to the page cache, cheap, and it survives kill() (a
            # process crash) -- with it off, committed rows could vanish.
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "40",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        conf.update(self.extra_conf)
        lines = [f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in conf.items()]
        harness_conf = self.datadir / "harness.conf"
        harness_conf.write_text("# written by tests/harness/pg.py at each start\n"
                                + "\n".join(lines) + "\n")
        main_conf = self.datadir / "postgresql.conf"
        text = main_conf.read_text() if main_conf.exists() else ""
        if "include_if_exists 'harness.conf'" not in text:
            with open(main_conf, "a") as fh:
                fh.write("\ninclude_if_exists 'harness.conf'\n")
        hba = self.datadir / "pg_hba.conf"
        text = hba.read_text() if hba.exists() else ""
        if self._HBA_MARK not in text:
            with open(hba, "a") as fh:
                fh.write(
                    f"\n{self._HBA_MARK}: trust everything, we only listen where told\n"
                    "host all all 0.0.0.0/0 trust\n"
                    "host all all ::/0 trust\n"
                    "host replication all 0.0.0.0/0 trust\n"
                    "host replication all ::/0 trust\n"
                )
        ids = _server_user()
        if ids is not None:
            for f in (harness_conf, main_conf, hba):
                os.chown(f, *ids)

    def _server_argv(self) -> list[str]:
        argv = self.server_cmd([str(pg_bindir() / "postgres"), "-D", str(self.datadir)])
        return argv

    def server_cmd(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run as the server user (when root) inside the
        cluster's namespace (if any); e.g. for pg_basebackup or pg_rewind."""
        wrapped = self.prefix + _as_server_user(argv)
        if self.netns:
            wrapped = ["ip", "netns", "exec", self.netns, *wrapped]
        return wrapped

    # -- lifecycle --------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the postmaster process we started is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> PgCluster:
        """Start the postmaster and wait until it accepts connections.

        The server is started directly (``postgres -D``) rather than through
        ``pg_ctl start`` so that the Popen object *is* the postmaster: this
        makes :meth:`kill` a real crash and lets teardown kill its process
        group.  If the chosen port turns out to be taken (race with another
        process), a new free port is tried unless a port was given explicitly.
        """
        self._shmid = None  # a segment left by a kill is removed by this start itself
        if self.running:
            return self
        self._wait_old_group_gone()
        for attempt in range(5):
            self._prepare_datadir()
            self._log_fh = open(self.logfile, "ab")
            self.proc = subprocess.Popen(
                self._server_argv(), stdout=self._log_fh, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd="/",
            )
            try:
                wait_for(self._ready, timeout=timeout, interval=0.05,
                         message=f"postgres on port {self.port} not ready; "
                         f"log: {self.logfile}")
                return self
            except (TimeoutError, GiveUp):
                exited = self.proc.poll() is not None
                kill_process_group(self.proc)
                self.proc = None
                log = self.log_tail()
                if exited and "in use" in log and not self._fixed_port and attempt < 4:
                    self.port = free_port()
                    continue
                raise RuntimeError(f"postgres failed to start:\n{log}") from None
        raise RuntimeError("postgres failed to start")  # pragma: no cover

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise GiveUp("postmaster exited")
        res = subprocess.run(self._netns_prefix() + [
            str(pg_bindir() / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
            "-U", "postgres", "-t", "1"], capture_output=True, timeout=10)
        return res.returncode == 0

    def _wait_old_group_gone(self) -> None:
        """After kill(postmaster_only=True) orphaned backends linger until they
        notice the postmaster died; a new postmaster refuses to start while
        they still attach the old shared memory, so wait for them."""
        pgid = getattr(self, "_last_pgid", None)
        if pgid is None:
            return
        try:
            wait_for(lambda: not group_alive(pgid), timeout=10, interval=0.05)
        except TimeoutError:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: not group_alive(pgid), timeout=5, interval=0.05)
        self._last_pgid = None

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server like ``pg_ctl stop -m <mode>`` would.

        pg_ctl's modes are just signals to the postmaster (smart=SIGTERM,
        fast=SIGINT, immediate=SIGQUIT); sending them ourselves works the same
        inside a network namespace and without switching user.
        """
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT,
               "immediate": signal.SIGQUIT}[mode]
        if not self.running:
            self._close_log()
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(self.proc)
        self._last_pgid = self.proc.pid
        self._wait_old_group_gone()
        self.proc = None
        self._shmid = None  # a clean stop removes its segment
        self._close_log()

    def kill(self, postmaster_only: bool = False) -> None:
        """SIGKILL the server, simulating a crash (e.g. "master killed
        mid-copy").

        By default the whole process group (postmaster and all backends) is
        killed at once, like a host losing power: open client connections see
        the socket close immediately.  With ``postmaster_only=True`` only the
        postmaster gets SIGKILL and backends die on their own shortly after.
        A later :meth:`start` works in both cases (crash recovery runs).
        """
        if self.proc is None:
            return
        pid = self.proc.pid
        self._shmid = self._shared_memory_id()
        try:
            if postmaster_only:
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._last_pgid = pid
        self.proc = None
        self._close_log()

    def _shared_memory_id(self) -> int | None:
        """The System V segment of the running server (line 7 of postmaster.pid: key, then id).

        A server killed with SIGKILL leaves that segment behind (the next start in the same data
        directory would remove it, but the directory is deleted): a few thousand of them and the
        kernel's SHMMNI is reached, and no PostgreSQL on the machine can start any more."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            return int(lines[6].split()[1])
        except (OSError, IndexError, ValueError):
            return None

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def destroy(self) -> None:
        """Kill the server and remove the temporary directory (idempotent)."""
        if getattr(self, "_destroyed", True):
            return
        self._destroyed = True
        shmid = self._shared_memory_id() if self.proc is not None else getattr(self, "_shmid", None)
        if self.proc is not None:
            kill_process_group(self.proc)
            self.proc = None
        self._close_log()
        _remove_shared_memory(shmid)
        shutil.rmtree(self.base, ignore_errors=True)
        unregister_cleanup(self._cleanup_token)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- client helpers ---------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/asyncpg URL, e.g. ``postgresql://postgres@127.0.0.1:5433/postgres``."""
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def _netns_prefix(self) -> list[str]:
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + self.prefix

    def psql(self, sql: str, db: str = "postgres", *, check: bool = True) -> str:
        """Run ``sql`` with the real ``psql`` (unaligned, tuples only) and
        return its stdout.  Raises RuntimeError (with stderr) on SQL errors."""
        argv = self._netns_prefix() + [
            str(pg_bindir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", db,
            "-c", sql]
        return run(argv, check=check, env={**os.environ, "PGCONNECT_TIMEOUT": "5"}).stdout

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` and return its DSN."""
        quoted = '"' + name.replace('"', '""') + '"'
        self.psql(f"CREATE DATABASE {quoted}")
        return self.dsn(name)

    def log_tail(self, n: int = 40) -> str:
        """Last lines of the server log, for assertion messages."""
        return tail_lines(self.logfile, n)

    def __repr__(self) -> str:
        return f"<PgCluster {self.dsn()} running={self.running} dir={self.base}>"


class PgPair:
    """Two independent clusters, named after their HA roles."""

    def __init__(self, master: PgCluster, slave: PgCluster) -> None:
        self.master = master
        self.slave = slave

    def __iter__(self) -> Iterator[PgCluster]:
        return iter((self.master, self.slave))


# -- fixtures -------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    """initdb once per session; clusters copy this data directory."""
    data = make_pg_template()
    yield data
    shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture
def make_pg_cluster(pg_template: Path) -> Iterator[Callable[..., PgCluster]]:
    """Factory: ``make_pg_cluster(listen_addresses='127.0.0.1', start=True,
    netns=None, port=None, extra_conf=None) -> PgCluster``.

    Every cluster made is destroyed at teardown, even if the test failed.
    """
    yield from server_factory(PgCluster, template=pg_template)


@pytest.fixture
def pg_cluster(make_pg_cluster) -> PgCluster:
    """One started, empty cluster on 127.0.0.1:<free port>."""
    return make_pg_cluster()


@pytest.fixture
def pg_pair(make_pg_cluster) -> PgPair:
    """Two started, independent clusters: ``pg_pair.master``, ``pg_pair.slave``."""
    return PgPair(make_pg_cluster(), make_pg_cluster())


@pytest.fixture
async def replication_sessions_closed():
    """The continuous checks keep their database sessions between checks (``wazod.replication``'s kept
    sessions): closed when the test ends, so that no session outlives its clusters."""
    yield
    from wazod.replication import close_kept

    await close_kept()
