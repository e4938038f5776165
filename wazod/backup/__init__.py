"""The daily backup: ``data.tgz`` and ``db.tgz`` exactly as Wazo makes them, but trusted.

Entry points:
- ``run(config, what="all", progress=None) -> JobResult`` (the ``backup`` job, via ``wazod.jobs.run_job``);
- ``verify(config, directory=None, deep=False) -> dict`` (``wazod backup verify``);
- ``needs_initial_backup(config) -> bool``: the scheduler's start-up check (Wazo's logrotate
  scheme made no backup at all on a fresh install).

A run: select the files (nothing skipped silently), check free space against an
estimate, write each archive under a temporary name (tar | pigz, fsync), read it
back (gzip CRC, every tar header, SHA-256, ``pg_restore --list``), and only then
rotate the old generations and rename the new set into place. A failure or a
SIGTERM at any point removes the temporaries and leaves every existing set as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import platform
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from wazod.backup import archive, dbdump, sets, tree
from wazod.backup.archive import ArchiveError
from wazod.backup.dbdump import DumpError
from wazod.backup.pgtools import Pg
from wazod.errors import ExitCode, WazodError
from wazod.fsutil import atomic_write_json
from wazod.jobs import JobResult
from wazod.logsetup import get_logger

log = get_logger("backup")

WHATS = ("data", "db", "all")
DB_COMPRESS_LEVEL = 1  # the dump inside is already compressed by pg_dump: gzip only wraps it


class BackupFailed(WazodError):
    pass


def needs_initial_backup(config) -> bool:
    """True when ``backup.dir`` lacks data.tgz or db.tgz, or holds a set whose installation a crash
    interrupted: the daemon then runs a backup at start-up (which completes that set first)."""
    d = Path(config.backup.dir)
    if sets.interrupted_installs(d):
        return True
    return not ((d / "data.tgz").is_file() and (d / "db.tgz").is_file())


def pg_of(config, dsn: str | None = None) -> Pg:
    return Pg.from_dsn(dsn or config.backup.dsn, config.backup.db_os_user)


def _version_from_file(config) -> str | None:
    path = Path(config.backup.root) / config.backup.version_file.lstrip("/")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _tmp_archive(config, kind: str) -> str:
    return os.path.join(config.backup.dir, f"{sets.TMP_PREFIX}{kind}.tgz.{os.getpid()}")


def _write_list(path: str, members: list[str]) -> None:
    with open(path, "wb") as f:
        for m in members:
            f.write(os.fsencode(m) + b"\0")


async def _make_data(config, work: str, selection: tree.Selection, progress) -> tuple[str, dict]:
    b = config.backup
    list_file = os.path.join(work, "members")
    _write_list(list_file, selection.members)
    out = _tmp_archive(config, "data")
    compressor = archive.compressor_argv(b.use_pigz, b.compress_level)
    if progress:
        progress("data", 0, selection.bytes)
    written, scan = await _write_and_read_back(out, None, archive.write_tgz(
        root=os.path.abspath(b.root), list_file=list_file, out_path=out, compressor=compressor,
        total_bytes=selection.bytes, progress=progress, phase="data"))
    # a file deleted (or made unreadable) between the walk and tar: said, not hidden
    for path, why in written.missing:
        selection.skipped.append(tree.Skipped(path, f"vanished or unreadable during the backup ({why})", 1, 0))
    manifest = {
        "format": 1, "kind": "data", "archive": "data.tgz", "created": _now(), "node": config.node_name,
        "arch": platform.machine(),
        "root": os.path.abspath(b.root), "sha256": None, "size": written.size,
        "members": len(selection.members) - len(written.missing), "files": selection.files,
        "bytes": selection.bytes,
        "compressor": compressor[0], "wazo_version": _version_from_file(config),
        "skipped": [s.to_dict() for s in selection.skipped], "skipped_count": len(selection.skipped),
        "skipped_files": selection.skipped_files, "skipped_bytes": selection.skipped_bytes,
        "warnings": written.warnings[-50:], "followed_links": selection.followed,
    }
    _check_read_back("data", scan, written, manifest)
    return out, manifest


async def _make_db(config, work: str, progress) -> tuple[str, dict, str]:
    b = config.backup
    pg = pg_of(config)
    dump_dir = os.path.join(work, b.db_dir_name)
    os.mkdir(dump_dir)
    os.chmod(dump_dir, 0o755)
    if progress:
        progress("db", 0, None)
    d = await dbdump.dump(pg, dump_dir, exclude_table_data=b.exclude_table_data, count_rows=b.count_rows,
                          fallback_version=_version_from_file(config), compress_level=b.db_compress_level)
    # as Wazo's (root's shell redirect): readable, so the guide's "sudo -u postgres pg_restore" works
    os.chmod(d.path, 0o644)
    rel_dump = f"{b.db_dir_name}/{os.path.basename(d.path)}"
    list_file = os.path.join(work, "db-members")
    _write_list(list_file, [b.db_dir_name, rel_dump])
    out = _tmp_archive(config, "db")
    # a dump compressed by pg_dump is only wrapped (gzip -1); an uncompressed one (-Z0) is compressed here, in parallel
    level = b.compress_level if b.db_compress_level == 0 else DB_COMPRESS_LEVEL
    compressor = archive.compressor_argv(b.use_pigz, level)
    # the dump's table of contents and checksum are read while it is wrapped and read back
    toc, dump_sha, (written, scan) = await _all(
        dbdump.pg_restore_list(d.path),
        asyncio.to_thread(_sha256_file, d.path),
        _write_and_read_back(out, rel_dump, archive.write_tgz(
            root=work, list_file=list_file, out_path=out, compressor=compressor, total_bytes=d.size,
            progress=progress, phase="db")),
    )
    manifest = {
        "format": 1, "kind": "db", "archive": "db.tgz", "created": _now(), "node": config.node_name,
        "arch": platform.machine(),
        "sha256": None, "size": written.size, "members": 2, "dump": rel_dump,
        "dump_sha256": dump_sha, "dump_size": d.size, "database": pg.dbname, "wazo_version": d.version,
        "excluded_table_data": list(b.exclude_table_data), "row_counts": d.counts,
        "toc_tables_with_data": len(dbdump.toc_tables_with_data(toc)),
    }
    _check_read_back("db", scan, written, manifest)
    return out, manifest, d.path


async def _all(*aws):
    """Like gather, but the first failure cancels (and waits for) the others: no writer outlives the run."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(archive.CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _estimate(config, kind: str, raw: int) -> int:
    prev = Path(config.backup.dir) / sets.archive_name(kind)
    prev_size = prev.stat().st_size if prev.exists() else 0
    if kind == "data":
        return max(prev_size, int(raw * config.backup.space_estimate_ratio))
    return max(prev_size, raw)


