"""Master to slave file sync (the old ``wazo-sync``), and the slave's copy-back on failback.

* ``run(config, dry_run=False) -> JobResult`` (job ``sync``, master only):
  ``rsync -aR --delete-after`` of ``sync.paths`` over ssh to ``sync.remote_root``
  on the slave, as Wazo does, but with the other node's host key verified,
  missing paths skipped, and a result that says what moved (``--stats``) or,
  on failure, what rsync's exit code means.
* ``init_keys(config) -> InitResult`` (``wazod sync --init``, on either node):
  creates the key as ``xivo-sync -i`` does, records the other node's host
  key, installs the key there (asking for the password on a terminal).
* ``copy_back(config, timeout=None) -> CopyBackResult`` (HA failback, on the
  slave): what was recorded on the slave while it held the services
  (voicemail, recordings, custom sounds) goes back to the master with
  ``--update`` (a newer master file is never overwritten) and without any
  deletion; a master file that an older slave copy would replace is kept
  beside it (``--backup``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict, dataclass, field

from wazod import proc
from wazod.errors import WazodError
from wazod.jobs import JobResult
from wazod.logsetup import get_logger
from wazod.secrets import mask_text
from wazod.sync.keys import InitResult, init_keys
from wazod.sync.rsync import destination, exit_code_words, expand, parse_stats
from wazod.sync.ssh import explain_ssh_failure, preflight, remote_host, rsync_rsh

log = get_logger("sync")

OK_CODES = (0, 24)  # 24: files vanished while being copied (a live spool); reported, not a failure

__all__ = ["run", "run_changed", "copy_back", "init_keys", "CopyBackResult", "InitResult"]


@dataclass
class CopyBackResult:
    ok: bool
    files: int = 0
    bytes: int = 0
    error: str | None = None
    paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Transfer:
    ok: bool
    stats: dict[str, int]
    returncode: int | None
    error: str | None
    warning: str | None = None


async def _rsync(config, host: str, options: list[str], sources: list[str], timeout: float) -> _Transfer:
    sc = config.sync
    argv = ["rsync", *options, "--stats", "-e", rsync_rsh(config), *sources,
            destination(sc.remote_user, host, sc.remote_root)]
    try:
        done = await proc.run(argv, timeout=timeout)
    except TimeoutError:
        return _Transfer(False, {}, None, f"rsync did not finish within {timeout:g} s and was stopped")
    except FileNotFoundError:
        return _Transfer(False, {}, None, "rsync is not installed (apt-get install rsync)")
    stats = parse_stats(done.stdout.decode(errors="replace"))
    stderr = done.stderr.decode(errors="replace")
    if done.returncode in OK_CODES:
        warning = f"rsync: {exit_code_words(24)}" if done.returncode == 24 else None
        return _Transfer(True, stats, done.returncode, None, warning)
    words = exit_code_words(done.returncode)
    why = explain_ssh_failure(stderr, config, host)  # rsync may report 12 when ssh died first
    detail = why or mask_text(stderr.strip()[-500:])
    error = f"rsync exited with {done.returncode} ({words})" + (f": {detail}" if detail else "")
    return _Transfer(False, stats, done.returncode, error)


def _ready(config) -> tuple[str | None, str | None]:
    """(the other node's host, None), or (None, why a sync cannot start): the checks every copy to the slave makes."""
    try:
        host = remote_host(config)
    except WazodError as e:
        return None, str(e)
    return host, preflight(config) or None


def _fold(data: dict, t: _Transfer) -> JobResult | None:
    """Put an rsync's counts into ``data``; the failed result when it failed, else None."""
    data.update({k: t.stats.get(k, 0) for k in ("files", "bytes", "deleted")})
    if t.warning:
        data["warning"] = t.warning
    if not t.ok:
        data["rsync_exit_code"] = t.returncode
        return JobResult("sync", "failed", data=data, error=t.error)
    return None


async def run(config, *, dry_run: bool = False) -> JobResult:
    sc = config.sync
    host, problem = _ready(config)
    if problem:
        return JobResult("sync", "failed", error=problem)
    src = expand(sc.paths, sc.local_root, sc.glob_exclude)
    data = {"files": 0, "bytes": 0, "deleted": 0, "paths": len(src.args),
            "skipped_paths": src.missing, "excluded_paths": src.excluded}
    if not src.args:
        data["note"] = "none of sync.paths exists on this node"
        return JobResult("sync", "ok", data=data)
    options = ["-aR", "--delete-after"] + (["--dry-run"] if dry_run else [])
    failed = _fold(data, await _rsync(config, host, options, src.args, sc.timeout))
    if failed:
        return failed
    log.info("synced", files=data["files"], bytes=data["bytes"], deleted=data["deleted"], dry_run=dry_run)
    return JobResult("sync", "ok", data=data)


async def run_changed(config, *, dirs: list[str], first_change: float | None = None) -> JobResult:
    """Copy only ``dirs`` (paths relative to ``sync.local_root``), each recursively, with Wazo's options.

    The continuous sync's copy: ``rsync -aR --delete-after`` of the changed
    directories alone, so a file created, changed, renamed or deleted under a
    synced path ends as the hourly full rsync would leave it, without
    walking the other paths. ``first_change`` (time.time() of the first
    change seen) gives the result its ``lag_s``.
    """
    sc = config.sync
    host, problem = _ready(config)
    if problem:
        return JobResult("sync", "failed", error=problem)
    root = os.path.abspath(sc.local_root).rstrip("/")
    args = [f"{root}/./{d.strip('/')}" for d in sorted(set(dirs)) if os.path.lexists(os.path.join(root, d.strip("/")))]
    data = {"files": 0, "bytes": 0, "deleted": 0, "paths": len(args), "changed_paths": sorted(set(dirs))[:50],
            "trigger": "continuous"}
    if args:
        failed = _fold(data, await _rsync(config, host, ["-aR", "--delete-after"], args, sc.timeout))
        if failed:
            return failed
    if first_change is not None:
        data["lag_s"] = round(time.time() - first_change, 3)
    log.info("synced changes", files=data["files"], deleted=data["deleted"], paths=len(args))
    return JobResult("sync", "ok", data=data)


async def copy_back(config, timeout: float | None = None) -> CopyBackResult:
    """On the slave, before giving the services back: new files go to the master, nothing is lost.

    Never raises for transfer problems: the failback decides what to do with ``ok=False``.
    """
    sc = config.sync
    timeout = timeout if timeout is not None else sc.copy_back_timeout
    host, problem = _ready(config)
    if problem:
        return CopyBackResult(False, error=problem)
    src = expand(sc.copy_back_paths, sc.local_root)
    if not src.args:
        return CopyBackResult(True, paths=[])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    # --update: a master file newer than the slave's is left alone; --backup: a master file the
    # slave's newer copy replaces is kept beside it (e.g. a voicemail msgNNNN numbered twice).
    options = ["-aR", "--update", "--backup", f"--suffix=.wazod-copyback-{stamp}"]
    t = await _rsync(config, host, options, src.args, timeout)
    result = CopyBackResult(t.ok, t.stats.get("files", 0), t.stats.get("bytes", 0), t.error,
                            paths=[a.split("/./", 1)[-1] for a in src.args])
    log.info("copy-back", ok=result.ok, files=result.files, bytes=result.bytes, error=result.error)
    return result
