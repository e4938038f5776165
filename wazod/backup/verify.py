"""``wazod backup verify``: is the newest set restorable, really?

Each archive is read to its end (gzip CRC and length, every tar header), its
SHA-256 and member count compared with the manifest, and the dump copied out
and listed by ``pg_restore --list`` (every table whose rows were saved must
have its data in the dump). ``--deep`` goes further: the dump is restored into
a throw-away database and each table's row count compared with the counts the
backup read in pg_dump's own snapshot. Archives made by Wazo's own script (no
manifest) are still read and listed; only the checksum comparison is missing.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from wazod.backup import archive, dbdump, sets
from wazod.backup.archive import ArchiveError
from wazod.backup.dbdump import COUNT_SQL, END_MARK, DumpError
from wazod.backup.pgtools import quote_ident


async def _check(path: Path, manifest: dict | None, kind: str, scratch: str) -> tuple[dict, str | None]:
    """One archive: returns its report entry and, for db, the path of the dump copied out."""
    entry: dict = {"kind": kind, "archive": path.name, "ok": True, "problems": [], "checks": []}
    if not path.exists():
        entry["ok"] = False
        entry["problems"].append(f"{path.name} is missing")
        return entry, None
    if manifest is None:
        entry["checks"].append("no manifest (made by Wazo's own script?): checksum not compared")
    want_dump = (manifest or {}).get("dump")
    dump_dest: dict[str, str] = {}

    def extract(name: str) -> str | None:
        if kind != "db":
            return None
        if (want_dump and name == want_dump) or (not want_dump and name.endswith(".dump") and not dump_dest):
            dump_dest[name] = os.path.join(scratch, os.path.basename(name))
            return dump_dest[name]
        return None

    try:
        scan = await asyncio.to_thread(archive.scan, str(path), extract=extract)
    except ArchiveError as e:
        entry["ok"] = False
        entry["problems"].append(str(e))
        return entry, None
    entry.update(sha256=scan.sha256, size=scan.size, members=scan.members)
    entry["checks"].append("gzip stream and tar headers read to the end")
    if manifest:
        if scan.sha256 != manifest.get("sha256"):
            entry["problems"].append("SHA-256 differs from the manifest")
        else:
            entry["checks"].append("SHA-256 matches the manifest")
        if manifest.get("members") is not None and scan.members != manifest["members"]:
            entry["problems"].append(f"{scan.members} members, the manifest says {manifest['members']}")
    dump_path = None
    if kind == "db":
        if not scan.extracted:
            entry["problems"].append("no .dump file inside")
        else:
            name, digest = next(iter(scan.extracted.items()))
            dump_path = dump_dest[name]
            entry["dump"] = name
            if manifest and manifest.get("dump_sha256") and digest != manifest["dump_sha256"]:
                entry["problems"].append(f"{name}: SHA-256 differs from the manifest")
            try:
                toc = await dbdump.pg_restore_list(dump_path)
            except DumpError as e:
                entry["problems"].append(str(e))
            else:
                with_data = dbdump.toc_tables_with_data(toc)
                entry["checks"].append(f"pg_restore --list: {len(toc)} entries, {len(with_data)} tables with data")
                expected = [t for t, c in ((manifest or {}).get("row_counts") or {}).items() if c is not None]
                missing = [t for t in expected if t not in with_data]
                if missing:
                    entry["problems"].append(f"dump lacks the data of {', '.join(missing[:10])}")
    entry["ok"] = not entry["problems"]
    return entry, dump_path


async def _deep(config, dump_path: str, manifest: dict | None) -> dict:
    """Restore the dump into a scratch database, count rows, compare, drop the database."""
    from wazod.backup import pg_of

    b = config.backup
    base = pg_of(config, b.scratch_dsn or b.dsn)
    name = f"wazod_verify_{os.getpid()}"
    admin = base.with_dbname("postgres")
    scratch = base.with_dbname(name)
    result: dict = {"database": name, "ok": False, "problems": []}
    if b.db_os_user and os.geteuid() == 0:
        pw = pwd.getpwnam(b.db_os_user)
        os.chown(dump_path, pw.pw_uid, pw.pw_gid)
        os.chown(os.path.dirname(dump_path), pw.pw_uid, pw.pw_gid)
    await admin.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)};\nCREATE DATABASE {quote_ident(name)};")
    try:
        done = await scratch.run("pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", dump_path,
                                 check=False, low_priority=True)
        if not done.ok:
            result["problems"].append(f"pg_restore into a scratch database failed: {done.stderr_text(400)}")
            return result
        lines = [line for line in (await scratch.psql(COUNT_SQL)).splitlines() if line != END_MARK]
        counts = dbdump.parse_counts(lines, b.exclude_table_data)
        result["tables"] = len(counts)
        expected = (manifest or {}).get("row_counts") or {}
        if not expected:
            result["problems"].append("no row counts in the manifest: restored, but nothing to compare with")
        diffs = [f"{t}: {counts.get(t)} restored, {c} saved" for t, c in expected.items()
                 if c is not None and counts.get(t) != c]
        result["problems"] += diffs[:20]
        result["rows"] = sum(c for c in counts.values() if c)
        result["ok"] = not result["problems"]
        return result
    finally:
        await admin.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE);", check=False)


async def verify(config, directory: str | None = None, *, deep: bool = False, generation: int = 0) -> dict:
    """Check the set of ``generation`` (0: the newest) in ``directory`` (default backup.dir)."""
    d = Path(directory or config.backup.dir)
    report: dict = {"dir": str(d), "generation": generation, "archives": [], "ok": True}
    scratch = tempfile.mkdtemp(prefix="wazod-verify-", dir=config.backup.restore_scratch_dir
                               if os.path.isdir(config.backup.restore_scratch_dir) else None)
    try:
        dump_path = db_manifest = None
        for kind in sets.KINDS:
            manifest = sets.read_manifest(d, kind, generation)
            entry, dp = await _check(d / sets.archive_name(kind, generation), manifest, kind, scratch)
            report["archives"].append(entry)
            if kind == "db":
                dump_path, db_manifest = dp, manifest
        if deep:
            if dump_path is None:
                report["deep"] = {"ok": False, "problems": ["no readable dump to restore"]}
            else:
                try:
                    report["deep"] = await _deep(config, dump_path, db_manifest)
                except Exception as e:  # server unreachable and the like
                    report["deep"] = {"ok": False, "problems": [f"{type(e).__name__}: {e}"]}
        report["ok"] = all(a["ok"] for a in report["archives"]) and report.get("deep", {"ok": True})["ok"]
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["verify", "ArchiveError"]