async def run(config, *, what: str = "all", progress=None) -> JobResult:
    """The ``backup`` job. ``what``: data, db or all. ``progress(phase, done, total)`` is called on the way."""
    if what not in WHATS:
        raise WazodError(f"backup: unknown kind {what!r} (expected data, db or all)", ExitCode.USAGE)
    b = config.backup
    kinds = ["data", "db"] if what == "all" else [what]
    directory = Path(b.dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return JobResult("backup", "failed", {"what": what, "dir": b.dir},
                         error=f"cannot create {b.dir}: {e.strerror}")
    sets.finish_interrupted(directory)  # a set a crash left half-installed is completed first
    sets.remove_stale_temporaries(directory)
    work = tempfile.mkdtemp(prefix=f"{sets.TMP_PREFIX}work-", dir=directory)
    data: dict = {"what": what, "dir": str(directory)}
    try:
        selection = None
        need = 0
        if "data" in kinds:
            if not Path(b.root).is_dir():
                raise BackupFailed(f"backup.root {b.root} is not a directory")
            selection = await asyncio.to_thread(tree.select, b)
            need += _estimate(config, "data", selection.bytes)
        if "db" in kinds:
            try:
                db_size = await dbdump.database_size(pg_of(config))
            except Exception as e:
                raise BackupFailed(f"database {pg_of(config).dbname} unreachable: {e}") from None
            need += 2 * _estimate(config, "db", db_size // 4)  # the dump, then its archive
        free = sets.free_bytes(directory)
        data["estimated_bytes"] = need
        if need > free:
            raise BackupFailed(f"not enough free space in {directory}: about {sets.human(need)} needed, "
                               f"{sets.human(free)} free; existing backups left untouched")
        made: dict[str, tuple[str, dict]] = {}
        if selection is not None:
            out, manifest = await _make_data(config, work, selection, progress)
            made["data"] = (out, manifest)
        if "db" in kinds:
            out, manifest, dump_path = await _make_db(config, work, progress)
            made["db"] = (out, manifest)
        # both archives were read back (and checked) before anything old is touched
        staged: dict[str, tuple[str, str]] = {}
        set_id = uuid.uuid4().hex  # the same in data's and db's manifests: they were made together
        for kind, (out, manifest) in made.items():
            manifest["set_id"] = set_id
            sets.set_permissions(out, b.group)
            mpath = os.path.join(work, sets.manifest_name(kind))
            atomic_write_json(mpath, manifest, mode=0o640)
            sets.set_permissions(mpath, b.group)
            staged[kind] = (out, mpath)
        removed = sets.install_set(directory, staged, b.keep)  # data and db: one unit
        for kind, (_out, manifest) in made.items():
            data[kind] = {k: manifest[k] for k in ("archive", "sha256", "size", "members")}
            if kind == "data":
                data[kind].update(files=manifest["files"], bytes=manifest["bytes"])
            else:
                data[kind].update(dump=manifest["dump"], wazo_version=manifest["wazo_version"])
        if selection is not None:
            data["skipped_count"] = len(selection.skipped)  # not "skipped": that flags a skipped job
            data["skipped_files"] = selection.skipped_files
            data["skipped_bytes"] = selection.skipped_bytes
            data["skipped_paths"] = [s.path for s in selection.skipped][:20]
            if selection.followed:
                data["followed_links"] = selection.followed
        data["rotated_out"] = removed
        return JobResult("backup", "ok", data)
    except (BackupFailed, ArchiveError, DumpError) as e:
        return JobResult("backup", "failed", data, error=str(e))
    except OSError as e:
        return JobResult("backup", "failed", data, error=f"{e.filename or directory}: {e.strerror}")
    finally:
        for kind in sets.KINDS:  # a temporary archive, complete or not, never outlives the run
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_tmp_archive(config, kind))
        shutil.rmtree(work, ignore_errors=True)


def _read_back(path: str, want_dump: str | None, follow: threading.Event) -> archive.Scan | ArchiveError:
    try:
        return archive.scan(path, extract=lambda name: "/dev/null" if name == want_dump else None, follow=follow)
    except ArchiveError as e:
        return e


async def _write_and_read_back(out: str, want_dump: str | None, write) -> tuple[archive.Written, object]:
    """Run the writer while a thread reads the growing file back (the check overlaps the compression)."""
    follow = threading.Event()
    reader = asyncio.ensure_future(asyncio.to_thread(_read_back, out, want_dump, follow))
    try:
        written = await write
    except BaseException:
        follow.set()  # the reader stops at the end of what was written; wait for it, then report the failure
        with contextlib.suppress(BaseException):
            await asyncio.shield(reader)
        raise
    follow.set()
    return written, await reader


def _check_read_back(kind: str, scan, written: archive.Written, manifest: dict) -> None:
    """Compare what was read back with what was written; record the SHA-256. Raises BackupFailed."""
    if isinstance(scan, ArchiveError):
        raise BackupFailed(f"the new {kind}.tgz failed verification: {scan}")
    manifest["sha256"] = scan.sha256
    problems: list[str] = []
    if scan.size != written.size:
        problems.append(f"{scan.size} bytes read back, {written.size} written")
    if scan.members != manifest.get("members"):
        problems.append(f"{scan.members} members read back, {manifest.get('members')} written")
    want_dump = manifest.get("dump")
    if want_dump:
        got = scan.extracted.get(want_dump)
        if got is None:
            problems.append(f"{want_dump} is missing")
        elif got != manifest.get("dump_sha256"):
            problems.append(f"{want_dump}: content differs from the dump written")
    if problems:
        raise BackupFailed(f"the new {kind}.tgz failed verification: {'; '.join(problems)}")


from wazod.backup.verify import verify  # noqa: E402  (uses the helpers above)

__all__ = ["run", "verify", "needs_initial_backup", "WHATS"]
