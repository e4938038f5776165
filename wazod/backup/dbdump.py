"""The database dump: ``pg_dump -Fc`` as Wazo makes it, plus row counts from the same snapshot.

A psql session opens a REPEATABLE READ transaction and exports its snapshot;
pg_dump runs with ``--snapshot`` on it while the session counts every table's
rows. The counts therefore describe exactly the data in the dump, and
``backup verify --deep`` can prove a restore gives the same rows back.
The dump is written by pg_dump into a file wazod opened (seekable, so the
archive has its data offsets, as with Wazo's ``> file`` redirection) even when
pg_dump runs as the postgres system user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field

from wazod import proc
from wazod.backup.pgtools import Pg
from wazod.logsetup import get_logger

log = get_logger("backup")

END_MARK = "__wazod_end_of_counts__"

COUNT_SQL = rf"""SELECT format('SELECT %L, count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_%' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1 \gexec
\echo {END_MARK}
"""

# Read infos.wazo_version without failing when the table does not exist.
VERSION_SQL = (
    "SELECT (xpath('/row/v/text()', query_to_xml('SELECT wazo_version AS v FROM infos LIMIT 1', false, true, '')))[1]"
    "::text WHERE to_regclass('infos') IS NOT NULL;"
)


class DumpError(Exception):
    pass


@dataclass
class Dump:
    version: str | None
    path: str
    size: int = 0
    counts: dict[str, int | None] = field(default_factory=dict)


def parse_counts(lines: list[str], excluded: list[str]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for line in lines:
        if "|" not in line:
            continue
        name, _, value = line.rpartition("|")
        table = name.split(".", 1)[-1]
        counts[name] = None if table in excluded else int(value)
    return counts


async def database_size(pg: Pg) -> int:
    out = await pg.scalar("SELECT pg_database_size(current_database());")
    return int(out or 0)


async def read_version(pg: Pg) -> str | None:
    return await pg.scalar(VERSION_SQL)


async def _readline(stream: asyncio.StreamReader, what: str) -> str:
    line = await stream.readline()
    if not line:
        raise DumpError(f"psql ended while reading {what}")
    return line.decode(errors="replace").rstrip("\n")


async def dump(pg: Pg, workdir: str, *, exclude_table_data: list[str], count_rows: bool,
               fallback_version: str | None, low_priority: bool = True, compress_level: int | None = None) -> Dump:
    """Dump ``pg`` into ``workdir/asterisk-<version>.dump`` (the caller chooses workdir, e.g. pg-backupd)."""
    with pg.child_env() as env:
        return await _dump(pg, env, workdir, exclude_table_data=exclude_table_data, count_rows=count_rows,
                           fallback_version=fallback_version, low_priority=low_priority,
                           compress_level=compress_level)


async def _dump(pg: Pg, env: dict[str, str], workdir: str, *, exclude_table_data: list[str], count_rows: bool,
                fallback_version: str | None, low_priority: bool, compress_level: int | None) -> Dump:
    excl = [f"--exclude-table-data={t}" for t in exclude_table_data]
    session = None
    try:
        snapshot = None
        counts: dict[str, int | None] = {}
        if count_rows:
            session = await asyncio.create_subprocess_exec(
                *pg.argv("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=env, cwd="/", start_new_session=True)
            assert session.stdin and session.stdout
            session.stdin.write(
                f"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n"
                f"{VERSION_SQL}\n\\echo {END_MARK}\n".encode())
            await session.stdin.drain()
            try:
                snapshot = await _readline(session.stdout, "the snapshot")
                version_lines = []
                while (line := await _readline(session.stdout, "the version")) != END_MARK:
                    version_lines.append(line)
            except DumpError:
                err = (await session.stderr.read()).decode(errors="replace").strip() if session.stderr else ""
                raise DumpError(f"cannot open a session on the database: {err[-400:] or 'psql failed'}") from None
            version = (version_lines[0].strip() if version_lines and version_lines[0].strip() else None)
        else:
            version = await read_version(pg)
        version = version or fallback_version or "unknown"
        dbname = pg.dbname
        path = os.path.join(workdir, f"{dbname}-{version}.dump")
        argv = ["-Fc", *excl] + ([f"--snapshot={snapshot}"] if snapshot else [])
        if compress_level is not None:
            argv.append(f"--compress={compress_level}")
        out_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            dump_task = asyncio.create_task(pg.run("pg_dump", *argv, stdout=out_fd, low_priority=low_priority,
                                                   check=False))
            try:
                if session is not None:
                    assert session.stdin and session.stdout
                    session.stdin.write(COUNT_SQL.encode())
                    await session.stdin.drain()
                    lines = []
                    while (line := await _readline(session.stdout, "row counts")) != END_MARK:
                        lines.append(line)
                    counts = parse_counts(lines, exclude_table_data)
                done = await dump_task
            except BaseException:
                dump_task.cancel()  # proc.run kills pg_dump's process group
                with contextlib.suppress(BaseException):
                    await dump_task
                raise
            os.fsync(out_fd)
        finally:
            os.close(out_fd)
        if not done.ok:
            raise DumpError(f"pg_dump exited with {done.returncode}: {done.stderr_text(400)}")
        if session is not None:
            assert session.stdin
            session.stdin.write(b"COMMIT;\n\\q\n")
            await session.stdin.drain()
            session.stdin.close()
            await asyncio.wait_for(session.wait(), 60)
        return Dump(version, path, os.path.getsize(path), counts)
    finally:
        if session is not None and session.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session.pid, 15)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.wait(), 5)


async def pg_restore_list(dump_path: str) -> list[str]:
    """``pg_restore --list``: the dump's table of contents (no server needed). Raises DumpError."""
    done = await proc.run(["pg_restore", "--list", dump_path], timeout=600)
    if not done.ok:
        raise DumpError(f"pg_restore --list failed on {os.path.basename(dump_path)}: {done.stderr_text(300)}")
    return done.stdout.decode(errors="replace").splitlines()


def toc_tables_with_data(toc: list[str]) -> set[str]:
    """'schema.table' for each TABLE DATA entry of a pg_restore --list output."""
    tables = set()
    for line in toc:
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        # "<id>; <oid> <oid> TABLE DATA <schema> <name> <owner>"
        rest = line.split(" TABLE DATA ", 1)[1].split()
        if len(rest) >= 2:
            tables.add(f"{rest[0]}.{rest[1]}")
    return tables
