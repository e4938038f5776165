"""``wazod restore``: section 1 of the administration guide, automated, with a way back.

The guide's page of manual commands becomes ten numbered steps. Nothing is
changed before the backup has been read back completely (checksums, gzip CRC,
``pg_restore --list``) and its Wazo version (and machine architecture) matched
against this node's. From the moment the database is renamed to
``asterisk_previous``, any failure drops the half-restored database, renames
``asterisk_previous`` back, restarts the services that were stopped, and the
report says at which step it stopped and why.

Files extracted from data.tgz are not rolled back (as with the guide's
``tar xvfp``); with ``--keep-network`` (the default) the node's network files
are not extracted at all and its network tables are copied back, so a restore
never changes the node's addresses or name.
"""

from __future__ import annotations

import asyncio
import os
import platform
import pwd
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from wazod import proc
from wazod.backup import archive, dbdump, pg_of, sets
from wazod.backup.archive import ArchiveError
from wazod.backup.dbdump import DumpError
from wazod.backup.members import MemberCheck
from wazod.backup.pgtools import Pg, quote_ident, quote_literal
from wazod.errors import ExitCode, LockHeld, WazodError
from wazod.fsutil import atomic_write_text, read_json
from wazod.locks import holding
from wazod.logsetup import get_logger

log = get_logger("restore")

# What a restore holds from start to end: every job and every HA action would act on a node whose
# database and files are being replaced (replication would copy a half-restored database, the HA
# services check would restart the services restore stopped, the purge would delete rows of it).
RESTORE_LOCKS = ("restore", "backup", "replication", "sync", "purge", "ha", "services")
LOCK_WAIT = 2.0  # seconds per lock: the daemon's brief probes of a lock are not a conflict

UUID_RE = re.compile(r"^[0-9a-fA-F-]{8,64}$")
DUMP_NAME_RE = re.compile(r"^(?P<db>.+)-(?P<version>[^-]+)\.dump$")


class RestoreError(WazodError):
    pass


@dataclass
class StepRecord:
    number: int
    title: str
    status: str = "pending"  # ok | skipped | failed | planned
    detail: str | None = None
    duration: float = 0.0


@dataclass
class RestoreReport:
    ok: bool = False
    dry_run: bool = False
    steps: list[StepRecord] = field(default_factory=list)
    stopped_at: int | None = None
    error: str | None = None
    rolled_back: bool = False
    rollback_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    data_file: str | None = None
    db_file: str | None = None
    wazo_version: str | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        for s in d["steps"]:
            s["duration"] = round(s["duration"], 3)
        return d


def _manifest_beside(path: Path) -> dict | None:
    """The manifest of ``data.tgz[.N]`` / ``db.tgz[.N]`` in the same directory, when there is one."""
    m = re.match(r"^(data|db)\.tgz(?:\.(\d+))?$", path.name)
    if not m:
        return None
    return read_json(path.parent / sets.manifest_name(m[1], int(m[2] or 0)))


async def _current_version(config, pg: Pg) -> str | None:
    try:
        version = await dbdump.read_version(pg)
    except Exception:
        version = None
    if version:
        return version
    from wazod.backup import _version_from_file

    return _version_from_file(config)


