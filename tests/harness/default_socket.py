"""A Debian-like local PostgreSQL for tests: peer authentication on ``/var/run/postgresql``, port 5432.

Why: wazod's shipped defaults name no host (``postgresql:///asterisk``), so
they reach the server only where libpq and asyncpg look by default, the
Debian socket ``/var/run/postgresql/.s.PGSQL.5432``, and only as the
``postgres`` system user (peer authentication). A test cluster on another
port or directory would never exercise those defaults.

The machine's own PostgreSQL already serves that socket and must not be
touched. So the cluster runs in a private mount namespace
(``unshare --mount --propagation private``) in which a temporary directory
is bind-mounted over ``/var/run/postgresql``: inside it, the test cluster
*is* the default server; outside nothing changes. The cluster listens on no
TCP address (``listen_addresses=''``), so its port 5432 takes no port.
Every command that must see this server (the wazod CLI, psql) runs in the
same namespace through ``nsenter``.

The namespace is held by a ``sleep`` that :meth:`DefaultSocketNode.destroy`
kills (the bind mount disappears with the namespace).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .pg import PgCluster, pg_bindir
from .util import fast_tmpdir, kill_process_group, register_cleanup, run, unregister_cleanup, wait_for

SOCKDIR = "/var/run/postgresql"

__all__ = ["DefaultSocketNode", "SOCKDIR"]


def _mount_ns(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


class DefaultSocketNode:
    """A mount namespace whose ``/var/run/postgresql`` is served by a peer-only cluster on port 5432."""

    def __init__(self, template: Path) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="wzt-defsock-", dir=fast_tmpdir()))
        os.chmod(self.base, 0o755)
        self.sock = self.base / "run-postgresql"
        self.sock.mkdir()
        pw = pwd.getpwnam("postgres")
        os.chown(self.sock, pw.pw_uid, pw.pw_gid)
        os.chmod(self.sock, 0o2775)  # as Debian makes it
        self.cluster: PgCluster | None = None
        self.holder: subprocess.Popen | None = None
        self._cleanup = register_cleanup(self.destroy)
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        own = _mount_ns("self")
        wait_for(lambda: _mount_ns(self.holder.pid) != own, timeout=10, interval=0.02,
                 message="unshare did not enter a new mount namespace")
        run(self.inside(["mount", "--bind", str(self.sock), SOCKDIR]))
        self.cluster = PgCluster(listen_addresses="", port=5432, template=template, prefix=self.inside([]),
                                 extra_conf={"unix_socket_directories": SOCKDIR})
        hba = self.cluster.datadir / "pg_hba.conf"
        hba.write_text("local all all peer\n" + hba.read_text())  # Debian's first rule: peer only
        self.cluster.start()

    def inside(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in the namespace (where ``/var/run/postgresql`` is the test cluster's)."""
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *argv]

    def psql(self, sql: str, db: str = "postgres") -> str:
        """``sql`` through the default socket as the ``postgres`` system user (peer), like ``sudo -u postgres psql``."""
        argv = self.inside(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                            str(pg_bindir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", db, "-f", "-"])
        return run(argv, input=sql, cwd="/", timeout=120, env=self.clean_env()).stdout.strip()

    @staticmethod
    def clean_env() -> dict[str, str]:
        """This process's environment without any PG* variable: the defaults only."""
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def wazod(self, *args: str, config: Path, timeout: float = 180) -> subprocess.CompletedProcess:
        """The real ``wazod`` CLI in the namespace, as root, with no PG* variable."""
        return run(self.inside([sys.executable, "-m", "wazod", "--config", str(config), *args]), check=False,
                   cwd="/", timeout=timeout, env=self.clean_env())

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``python -c code`` in the namespace (wazod's code paths that no CLI command runs alone)."""
        return run(self.inside([sys.executable, "-c", code]), check=False, cwd="/", timeout=timeout,
                   env=self.clean_env())

    def destroy(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
            self.cluster = None
        if self.holder is not None:
            kill_process_group(self.holder)
            self.holder = None
        shutil.rmtree(self.base, ignore_errors=True)
        unregister_cleanup(self._cleanup)
