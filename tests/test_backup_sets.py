"""Issue 15 items 10 and 12: what a backup set holds and how it is installed.

Real files, real tar, real backup runs (data part: no database needed).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

from harness.backup import backup_config

from wazod.backup import run

NO_DB = "postgresql://nobody@127.0.0.1:1/asterisk"
VOICEMAIL = "var/spool/asterisk/voicemail/default/1001/INBOX/msg0001.wav"


def test_symlinked_top_path_is_saved_with_its_content(tmp_path):
    """The spool moved to a bigger disk and linked back: the voicemails were missing, the backup said ok."""
    root, bigdisk = tmp_path / "root", tmp_path / "bigdisk"
    (bigdisk / "spool" / Path(VOICEMAIL).relative_to("var/spool/asterisk").parent).mkdir(parents=True)
    (bigdisk / "spool" / Path(VOICEMAIL).relative_to("var/spool/asterisk")).write_bytes(b"RIFF voicemail")
    (root / "var/spool").mkdir(parents=True)
    os.symlink(bigdisk / "spool", root / "var/spool/asterisk")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("pbx\n")
    config = backup_config(tmp_path, root=root, dsn=NO_DB, paths=["etc/hostname", "var/spool/asterisk"], exclude=[])
    result = asyncio.run(run(config, what="data"))
    assert result.status == "ok", result.error
    assert result.data["followed_links"] == [{"path": "var/spool/asterisk", "target": str(bigdisk / "spool")}]
    data_tgz = Path(config.backup.dir) / "data.tgz"
    with tarfile.open(data_tgz) as tar:
        names = {m.name.rstrip("/"): m for m in tar.getmembers()}
        assert names[VOICEMAIL].isfile()
        assert tar.extractfile(names[VOICEMAIL]).read() == b"RIFF voicemail"
        assert not any(m.issym() for m in names.values())
    manifest = json.loads((Path(config.backup.dir) / "data.manifest.json").read_text())
    assert manifest["followed_links"][0]["path"] == "var/spool/asterisk"
    # Wazo's own restore command puts the files back
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    subprocess.run(["tar", "xpf", str(data_tgz), "-C", str(fresh)], check=True)
    assert (fresh / VOICEMAIL).read_bytes() == b"RIFF voicemail"


# --- item 12: a set is installed as one unit -----------------------------------------------------

def _make_set(work: Path, label: str) -> dict[str, tuple[str, str]]:
    """A data and a db archive (real .tgz) and their manifests, as a backup run leaves them before install."""
    made = {}
    for kind in ("data", "db"):
        archive = work / f".wazod-{kind}.tgz.{label}"
        with tarfile.open(archive, "w:gz") as tar:
            payload = f"{kind} of set {label}\n".encode()
            info = tarfile.TarInfo(f"{kind}-{label}.txt")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        manifest = work / f"{kind}.manifest.json.{label}"
        manifest.write_text(json.dumps({"kind": kind, "set_id": label,
                                        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}))
        made[kind] = (str(archive), str(manifest))
    return made


def _sets_seen(directory: Path, keep: int) -> list[str]:
    """Each generation's set id, after checking that every archive matches its manifest and data pairs with db."""
    seen = []
    for gen in range(keep + 1):
        ids = set()
        for kind in ("data", "db"):
            suffix = f".{gen}" if gen else ""
            archive, manifest = directory / f"{kind}.tgz{suffix}", directory / f"{kind}.manifest.json{suffix}"
            if not archive.exists():
                assert not manifest.exists(), f"{manifest} without its archive"
                continue
            doc = json.loads(manifest.read_text())
            assert doc["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest(), f"{archive} vs its manifest"
            ids.add(doc["set_id"])
        assert len(ids) <= 1, f"generation {gen} mixes sets {ids}"
        seen += list(ids)
    return seen


def _die_at_call(step: int) -> None:
    """In a forked child: SIGKILL this process at its ``step``-th os.link or os.replace (the crash point)."""
    calls = [0]

    def dying(real):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return call
    os.link, os.replace = dying(os.link), dying(os.replace)


def test_install_killed_at_every_step_leaves_old_or_new_set_never_a_mix(tmp_path):
    """SIGKILL at each link and rename of the installation; the next backup lock holder finishes or discards it."""
    from wazod.backup import sets

    keep = 2
    directory = tmp_path / "backups"
    directory.mkdir()
    for label in ("A", "B"):
        sets.install_set(directory, _make_set(directory, label), keep)
    assert _sets_seen(directory, keep) == ["B", "A"]
    step, outcomes = 0, set()
    while True:
        step += 1
        work = tmp_path / f"try{step}"
        trial = work / "backups"
        shutil.copytree(directory, trial, copy_function=os.link)  # the same two sets, files shared (read-only use)
        new = _make_set(trial, "C")
        pid = os.fork()
        if pid == 0:  # the backup process, killed at its step-th link or rename
            try:
                _die_at_call(step)
                sets.install_set(trial, new, keep)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        sets.finish_interrupted(trial)  # what the next backup, verify or restore does first
        seen = _sets_seen(trial, keep)
        assert seen in (["B", "A"], ["C", "B", "A"][:keep + 1]), (step, seen)
        assert not [p for p in os.listdir(trial) if p.startswith(".wazod-set-")]
        outcomes.add(seen[0])
        if not killed:
            break
    assert outcomes == {"B", "C"} and step > 10


def test_daemon_start_up_backup_completes_an_interrupted_install(tmp_path):
    """A crash after READY: the start-up check asks for a backup, which finishes the set before its own."""
    from wazod.backup import needs_initial_backup, sets

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("pbx\n")
    config = backup_config(tmp_path, root=root, dsn=NO_DB, paths=["etc/hostname"], exclude=[])
    directory = Path(config.backup.dir)
    directory.mkdir()
    sets.install_set(directory, _make_set(directory, "A"), 2)
    assert not needs_initial_backup(config)
    stage = directory / f"{sets.STAGE_PREFIX}4242"
    stage.mkdir()
    new = _make_set(directory, "B")
    for kind, (archive, manifest) in new.items():  # what install_set had linked when the power went
        os.link(archive, stage / f"{kind}.tgz")
        os.link(manifest, stage / f"{kind}.manifest.json")
    (stage / sets.READY).write_text(json.dumps({"remove": []}))
    assert needs_initial_backup(config)
    result = asyncio.run(run(config, what="data"))
    assert result.status == "ok", result.error
    assert sets.interrupted_installs(directory) == []
    assert json.loads((directory / "db.manifest.json").read_text())["set_id"] == "B"  # finished, then data's own
