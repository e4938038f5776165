"""Archive plugins: what keeps a copy of log rows before the purge deletes them.

Two kinds, both named in ``purge.archives``:

* wazod plugins, entry-point group ``wazod.purge_archives``: the entry point is
  a factory ``factory(config) -> archiver`` (``config`` is wazod's whole
  configuration). ``archiver.open(table, columns, cutoff) -> sink`` is called
  once per table before its first batch; each batch's rows then reach
  ``sink.append(csv_bytes)`` *inside* the batch transaction, produced by the very
  ``DELETE ... RETURNING`` that removes them, so the archived rows and the
  deleted rows are the same set by construction. ``append`` must return only
  once the bytes are durable; if it raises, the batch is rolled back and the
  table is not purged further. ``sink.discard_last()`` undoes the last append
  when its transaction did not commit; ``sink.close()`` finalises and returns a
  description (a path) for the result.
* legacy wazo-purge-db plugins, entry-point group ``wazo_purge_db.archives``:
  callables taking Wazo's config mapping (``days_to_keep``, ...). They run once,
  before any table is touched, as wazo-purge-db ran them; unlike wazo-purge-db,
  whose stevedore loader logged and ignored their errors, a failure here stops
  the whole purge, since such a plugin may cover every table.

The built-in ``csv`` archiver writes ``<archive_dir>/<table>-<UTC time>.csv.gz``:
gzip members appended batch by batch (each fsync'ed before its batch commits)
to a hidden ``.part`` file renamed into place when the table is done.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from wazod.errors import WazodError
from wazod.fsutil import fsync_dir
from wazod.logsetup import get_logger

log = get_logger("purge")

WAZOD_GROUP = "wazod.purge_archives"
LEGACY_GROUP = "wazo_purge_db.archives"


class ArchiveSink(Protocol):
    def append(self, csv_rows: bytes) -> None: ...
    def discard_last(self) -> None: ...
    def close(self) -> str | None: ...


class Archiver(Protocol):
    def open(self, table: str, columns: list[str], cutoff: dt.datetime) -> ArchiveSink: ...


class ArchiveFailed(WazodError):
    """An archive step failed: the table concerned must not lose rows."""


# ---------------------------------------------------------------- plugin lookup
def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def load_archives(names: list[str], config) -> tuple[list[tuple[str, Archiver]], list[tuple[str, Callable]]]:
    """Resolve ``purge.archives`` into (wazod archivers, legacy callables).

    A name is looked up in ``wazod.purge_archives`` first, then in the legacy
    group; an unknown name or a plugin that cannot be loaded is an error before
    anything is deleted.
    """
    if not names:
        return [], []
    wazod_eps = _entry_points(WAZOD_GROUP)
    legacy_eps = _entry_points(LEGACY_GROUP)
    archivers: list[tuple[str, Archiver]] = []
    legacy: list[tuple[str, Callable]] = []
    for name in names:
        if name in wazod_eps:
            try:
                archivers.append((name, wazod_eps[name].load()(config)))
            except Exception as e:
                raise ArchiveFailed(f"archive plugin {name!r} ({wazod_eps[name].value}) cannot start: "
                                    f"{type(e).__name__}: {e}") from e
        elif name in legacy_eps:
            try:
                legacy.append((name, legacy_eps[name].load()))
            except Exception as e:
                raise ArchiveFailed(f"legacy archive plugin {name!r} ({legacy_eps[name].value}) cannot be loaded: "
                                    f"{type(e).__name__}: {e}") from e
        else:
            raise ArchiveFailed(
                f"purge.archives: no archive plugin named {name!r} (looked in the entry-point groups "
                f"{WAZOD_GROUP} and {LEGACY_GROUP}; installed: {', '.join(sorted({*wazod_eps, *legacy_eps})) or 'none'})"
            )
    return archivers, legacy


def legacy_config(section, days: int | None) -> dict[str, Any]:
    """The mapping a wazo-purge-db archive plugin expects (its merged config.yml)."""
    from wazod.config.sections.purge import WAZO_PURGER_NAMES

    by_table = {t: p for p, t in WAZO_PURGER_NAMES.items()}
    return {
        "db_uri": section.dsn,
        "days_to_keep": section.days_to_keep if days is None else days,
        "days_to_keep_per_plugin": {
            by_table.get(t, t): section.days_for(t, days)
            for t in section.purged_tables
            if section.days_for(t, days) != (section.days_to_keep if days is None else days)
        },
        "enabled_plugins": {
            "archives": list(section.archives),
            "purgers": {by_table.get(t, t): True for t in section.purged_tables},
        },
    }


# ---------------------------------------------------------------- built-in csv
class CsvSink:
    """One table's archive: gzip members appended to a ``.part`` file, renamed when done."""

    def __init__(self, final: Path, columns: list[str]):
        self.final = final
        self.part = final.with_name(f".{final.name}.part")
        self._header = (",".join(_csv_quote(c) for c in columns) + "\n").encode()
        self._fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._size = 0
        self._before_last: int | None = None
        self._rows_kept = False

    def append(self, csv_rows: bytes) -> None:
        data = (self._header if self._size == 0 else b"") + csv_rows
        member = gzip.compress(data, compresslevel=6, mtime=0)
        self._before_last = self._size
        os.pwrite(self._fd, member, self._size)
        os.fsync(self._fd)
        self._size += len(member)
        self._rows_kept = True

    def discard_last(self) -> None:
        if self._before_last is None:
            return
        os.ftruncate(self._fd, self._before_last)
        os.fsync(self._fd)
        self._size = self._before_last
        self._before_last = None
        self._rows_kept = self._size > 0

    def close(self) -> str | None:
        os.close(self._fd)
        if not self._rows_kept:
            os.unlink(self.part)
            return None
        os.replace(self.part, self.final)
        fsync_dir(self.final.parent)
        return str(self.final)


def _csv_quote(value: str) -> str:
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


class CsvArchiver:
    """Compressed CSV files, one per table and run, readable with ``zcat`` or any CSV tool."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.recovered = self._recover_interrupted()

    def _recover_interrupted(self) -> list[str]:
        """Keep what a killed run left: its deleted rows are only there.

        The file may end with one batch that was not committed (rows still in
        the table, archived again by this run): better twice than never.
        """
        found = []
        for part in sorted(self.directory.glob(".*.csv.gz.part")):
            name = part.name[1:-len(".part")]
            target = part.with_name(name.replace(".csv.gz", "-interrupted.csv.gz"))
            os.replace(part, target)
            found.append(str(target))
            log.warning("archive of an interrupted purge kept", path=str(target))
        if found:
            fsync_dir(self.directory)
        return found

    def open(self, table: str, columns: list[str], cutoff: dt.datetime) -> CsvSink:
        return CsvSink(self.directory / f"{table}-{self.stamp}.csv.gz", columns)


def archive_dir(config) -> Path:
    section = config.purge
    return Path(section.archive_dir) if section.archive_dir else Path(config.node.state_dir) / "purge-archives"


def csv_archive_plugin(config) -> CsvArchiver:
    """Entry point ``csv`` of ``wazod.purge_archives``: the built-in archiver."""
    return CsvArchiver(archive_dir(config))
