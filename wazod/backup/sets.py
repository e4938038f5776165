"""The backup directory: names, manifests, rotation, permissions, free space.

Layout, as Wazo's logrotate leaves it: ``data.tgz``, ``data.tgz.1`` ...
``data.tgz.<keep>``, the same for ``db.tgz``; wazod adds a JSON manifest beside
each archive (``data.manifest.json``, rotated with it to ``data.manifest.json.1``...)
holding its SHA-256, what it contains and what was left out.

A new set is installed only once its archives are complete and verified, and
as one unit, without changing Wazo's names: the whole next layout (the new
``data.tgz``/``db.tgz`` and manifests, and every older generation under its
next name, as hard links) is first built in a staging directory beside them,
which is marked ``READY`` last. Only then are its entries renamed over the
live names. A crash before ``READY`` leaves the live set untouched (the
staging directory is discarded); a crash after it is finished (rolled
forward: each rename is repeated until the staging directory is empty) by
whoever next takes the backup lock: the next backup, ``backup verify`` and
``restore`` do it first. So a reader holding the lock never sees a new
manifest beside an old archive, nor a new data.tgz beside an old db.tgz.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
from pathlib import Path

from wazod.fsutil import atomic_write_json, fsync_dir, read_json

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


STAGE_PREFIX = f"{TMP_PREFIX}set-"
READY = "READY.json"


def _stage_layout(directory: Path, stage: Path, kind: str, archive: str, manifest: str, keep: int) -> list[str]:
    """Link ``kind``'s next layout into ``stage``; returns the live names that must disappear."""
    remove = []
    for i in range(keep, 0, -1):  # generation i-1 becomes generation i
        for name_of in (archive_name, manifest_name):
            src = directory / name_of(kind, i - 1)
            if src.exists():
                os.link(src, stage / name_of(kind, i))
            else:  # e.g. an archive from Wazo's own script: no manifest to carry along
                remove.append(name_of(kind, i))
    os.link(archive, stage / archive_name(kind))
    os.link(manifest, stage / manifest_name(kind))
    for gen in generations(directory, kind):
        if gen > keep:
            remove += [archive_name(kind, gen), manifest_name(kind, gen)]
    return remove


def install_set(directory: str | os.PathLike, new: dict[str, tuple[str, str]], keep: int) -> list[str]:
    """Rotate and install the verified archives and manifests of ``new`` ({kind: (archive, manifest)}) as one set.

    Returns the names removed (rotated out).
    """
    directory = Path(directory)
    stage = directory / f"{STAGE_PREFIX}{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(mode=0o700)
    remove: list[str] = []
    for kind, (archive, manifest) in new.items():
        remove += _stage_layout(directory, stage, kind, archive, manifest, keep)
    fsync_dir(stage)
    atomic_write_json(stage / READY, {"remove": remove, "kinds": sorted(new)}, mode=0o600)
    removed = _finish(directory, stage)
    for archive, manifest in new.values():  # their content now lives under the live names
        for path in (archive, manifest):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return removed


def _finish(directory: Path, stage: Path) -> list[str]:
    """Roll a READY staging directory forward into ``directory`` (idempotent); returns the names removed."""
    marker = read_json(stage / READY)
    if not isinstance(marker, dict):
        shutil.rmtree(stage, ignore_errors=True)  # never marked complete: the live set was not touched
        return []
    names = sorted((n for n in os.listdir(stage) if n != READY), key=_install_order)
    for name in names:
        os.replace(stage / name, directory / name)
    removed = []
    for name in marker.get("remove", []):
        if "/" in name or name.startswith("."):
            continue
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
            removed.append(name)
    fsync_dir(directory)
    shutil.rmtree(stage, ignore_errors=True)
    return removed


def _install_order(name: str) -> tuple[int, str, str]:
    """Oldest generations first, the current archives last (then manifests before archives)."""
    gen = name.rpartition(".")[2]
    generation = int(gen) if gen.isdigit() else 0
    return (-generation, "1" if name.endswith(".tgz") or ".tgz." in name else "0", name)


def interrupted_installs(directory: str | os.PathLike) -> list[str]:
    """Staging directories a crash left behind (finished or discarded by ``finish_interrupted``)."""
    try:
        return sorted(n for n in os.listdir(directory) if n.startswith(STAGE_PREFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []


def finish_interrupted(directory: str | os.PathLike) -> list[str]:
    """Complete (or discard) the installation a crash interrupted; call it holding the backup lock.

    Returns the staging directories finished.
    """
    directory = Path(directory)
    done = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.startswith(STAGE_PREFIX) and entry.is_dir(follow_symlinks=False):
                _finish(directory, Path(entry.path))
                done.append(entry.name)
    return done


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
