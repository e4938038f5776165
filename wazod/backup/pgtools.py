"""PostgreSQL through its own tools (psql, pg_dump, pg_restore), as Wazo does.

Why the tools and not a driver: the backup must be exactly what ``pg_dump -Fc``
makes, the restore exactly what ``pg_restore -C`` does, and on a Wazo node the
database is reached over the Unix socket with peer authentication as the
``postgres`` system user (Wazo runs ``sudo -u postgres pg_dump``). So every tool
runs as ``backup.db_os_user`` when wazod is root, and the same code works on a
test cluster reached over TCP.

A password in the DSN never reaches an argv (visible in ``ps``): it is moved
into ``PGPASSWORD`` for the child only.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from wazod import proc
from wazod.errors import ConfigError

_KV_RE = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def _kv_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Pg:
    """One database of one server, and the system user its tools run as."""

    conninfo: str  # without password
    password: str | None
    dbname: str
    os_user: str | None

    @classmethod
    def from_dsn(cls, dsn: str, os_user: str | None = None) -> Pg:
        """Parse a ``postgresql://`` URL or a ``key=value`` conninfo; a clear ConfigError otherwise."""
        if "://" in dsn:
            parts = urlsplit(dsn)
            if parts.scheme not in ("postgresql", "postgres"):
                raise ConfigError(f"backup.dsn: expected a postgresql:// URL, got scheme {parts.scheme!r}")
            password = unquote(parts.password) if parts.password is not None else None
            netloc = parts.netloc.rsplit("@", 1)[-1]
            if parts.username is not None:
                netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
            dbname = unquote(parts.path.lstrip("/")) or "postgres"
            conninfo = urlunsplit((parts.scheme, netloc, "/" + quote(dbname, safe=""), parts.query, ""))
            return cls(conninfo, password, dbname, os_user)
        pairs = _KV_RE.findall(dsn)
        if not pairs or "".join(f"{k}{v}" for k, v in pairs).replace(" ", "") == "":
            raise ConfigError(f"backup.dsn: cannot parse {dsn!r} (expected postgresql://... or key=value pairs)")
        values = {k: (shlex.split(v)[0] if v.startswith("'") else v) for k, v in pairs}
        password = values.pop("password", None)
        dbname = values.get("dbname", "postgres")
        conninfo = " ".join(f"{k}={_kv_quote(v)}" for k, v in values.items())
        return cls(conninfo, password, dbname, os_user)

    def with_dbname(self, dbname: str) -> Pg:
        if "://" in self.conninfo:
            parts = urlsplit(self.conninfo)
            conninfo = urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), parts.query, ""))
        else:
            conninfo = re.sub(r"\bdbname=('(?:[^'\\]|\\.)*'|\S+)", "", self.conninfo).strip()
            conninfo = f"{conninfo} dbname={_kv_quote(dbname)}".strip()
        return Pg(conninfo, self.password, dbname, self.os_user)

    # --- running the tools -------------------------------------------------
    def _switch_user(self) -> list[str]:
        if self.os_user and os.geteuid() == 0:
            try:
                pwd.getpwnam(self.os_user)
            except KeyError:
                raise ConfigError(f"backup.db_os_user: no system user {self.os_user!r}") from None
            return ["setpriv", f"--reuid={self.os_user}", f"--regid={self.os_user}", "--init-groups", "--"]
        return []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        if self.os_user and os.geteuid() == 0:
            try:
                env["HOME"] = pwd.getpwnam(self.os_user).pw_dir
            except KeyError:
                pass
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def argv(self, tool: str, *args: str, connect: bool = True) -> list[str]:
        """``tool`` (psql, pg_dump, pg_restore...) with this database's connection options."""
        conn = [f"--dbname={self.conninfo}"] if connect else []
        return [*self._switch_user(), tool, *conn, *args]

    async def run(self, tool: str, *args: str, input: bytes | None = None, stdout=None,
                  low_priority: bool = False, check: bool = True, timeout: float | None = None) -> proc.Completed:
        kw = {"stdout": stdout} if stdout is not None else {}
        return await proc.run(self.argv(tool, *args), input=input, env=self.env(), cwd="/", check=check,
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
