"""Rotation of backup sets on real files (``wazod.backup.sets``), generation by generation.

test_backup.py runs whole backups; these hold the rotation's own edges, which the mutation run
(bench/mutation rotation) found unguarded: a lowered ``keep``, ``keep`` of 0, 1 or an even number,
and leftovers of a run killed by a power loss (a symlink among them is removed, never followed).
"""

from __future__ import annotations

import os
from pathlib import Path

from wazod.backup import sets


def _install(d: Path, run: int, keep: int) -> list[str]:
    """One run's new data archive and manifest, installed as the job does."""
    work = d / f".wazod-work-{run}"
    work.mkdir()
    (work / "a").write_text(f"archive {run}\n")
    (work / "m").write_text(f"manifest {run}\n")
    removed = sets.install_set(d, {"data": (str(work / "a"), str(work / "m"))}, keep)
    work.rmdir()
    return removed


def _generations(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir())}


def test_generations_shift_with_an_even_keep(tmp_path):
    for run in range(1, 7):
        _install(tmp_path, run, keep=4)
    assert _generations(tmp_path) == {
        "data.manifest.json": "manifest 6\n", "data.tgz": "archive 6\n",
        **{f"data.manifest.json.{g}": f"manifest {6 - g}\n" for g in range(1, 5)},
        **{f"data.tgz.{g}": f"archive {6 - g}\n" for g in range(1, 5)},
    }
    assert sets.generations(tmp_path, "data") == [0, 1, 2, 3, 4]
    assert sets.generations(tmp_path, "db") == []


def test_a_lowered_keep_drops_the_generations_beyond_it(tmp_path):
    for run in range(1, 7):
        _install(tmp_path, run, keep=4)
    removed = _install(tmp_path, 7, keep=2)
    assert sorted(removed) == ["data.manifest.json.3", "data.manifest.json.4", "data.tgz.3", "data.tgz.4"]
    assert _generations(tmp_path) == {
        "data.manifest.json": "manifest 7\n", "data.tgz": "archive 7\n",
        "data.manifest.json.1": "manifest 6\n", "data.tgz.1": "archive 6\n",
        "data.manifest.json.2": "manifest 5\n", "data.tgz.2": "archive 5\n",
    }


def test_keep_one_keeps_the_previous_set_and_keep_zero_only_the_new(tmp_path):
    one, zero = tmp_path / "one", tmp_path / "zero"
    one.mkdir()
    zero.mkdir()
    for run in range(1, 4):
        _install(one, run, keep=1)
        _install(zero, run, keep=0)
    assert _generations(one) == {"data.manifest.json": "manifest 3\n", "data.tgz": "archive 3\n",
                                 "data.manifest.json.1": "manifest 2\n", "data.tgz.1": "archive 2\n"}
    assert _generations(zero) == {"data.manifest.json": "manifest 3\n", "data.tgz": "archive 3\n"}


def test_names_that_only_look_like_generations_are_not_ours(tmp_path):
    for name in ("data.tgz", "data.tgz.2", "data.tgz.x", "data.tgz.2.bak", "data.tgzz", "db.tgz.1", "xdata.tgz.3"):
        (tmp_path / name).write_text(name)
    assert sets.generations(tmp_path, "data") == [0, 2]
    assert sets.generations(tmp_path, "db") == [1]


def test_leftovers_of_a_killed_run_are_removed_and_a_symlink_is_not_followed(tmp_path):
    d = tmp_path / "backups"
    d.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "sub" / "precious").write_text("keep me\n")
    (d / "data.tgz").write_text("the current set\n")
    (d / ".wazod-data.tgz.4242").write_text("half an archive")
    (d / ".wazod-work-abc" / "pg-backupd").mkdir(parents=True)
    (d / ".wazod-work-abc" / "pg-backupd" / "x.dump").write_text("dump")
    os.symlink(elsewhere, d / ".wazod-work-link")
    removed = sets.remove_stale_temporaries(d)
    assert sorted(removed) == [".wazod-data.tgz.4242", ".wazod-work-abc", ".wazod-work-link"]
    assert sorted(p.name for p in d.iterdir()) == ["data.tgz"]
    assert (elsewhere / "sub" / "precious").read_text() == "keep me\n"


def test_sizes_in_messages():
    assert [sets.human(n) for n in (0, 1023, 1024, 1536, 10 * 1024 ** 2, 3 * 1024 ** 4, 5 * 1024 ** 5)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "10.0 MiB", "3.0 TiB", "5120.0 TiB"]


def test_permissions_640_and_the_group_only(tmp_path):
    """Mode 640 and the configured group; the owner is never changed (an archive of the whole
    configuration must not be handed to another user); a group that does not exist is left alone."""
    import grp

    archive = tmp_path / "data.tgz"
    archive.write_text("x")
    owner = archive.stat().st_uid
    sets.set_permissions(archive, "daemon")
    st = archive.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, owner, grp.getgrnam("daemon").gr_gid)
    other = tmp_path / "db.tgz"
    other.write_text("y")
    gid = other.stat().st_gid
    sets.set_permissions(other, "no-such-group-here")
    st = other.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, owner, gid)
