"""The backup directory: names, manifests, rotation, permissions, free space.

Layout, as Wazo's logrotate leaves it: ``data.tgz``, ``data.tgz.1`` ...
``data.tgz.<keep>``, the same for ``db.tgz``; wazod adds a JSON manifest beside
each archive (``data.manifest.json``, rotated with it to ``data.manifest.json.1``...)
holding its SHA-256, what it contains and what was left out.

A new archive is installed only once it is complete and verified: older
generations shift up by rename, the current one is hard-linked to ``.1``, and
the new one is renamed over the current name, so at every instant ``data.tgz``
is a complete archive (a crash leaves either the old or the new set).
"""

from __future__ import annotations

import contextlib
import grp
import os
from pathlib import Path

from wazod.fsutil import fsync_dir, read_json

KINDS = ("data", "db")
TMP_PREFIX = ".wazod-"


def archive_name(kind: str, generation: int = 0) -> str:
    return f"{kind}.tgz" + (f".{generation}" if generation else "")


def manifest_name(kind: str, generation: int = 0) -> str:
    return f"{kind}.manifest.json" + (f".{generation}" if generation else "")


def read_manifest(directory: str | os.PathLike, kind: str, generation: int = 0) -> dict | None:
    return read_json(Path(directory) / manifest_name(kind, generation))


def generations(directory: str | os.PathLike, kind: str) -> list[int]:
    """Generations present for ``kind`` (0 is the newest), sorted."""
    found = []
    prefix = f"{kind}.tgz"
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            if name == prefix:
                found.append(0)
            elif name.startswith(prefix + ".") and name[len(prefix) + 1:].isdigit():
                found.append(int(name[len(prefix) + 1:]))
    return sorted(found)


def set_permissions(path: str | os.PathLike, group: str | None) -> None:
    """Mode 640, group ``group`` (www-data in Wazo) when it exists."""
    os.chmod(path, 0o640)
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return
        with contextlib.suppress(PermissionError):
            os.chown(path, -1, gid)


def _shift(directory: Path, name_of, keep: int) -> None:
    """Move generation i to i+1 for i = keep-1 .. 1, keeping indexes aligned when a file is missing."""
    for i in range(keep - 1, 0, -1):
        src, dst = directory / name_of(i), directory / name_of(i + 1)
        if src.exists():
            os.replace(src, dst)
        else:
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()


def _drop_beyond(directory: Path, kind: str, keep: int) -> list[str]:
    removed = []
    for gen in generations(directory, kind):
        if gen > keep:
            for name in (archive_name(kind, gen), manifest_name(kind, gen)):
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
                    removed.append(name)
    return removed


def install(directory: str | os.PathLike, kind: str, new_archive: str, new_manifest: str, keep: int) -> list[str]:
    """Rotate ``kind`` and put the verified new archive and manifest in place. Returns removed names."""
    directory = Path(directory)
    cur_a, cur_m = directory / archive_name(kind), directory / manifest_name(kind)
    if keep > 0:
        _shift(directory, lambda i: archive_name(kind, i), keep)
        _shift(directory, lambda i: manifest_name(kind, i), keep)
        for cur, first in ((cur_a, directory / archive_name(kind, 1)), (cur_m, directory / manifest_name(kind, 1))):
            with contextlib.suppress(FileNotFoundError):
                first.unlink()
            if cur.exists():
                os.link(cur, first)
            elif cur is cur_m:
                pass  # an archive from Wazo's own script has no manifest: generation 1 has none either
    os.replace(new_manifest, cur_m)
    os.replace(new_archive, cur_a)
    removed = _drop_beyond(directory, kind, keep)
    fsync_dir(directory)
    return removed


def free_bytes(directory: str | os.PathLike) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Leftovers of a run killed without cleanup (power loss): only ever our own temporary names."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(TMP_PREFIX):
                if entry.is_dir(follow_symlinks=False):
                    import shutil

                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def human(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
