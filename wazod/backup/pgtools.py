"""PostgreSQL through its own tools (psql, pg_dump, pg_restore), as Wazo does.

Why the tools and not a driver: the backup must be exactly what ``pg_dump -Fc``
makes, the restore exactly what ``pg_restore -C`` does, and on a Wazo node the
database is reached over the Unix socket with peer authentication as the
``postgres`` system user (Wazo runs ``sudo -u postgres pg_dump``). So every tool
runs as ``backup.db_os_user`` when wazod is root, and the same code works on a
test cluster reached over TCP.

The DSN is read by libpq's own parser (``wazod.dsn``) and handed to the tools
as a rebuilt ``key=value`` string: ``postgresql:///asterisk`` stays the local
socket. Its secrets (``password``, ``sslpassword``, in whatever form the DSN
gave them) never reach an argv, readable by anyone in ``/proc/PID/cmdline``,
nor the environment: they go into 0600 files (a passfile, a connection
service file) that live only while the child runs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from wazod import dsn as dsnlib
from wazod import proc
from wazod.errors import ConfigError

SERVICE = "wazod"


def _passfile_line(password: str) -> str:
    """``*:*:*:*:password``, backslash and colon escaped as libpq reads them back verbatim."""
    if "\n" in password or "\r" in password:
        raise ConfigError("a password in a DSN cannot contain a line break")
    return "*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n"


def _service_line(key: str, value: str) -> str:
    # pg_service.conf keeps a value to the end of its line, less trailing white space
    if "\n" in value or "\r" in value or value != value.rstrip():
        raise ConfigError(f"a {key} in a DSN cannot contain a line break or end in white space")
    return f"{key}={value}\n"


@dataclass(frozen=True)
class Pg:
    """One database of one server, and the system user its tools run as."""

    params: tuple[tuple[str, str], ...]  # libpq keywords, without secrets
    secrets: tuple[tuple[str, str], ...]  # password, sslpassword
    dbname: str
    os_user: str | None

    @classmethod
    def from_dsn(cls, dsn: str, os_user: str | None = None, setting: str = "backup.dsn") -> Pg:
        """Parse a ``postgresql://`` URL or a ``key=value`` conninfo with libpq; a clear ConfigError otherwise."""
        params = dsnlib.parse(dsn, setting)
        if "service" in params and "sslpassword" in params:
            raise ConfigError(f"{setting}: a DSN that names a service cannot also carry an sslpassword "
                              "(put it in the service's file)")
        plain, secrets = dsnlib.split_secrets(params)
        plain.setdefault("dbname", "postgres")
        return cls(tuple(plain.items()), tuple(secrets.items()), plain["dbname"], os_user)

    @property
    def conninfo(self) -> str:
        """The ``key=value`` string the tools get: no secret in it (the passfile and service file hold them)."""
        params = dict(self.params)
        if any(k != "password" for k, _ in self.secrets):
            params["service"] = SERVICE
        return dsnlib.build(params)

    @property
    def password(self) -> str | None:
        return dict(self.secrets).get("password")

    def with_dbname(self, dbname: str) -> Pg:
        params = dict(self.params)
        params["dbname"] = dbname
        return Pg(tuple(params.items()), self.secrets, dbname, self.os_user)

    # --- running the tools -------------------------------------------------
    def _switch_user(self) -> list[str]:
        if self.os_user and os.geteuid() == 0:
            try:
                pwd.getpwnam(self.os_user)
            except KeyError:
                raise ConfigError(f"backup.db_os_user: no system user {self.os_user!r}") from None
            return ["setpriv", f"--reuid={self.os_user}", f"--regid={self.os_user}", "--init-groups", "--"]
        return []

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE")}
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        if self.os_user and os.geteuid() == 0:
            try:
                env["HOME"] = pwd.getpwnam(self.os_user).pw_dir
            except KeyError:
                pass
        return env

    @contextlib.contextmanager
    def child_env(self) -> Iterator[dict[str, str]]:
        """The environment of a child tool; its secrets in 0600 files removed afterwards.

        The password goes into a passfile (``PGPASSFILE``), any other secret (``sslpassword``) into a
        connection service file (``PGSERVICEFILE``; the argv names the service). The files and their
        0700 directory belong to the user the tool runs as: only that user and root can read them, and
        only while the tool runs. Never argv (``/proc/PID/cmdline`` is world-readable) nor the environment.
        """
        env = self._base_env()
        if not self.secrets:
            yield env
            return
        workdir = tempfile.mkdtemp(prefix="wazod-pg-")
        try:
            files = {}
            others = [(k, v) for k, v in self.secrets if k != "password"]
            if self.password is not None:
                files["PGPASSFILE"] = ("passfile", _passfile_line(self.password))
            if others:
                files["PGSERVICEFILE"] = ("pg_service.conf",
                                          f"[{SERVICE}]\n" + "".join(_service_line(k, v) for k, v in others))
            owner = None
            if self.os_user and os.geteuid() == 0:
                with contextlib.suppress(KeyError):
                    pw = pwd.getpwnam(self.os_user)
                    owner = (pw.pw_uid, pw.pw_gid)
                    os.chown(workdir, *owner)
            for var, (name, text) in files.items():
                path = os.path.join(workdir, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    if owner:
                        os.fchown(fh.fileno(), *owner)
                    fh.write(text)
                env[var] = path
            yield env
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def argv(self, tool: str, *args: str, connect: bool = True) -> list[str]:
        """``tool`` (psql, pg_dump, pg_restore...) with this database's connection options."""
        conn = [f"--dbname={self.conninfo}"] if connect else []
        return [*self._switch_user(), tool, *conn, *args]

    async def run(self, tool: str, *args: str, input: bytes | None = None, stdout=None,
                  low_priority: bool = False, check: bool = True, timeout: float | None = None) -> proc.Completed:
        kw = {"stdout": stdout} if stdout is not None else {}
        with self.child_env() as env:
            return await proc.run(self.argv(tool, *args), input=input, env=env, cwd="/", check=check,
                                  low_priority=low_priority, timeout=timeout, **kw)

    async def psql(self, sql: str, *, check: bool = True, timeout: float | None = 600) -> str:
        """Run ``sql`` (several statements allowed) and return the unaligned, tuples-only output."""
        done = await self.run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-",
                              input=sql.encode(), check=check, timeout=timeout)
        return done.stdout.decode()

    async def scalar(self, sql: str) -> str | None:
        out = (await self.psql(sql)).strip()
        return out.splitlines()[0] if out else None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