class Restore:
    """One restore run. ``say(text)`` receives the progress lines (the CLI prints them)."""

    def __init__(self, config, *, data_file: str | None, db_file: str | None, keep_network: bool = True,
                 dry_run: bool = False, force: bool = False, say: Callable[[str], None] | None = None):
        self.config = config
        self.b = config.backup
        self.data_file = Path(data_file) if data_file else None
        self.db_file = Path(db_file) if db_file else None
        self.keep_network = keep_network
        self.dry_run = dry_run
        self.force = force
        self.say = say or (lambda text: None)
        self.pg = pg_of(config)
        self.admin = self.pg.with_dbname("postgres")
        self.dbname = self.pg.dbname
        self.previous = f"{self.dbname}_previous"
        self.root = os.path.abspath(self.b.root)
        self.report = RestoreReport(dry_run=dry_run, data_file=str(self.data_file) if self.data_file else None,
                                    db_file=str(self.db_file) if self.db_file else None)
        self.scratch: str | None = None
        self.dump_path: str | None = None
        self.renamed = False  # asterisk -> asterisk_previous done: rollback possible
        self.had_database = False
        self.services_stopped = False
        self.dump_name: str | None = None
        self.locks_held = False  # set by restore(): the services lock is then already ours

    # --- the plan ---------------------------------------------------------
    def plan(self) -> list[tuple[str, Callable[[], Awaitable[str | None]] | None]]:
        db = self.db_file is not None
        net = ", ".join(self.b.network_tables)
        keys = " ".join(self.b.update_keys_command) if self.b.update_keys_command else None
        return [
            ("check the backup (read to the end, checksums, version)", self.check),
            ("stop the telephony services", self.stop_services if self.b.restore_services != "none" else None),
            (f"extract {self.data_file.name if self.data_file else 'data.tgz'} into {self.root}",
             self.extract_data if self.data_file else None),
            (f"rename database {self.dbname} to {self.previous}", self.rename if db else None),
            (f"pg_restore -C the dump (database {self.dbname})", self.pg_restore if db else None),
            (f"copy {net} back from {self.previous}", self.copy_network if db and self.keep_network else None),
            ("write the installation UUID (profile.d, systemd)", self.write_uuid if db else None),
            (f"run {keys}" if keys else "update the service keys", self.update_keys if db and keys else None),
            (f"drop database {self.previous}", self.drop_previous if db else None),
            ("start the telephony services", self.start_services if self.b.restore_services != "none" else None),
        ]

    # --- steps ------------------------------------------------------------
    async def check(self) -> str:
        details = []
        versions = {}
        arches = {}
        if self.data_file:
            manifest = _manifest_beside(self.data_file)
            members = MemberCheck(self.b.paths, self.b.restore_link_targets)
            scan = await asyncio.to_thread(archive.scan, str(self.data_file), on_member=members)
            if manifest and manifest.get("sha256") != scan.sha256:
                raise RestoreError(f"{self.data_file}: SHA-256 differs from its manifest: the archive is damaged")
            if members.summary():
                raise RestoreError(f"{self.data_file}: {members.count} member(s) a backup of this node cannot hold, "
                                   f"nothing restored: {members.summary()} (a member outside backup.paths is restored only once "
                                   "backup.paths names it)")
            details.append(f"{self.data_file.name}: {scan.members} members")
            if manifest:
                versions["data"] = manifest.get("wazo_version")
                arches["data"] = manifest.get("arch")
        if self.db_file:
            manifest = _manifest_beside(self.db_file)
            self.scratch = tempfile.mkdtemp(prefix="wazod-restore-", dir=self.b.restore_scratch_dir
                                            if os.path.isdir(self.b.restore_scratch_dir) else None)
            found: dict[str, str] = {}

            def extract(name: str) -> str | None:
                if name.endswith(".dump") and not found:
                    found[name] = os.path.join(self.scratch, os.path.basename(name))
                    return found[name]
                return None

            scan = await asyncio.to_thread(archive.scan, str(self.db_file), extract=extract)
            if not found:
                raise RestoreError(f"{self.db_file}: no .dump file inside")
            if manifest and manifest.get("sha256") != scan.sha256:
                raise RestoreError(f"{self.db_file}: SHA-256 differs from its manifest: the archive is damaged")
            name = next(iter(found))
            self.dump_path = found[name]
            self.dump_name = name
            await dbdump.pg_restore_list(self.dump_path)
            m = DUMP_NAME_RE.match(os.path.basename(name))
            if m and m["db"] != self.dbname:
                raise RestoreError(f"the dump is of database {m['db']!r}, backup.dsn names {self.dbname!r}")
            versions["db"] = (manifest or {}).get("wazo_version") or (m["version"] if m else None)
            arches["db"] = (manifest or {}).get("arch")
            details.append(f"{name}: pg_restore --list ok")
            if self.b.db_os_user and os.geteuid() == 0:
                pw = pwd.getpwnam(self.b.db_os_user)
                for p in (self.scratch, self.dump_path):
                    os.chown(p, pw.pw_uid, pw.pw_gid)
        here = await _current_version(self.config, self.pg)
        self.report.wazo_version = here
        for kind, v in versions.items():
            if v and v != "unknown" and here and v != here:
                msg = f"the {kind} backup is of Wazo {v}, this node runs {here}"
                if not self.force:
                    raise RestoreError(f"{msg}: backups restore only onto the same version (--force to override)",
                                       ExitCode.FAILED)
                self.report.warnings.append(msg + " (--force)")
            if v and not here:
                self.report.warnings.append(f"this node's Wazo version is unknown; the {kind} backup is of {v}")
        for kind, a in arches.items():
            if a and a != platform.machine():
                msg = f"the {kind} backup was made on {a}, this node is {platform.machine()}"
                if not self.force:
                    raise RestoreError(f"{msg} (--force to override)")
                self.report.warnings.append(msg + " (--force)")
        if self.db_file:
            exists = await self._db_exists(self.previous)
            if exists:
                if not self.force:
                    raise RestoreError(f"database {self.previous} already exists (left by an earlier restore?): "
                                       f"drop it, or use --force to drop it")
                if not self.dry_run:
                    await self.admin.psql(f"DROP DATABASE {quote_ident(self.previous)} WITH (FORCE);")
                self.report.warnings.append(f"dropped the old {self.previous} (--force)")
        return "; ".join(details)

    async def _db_exists(self, name: str) -> bool:
        return bool(await self.admin.scalar(f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(name)};"))

    async def _services(self, action: str) -> str:
        from wazod.ha import services as svc

        if self.locks_held:
            rep = await svc.run_action(self.config.ha.services, action)
        else:
            async with svc.services_lock(self.config.state_dir, wait=60):
                rep = await svc.run_action(self.config.ha.services, action)
        if not rep.ok:
            raise RestoreError(f"services {action} failed at {rep.failed_step}: {rep.error}")
        return f"{len(rep.steps)} steps ({rep.backend})"

    async def stop_services(self) -> str:
        detail = await self._services("stop")
        self.services_stopped = True
        return detail

    async def start_services(self) -> str:
        detail = await self._services("start")
        self.services_stopped = False
        return detail

    async def extract_data(self) -> str:
        argv = ["tar", "--extract", "--preserve-permissions", f"--file={self.data_file}",
                f"--directory={self.root}"]
        if self.keep_network and self.b.network_files:
            argv += ["--anchored", *[f"--exclude={p.strip('/')}" for p in self.b.network_files]]
        done = await proc.run(argv, timeout=None)
        if not done.ok:
            raise RestoreError(f"tar exited with {done.returncode}: {done.stderr_text(300)}")
        return "network files kept" if self.keep_network else "all files"

    async def rename(self) -> str:
        self.had_database = await self._db_exists(self.dbname)
        if not self.had_database:
            return f"no database {self.dbname} yet: nothing to rename"
        cur, prev = quote_ident(self.dbname), quote_ident(self.previous)
        await self.admin.psql(
            f"ALTER DATABASE {cur} ALLOW_CONNECTIONS false;\n"
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = {quote_literal(self.dbname)} AND pid <> pg_backend_pid();\n")
        for attempt in range(10):
            try:
                await self.admin.psql(f"ALTER DATABASE {cur} RENAME TO {prev};")
                break
            except proc.CommandFailed:
                if attempt == 9:
                    await self.admin.psql(f"ALTER DATABASE {cur} ALLOW_CONNECTIONS true;", check=False)
                    raise
                await asyncio.sleep(0.5)
        self.renamed = True
        await self.admin.psql(f"ALTER DATABASE {prev} ALLOW_CONNECTIONS true;")
        return f"{self.dbname} kept as {self.previous}"

    async def pg_restore(self) -> str:
        args = ["--create"] + (["--exit-on-error"] if self.b.restore_strict else []) + [self.dump_path]
        done = await self.admin.run("pg_restore", *args, check=False, timeout=None)
        if not done.ok:
            if self.b.restore_strict or not await self._db_exists(self.dbname):
                raise RestoreError(f"pg_restore exited with {done.returncode}: {done.stderr_text(400)}")
            self.report.warnings.append(f"pg_restore reported errors: {done.stderr_text(300)}")
        rows = await self.pg.scalar("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                    "WHERE c.relkind = 'r' AND n.nspname = 'public';")
        return f"{rows} tables"

    async def copy_network(self) -> str:
        if not self.renamed:
            self.report.warnings.append("no previous database: network tables come from the backup")
            return "nothing to copy (no previous database)"
        prev = self.pg.with_dbname(self.previous)
        present = []
        for table in self.b.network_tables:
            if await prev.scalar(f"SELECT to_regclass({quote_literal(table)}) IS NOT NULL;") == "t":
                present.append(table)
        if not present:
            return "none of the tables exists in the previous database"
        tables = [a for t in present for a in ("-t", t)]
        dumped = await prev.run("pg_dump", "--clean", "--if-exists", *tables)
        done = await self.pg.run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-",
                                 input=dumped.stdout, check=False)
        if not done.ok:
            raise RestoreError(f"copying {', '.join(present)} failed: {done.stderr_text(300)}")
        return ", ".join(present)

    async def write_uuid(self) -> str:
        uuid = await self.pg.scalar("SELECT uuid FROM infos LIMIT 1;")
        if not uuid or not UUID_RE.match(uuid):
            raise RestoreError(f"no valid installation UUID in infos (got {uuid!r})")
        profile = Path(self.root) / self.b.uuid_profile_path.lstrip("/")
        atomic_write_text(profile, f"export XIVO_UUID={uuid}\n", mode=0o644)
        written = [str(profile)]
        if self.b.systemd_conf_path:
            conf = Path(self.root) / self.b.systemd_conf_path.lstrip("/")
            try:
                text = conf.read_text()
                mode = conf.stat().st_mode & 0o7777
            except FileNotFoundError:
                text, mode = "", 0o644
            atomic_write_text(conf, set_default_environment(text, "XIVO_UUID", uuid), mode=mode)
            written.append(str(conf))
        for argv in self.b.uuid_apply_commands:
            await proc.run([a.replace("{uuid}", uuid) for a in argv], check=True, timeout=120)
        return f"XIVO_UUID={uuid} in {', '.join(written)}"

    async def update_keys(self) -> str:
        done = await proc.run(list(self.b.update_keys_command), timeout=600)
        if not done.ok:
            raise RestoreError(f"{self.b.update_keys_command[0]} exited with {done.returncode}: {done.stderr_text(300)}")
        return "ok"

    async def drop_previous(self) -> str:
        if not self.renamed:
            return "no previous database"
        await self.admin.psql(f"DROP DATABASE {quote_ident(self.previous)} WITH (FORCE);")
        self.renamed = False  # from here on, nothing to roll back to
        return "dropped"

    # --- rollback ---------------------------------------------------------
    async def rollback(self) -> None:
        if self.renamed:
            await self.admin.psql(f"DROP DATABASE IF EXISTS {quote_ident(self.dbname)} WITH (FORCE);")
            await self.admin.psql(f"ALTER DATABASE {quote_ident(self.previous)} RENAME TO {quote_ident(self.dbname)};")
            self.renamed = False
            self.report.rolled_back = True
        elif self.db_file and not self.had_database and self.report.stopped_at and self.report.stopped_at >= 5:
            await self.admin.psql(f"DROP DATABASE IF EXISTS {quote_ident(self.dbname)} WITH (FORCE);")
            self.report.rolled_back = True
        if self.services_stopped:
            await self.start_services()

    # --- driver -----------------------------------------------------------
    async def run(self) -> RestoreReport:
        plan = self.plan()
        total = len(plan)
        try:
            for number, (title, action) in enumerate(plan, 1):
                rec = StepRecord(number, title)
                self.report.steps.append(rec)
                if action is None:
                    rec.status = "skipped"
                    self.say(f"step {number}/{total}: {title}: skipped")
                    continue
                if self.dry_run and number > 1:
                    rec.status = "planned"
                    self.say(f"step {number}/{total}: {title}")
                    continue
                self.say(f"step {number}/{total}: {title} ...")
                t0 = time.monotonic()
                try:
                    rec.detail = await action()
                except Exception as e:  # whatever breaks a step, the database goes back to where it was
                    rec.status = "failed"
                    rec.duration = time.monotonic() - t0
                    self.report.stopped_at = number
                    known = (WazodError, ArchiveError, DumpError, proc.CommandFailed, OSError, TimeoutError)
                    if isinstance(e, FileNotFoundError) and e.filename:
                        self.report.error = f"cannot run {e.filename}: {e.strerror}"
                    else:
                        self.report.error = str(e) if isinstance(e, known) else f"{type(e).__name__}: {e}"
                    self.say(f"  failed: {self.report.error}")
                    await self._after_failure(number, title)
                    return self.report
                except asyncio.CancelledError:
                    rec.status = "failed"
                    self.report.stopped_at = number
                    self.report.error = "interrupted"
                    await asyncio.shield(self._after_failure(number, title))
                    raise
                rec.status = "ok"
                rec.duration = time.monotonic() - t0
                self.say(f"  ok{': ' + rec.detail if rec.detail else ''} ({rec.duration:.1f} s)")
            self.report.ok = True
            return self.report
        finally:
            if self.scratch:
                shutil.rmtree(self.scratch, ignore_errors=True)

    async def _after_failure(self, number: int, title: str) -> None:
        try:
            await self.rollback()
        except Exception as e:  # the database is then left for the administrator, said loudly
            self.report.rollback_error = str(e)
        if self.report.rolled_back:
            self.say(f"restore stopped at step {number} ({title}); database {self.dbname} rolled back")
        elif self.report.rollback_error:
            self.say(f"restore stopped at step {number} ({title}); ROLLBACK FAILED: {self.report.rollback_error}")
        else:
            self.say(f"restore stopped at step {number} ({title})")


def set_default_environment(text: str, key: str, value: str) -> str:
    """Set ``key=value`` in systemd's ``DefaultEnvironment=`` of the [Manager] section, keeping the rest."""
    lines = text.splitlines()
    section = None
    manager_at = None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s
            if s == "[Manager]":
                manager_at = i
            continue
        if section == "[Manager]" and s.startswith("DefaultEnvironment="):
            items = [a for a in shlex.split(s.split("=", 1)[1]) if not a.startswith(f"{key}=")]
            items.append(f"{key}={value}")
            lines[i] = "DefaultEnvironment=" + " ".join(f'"{a}"' for a in items)
            return "\n".join(lines) + "\n"
    new = f'DefaultEnvironment="{key}={value}"'
    if manager_at is None:
        lines += (["", "[Manager]"] if lines else ["[Manager]"]) + [new]
    else:
        lines.insert(manager_at + 1, new)
    return "\n".join(lines) + "\n"


def default_files(config, data: str | None, db: str | None) -> tuple[str | None, str | None]:
    """No file named: the newest set in backup.dir (both parts); one named: only that part."""
    if data is None and db is None:
        d = Path(config.backup.dir)
        data, db = str(d / "data.tgz"), str(d / "db.tgz")
        for p in (data, db):
            if not Path(p).is_file():
                raise RestoreError(f"{p}: no such backup (name one with --data/--db)", ExitCode.USAGE)
    for p in (data, db):
        if p is not None and not Path(p).is_file():
            raise RestoreError(f"{p}: no such file", ExitCode.USAGE)
    return data, db


async def restore(config, *, data_file: str | None = None, db_file: str | None = None, keep_network: bool = True,
                  dry_run: bool = False, force: bool = False, say=None) -> RestoreReport:
    """Restore under every lock of ``RESTORE_LOCKS`` (LockHeld, exit 3, when one is busy)."""
    run = Restore(config, data_file=data_file, db_file=db_file, keep_network=keep_network,
                  dry_run=dry_run, force=force, say=say)
    locks = ("restore", "backup") if dry_run else RESTORE_LOCKS  # a dry run changes nothing
    try:
        async with holding(config.state_dir, locks, wait=LOCK_WAIT):
            sets.finish_interrupted(config.backup.dir)  # never read half of an interrupted installation
            run.locks_held = True
            return await run.run()
    except LockHeld as e:
        if run.locks_held:
            raise
        raise LockHeld(f"{e}: a restore runs alone (no job, takeover or failback meanwhile); "
                       "try again once it has finished") from None
