"""The backup job against real files, real GNU tar/pigz and a real PostgreSQL cluster."""
from __future__ import annotations

import asyncio
import grp
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from harness.backup import (
    BIG_SOUND,
    CROWDED_DIR,
    EXCLUDED,
    INBOX,
    KEPT,
    OLD_MTIME,
    OUTSIDE,
    OWNER,
    backup_config,
    make_wazo_root,
    mode_of,
)
from wazo_schema import create_wazo_database

from wazod.backup import needs_initial_backup, run, verify
from wazod.events import open_emitter
from wazod.jobs import run_job


@pytest.fixture
def wazo_db(pg_cluster):
    dsn = pg_cluster.create_database("asterisk")
    create_wazo_database(dsn, users=20, log_rows=200)
    return pg_cluster


@pytest.fixture
def root(tmp_path):
    return make_wazo_root(tmp_path / "root")


def tar_names(path: Path) -> list[str]:
    out = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, text=True, check=True).stdout
    return [n.rstrip("/") for n in out.splitlines()]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_backup_members_exclusions_manifest_and_event(tmp_path, root, wazo_db):
    config = backup_config(tmp_path, root=root, dsn=wazo_db.dsn("asterisk"))
    assert needs_initial_backup(config)
    emitter = open_emitter(config)
    try:
        result = asyncio.run(run_job("backup", config, emitter, what="all"))
        assert result.status == "ok", result.error
        events = [e for e in emitter.store.pending("test") if e["name"] == "backup_completed"]
    finally:
        emitter.store.close()
    assert not needs_initial_backup(config)
    d = Path(config.backup.dir)
    names = tar_names(d / "data.tgz")
    for rel in KEPT:
        assert rel in names, rel
    assert "etc/asterisk/manager.conf" in names and "etc/asterisk/pjsip-link.conf" in names
    for rel in EXCLUDED + [BIG_SOUND, OUTSIDE]:
        assert rel not in names, rel
    assert not any(n.startswith(CROWDED_DIR) for n in names)  # > 100 entries under the sound tree
    inbox = [n for n in names if n.startswith(INBOX + "/")]
    assert len(inbox) == 150  # voicemail is never dropped by the directory rule
    # owners, modes and times kept
    with tarfile.open(d / "data.tgz") as tf:
        m = tf.getmember("etc/asterisk/manager.conf")
        assert (m.uid, m.gid, m.mode, int(m.mtime)) == (*OWNER, 0o640, OLD_MTIME)
        assert tf.getmember("etc/asterisk").mode == 0o750
        assert tf.getmember("etc/asterisk/pjsip-link.conf").issym()
    # the manifest says what was left out, and why
    manifest = json.loads((d / "data.manifest.json").read_text())
    skipped = {s["path"]: s for s in manifest["skipped"]}
    assert "file larger than max_file_size" in skipped[BIG_SOUND]["reason"]
    assert skipped[CROWDED_DIR]["files"] == 120 and "120 entries" in skipped[CROWDED_DIR]["reason"]
    assert skipped["var/spool/asterisk/monitor"]["reason"] == "excluded"
    for rel in ("var/spool/asterisk/core.4242", "var/log/asterisk/full", "var/lib/asterisk/astdb.sqlite3-journal"):
        assert skipped[rel]["reason"] == "excluded"
    assert manifest["sha256"] == sha(d / "data.tgz") and manifest["members"] == len(names)
    # the event counts them
    assert len(events) == 1
    data = events[0]["data"]
    assert data["skipped_count"] == len(manifest["skipped"]) and data["skipped_files"] >= 120 + 1 + 1
    assert data["data"]["sha256"] == manifest["sha256"]
    # permissions: 640, group www-data where it exists; no temporary left
    for name in ("data.tgz", "db.tgz", "data.manifest.json", "db.manifest.json"):
        assert mode_of(d / name) == 0o640, name
        try:
            assert (d / name).stat().st_gid == grp.getgrnam("www-data").gr_gid
        except KeyError:
            pass
    assert sorted(p.name for p in d.iterdir()) == ["data.manifest.json", "data.tgz", "db.manifest.json", "db.tgz"]
    # a standard gzip stream, whatever compressed it
    subprocess.run(["gzip", "-t", str(d / "data.tgz")], check=True)


def test_db_archive_is_wazo_layout_with_counts(tmp_path, root, wazo_db):
    config = backup_config(tmp_path, root=root, dsn=wazo_db.dsn("asterisk"))
    result = asyncio.run(run(config, what="db"))
    assert result.status == "ok", result.error
    d = Path(config.backup.dir)
    assert not (d / "data.tgz").exists()
    assert tar_names(d / "db.tgz") == ["pg-backupd", "pg-backupd/asterisk-26.08.dump"]
    manifest = json.loads((d / "db.manifest.json").read_text())
    counts = manifest["row_counts"]
    assert counts["public.userfeatures"] == 20 and counts["public.cel"] == 200
    assert counts["public.auth_token"] is None and counts["public.auth_acl"] is None  # data excluded, as Wazo
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(d / "db.tgz"), "-C", str(out)], check=True)
    toc = subprocess.run(["pg_restore", "--list", str(out / "pg-backupd/asterisk-26.08.dump")],
                         capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public userfeatures" in toc
    assert "TABLE DATA public auth_token" not in toc  # its rows are left out, as Wazo's pg_dump does
    assert "TABLE DATA public auth_acl" not in toc
    assert " TABLE public auth_token " in toc  # the table itself is there, only its rows are not


def test_guide_manual_restore_commands_work_on_our_archives(tmp_path, root, pg_pair):
    """Section 1 of the guide, by hand: tar xvfp, tar xvf db.tgz, pg_restore -C -d postgres."""
    src = pg_pair.master
    create_wazo_database(src.create_database("asterisk"), users=15, log_rows=50)
    config = backup_config(tmp_path, root=root, dsn=src.dsn("asterisk"))
    assert asyncio.run(run(config)).status == "ok"
    d = Path(config.backup.dir)
    fresh = tmp_path / "fresh-root"
    fresh.mkdir()
    subprocess.run(["tar", "xvfp", str(d / "data.tgz"), "-C", str(fresh)], check=True, capture_output=True)
    st = os.stat(fresh / "etc/asterisk/manager.conf")
    assert (st.st_uid, st.st_gid, mode_of(fresh / "etc/asterisk/manager.conf"), int(st.st_mtime)) == \
        (*OWNER, 0o640, OLD_MTIME)
    assert (fresh / INBOX / "msg0149.wav").read_bytes() == (root / INBOX / "msg0149.wav").read_bytes()
    var_tmp = tmp_path / "var-tmp"
    var_tmp.mkdir()
    subprocess.run(["tar", "xvf", str(d / "db.tgz"), "-C", str(var_tmp)], check=True, capture_output=True)
    dumps = list((var_tmp / "pg-backupd").glob("asterisk-*.dump"))
    assert [p.name for p in dumps] == ["asterisk-26.08.dump"]
    dst = pg_pair.slave
    # "sudo -u postgres pg_restore -C -d postgres asterisk-*.dump", against the second cluster (the dump is
    # readable by the postgres user once extracted, as Wazo's: pytest's tmp dir is not, so connect as postgres)
    assert mode_of(dumps[0]) == 0o644
    subprocess.run(["pg_restore", "-C", "-d", dst.dsn("postgres"), str(dumps[0])], check=True, capture_output=True)
    assert dst.psql("SELECT count(*) FROM userfeatures", db="asterisk").strip() == "15"
    assert dst.psql("SELECT count(*) FROM auth_token", db="asterisk").strip() == "0"
    assert dst.psql("SELECT wazo_version FROM infos", db="asterisk").strip() == "26.08"


def test_rotation_over_nine_runs(tmp_path):
    small = tmp_path / "small"
    (small / "etc/asterisk").mkdir(parents=True)
    config = backup_config(tmp_path, root=small, dsn="postgresql://nobody@127.0.0.1:1/asterisk", keep=7)
    shas = []
    for i in range(9):
        (small / "etc/asterisk/run.conf").write_text(f"run {i}\n")
        result = asyncio.run(run(config, what="data"))
        assert result.status == "ok", result.error
        shas.append(json.loads((Path(config.backup.dir) / "data.manifest.json").read_text())["sha256"])
    d = Path(config.backup.dir)
    assert sorted(p.name for p in d.glob("data.tgz*")) == sorted(["data.tgz"] + [f"data.tgz.{i}" for i in range(1, 8)])
    assert not (d / "data.tgz.8").exists()
    # generation N is run 9-N, and its manifest still describes it
    for gen in range(8):
        name = "data.tgz" + (f".{gen}" if gen else "")
        manifest = json.loads((d / ("data.manifest.json" + (f".{gen}" if gen else ""))).read_text())
        assert sha(d / name) == manifest["sha256"] == shas[8 - gen]
        with tarfile.open(d / name) as tf:
            assert tf.extractfile("etc/asterisk/run.conf").read() == f"run {8 - gen}\n".encode()
    report = asyncio.run(verify(config, generation=7))
    assert report["archives"][0]["ok"] and "SHA-256 matches the manifest" in report["archives"][0]["checks"]


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_midway_and_no_space_leave_previous_set_intact(tmp_path, small_tmpfs):
    tree = tmp_path / "t"
    (tree / "etc/asterisk").mkdir(parents=True)
    (tree / "etc/asterisk/a.conf").write_text("a\n")
    config = backup_config(tmp_path, root=tree, dsn="postgresql://nobody@127.0.0.1:1/asterisk",
                           backup_dir=small_tmpfs, space_estimate_ratio=0.3)
    assert asyncio.run(run(config, what="data")).status == "ok"
    before = {p.name: sha(p) for p in small_tmpfs.iterdir()}
    # 3 MB of random bytes: the estimate (0.3 x 3 MB) passes, the disk fills up mid-way
    (tree / "etc/asterisk/noise.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    result = asyncio.run(run(config, what="data"))
    assert result.status == "failed"
    assert "No space left on device" in result.error
    assert {p.name: sha(p) for p in small_tmpfs.iterdir()} == before  # nothing removed, nothing left behind
    # 10 MB: refused before anything is written, with a clear message
    (tree / "etc/asterisk/noise.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    result = asyncio.run(run(config, what="data"))
    assert result.status == "failed" and result.error.startswith("not enough free space")
    assert {p.name: sha(p) for p in small_tmpfs.iterdir()} == before


def _damaging_gzip(bin_dir: Path, witness: Path) -> None:
    """A ``gzip`` first on PATH that runs the real one and flips a byte in the middle of what it wrote:
    the archive is damaged after it was written and before the set is rotated."""
    real = shutil.which("gzip")
    bin_dir.mkdir()
    script = bin_dir / "gzip"
    script.write_text(f"""#!{sys.executable}
import subprocess, sys
out = bytearray(subprocess.run([{real!r}, *sys.argv[1:]], stdout=subprocess.PIPE, check=True).stdout)
out[len(out) // 2] ^= 0xFF
open({str(witness)!r}, "a").write(f"{{len(out)}}\\n")
sys.stdout.buffer.write(out)
""")
    script.chmod(0o755)


def test_archive_damaged_before_rotation_fails_the_run_and_keeps_the_previous_set(tmp_path, monkeypatch):
    """The read-back is what stands between a damaged archive and the rotation that would drop a good set."""
    tree = tmp_path / "t"
    (tree / "etc/asterisk").mkdir(parents=True)
    for i in range(40):
        (tree / f"etc/asterisk/f{i}.conf").write_text(f"[section{i}]\nkey = {os.urandom(600).hex()}\n")
    config = backup_config(tmp_path, root=tree, dsn="postgresql://nobody@127.0.0.1:1/asterisk",
                           use_pigz=False, keep=2)
    assert asyncio.run(run(config, what="data")).status == "ok"
    d = Path(config.backup.dir)
    before = {p.name: sha(p) for p in d.iterdir()}
    assert set(before) == {"data.tgz", "data.manifest.json"}

    witness = tmp_path / "damaged"
    _damaging_gzip(tmp_path / "bin", witness)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    (tree / "etc/asterisk/new.conf").write_text("new\n")
    result = asyncio.run(run(config, what="data"))

    assert witness.read_text().count("\n") == 1  # the damaging compressor wrote the new archive
    assert result.status == "failed"
    assert "the new data.tgz failed verification" in result.error
    assert {p.name: sha(p) for p in d.iterdir()} == before  # not rotated, nothing left behind


def test_database_down_fails_cleanly(tmp_path, root, wazo_db):
    config = backup_config(tmp_path, root=root, dsn=wazo_db.dsn("asterisk"))
    assert asyncio.run(run(config)).status == "ok"
    d = Path(config.backup.dir)
    before = {p.name: sha(p) for p in d.iterdir()}
    wazo_db.stop()
    result = asyncio.run(run(config))
    assert result.status == "failed" and "unreachable" in result.error
    assert {p.name: sha(p) for p in d.iterdir()} == before


def test_interrupted_backup_leaves_nothing_behind(tmp_path):
    tree = tmp_path / "t"
    (tree / "var/lib/asterisk").mkdir(parents=True)
    for i in range(8):
        (tree / f"var/lib/asterisk/blob{i}").write_bytes(os.urandom(4 * 1024 * 1024))
    config = backup_config(tmp_path, root=tree, dsn="postgresql://nobody@127.0.0.1:1/asterisk", use_pigz=False)
    assert asyncio.run(run(config, what="data")).status == "ok"
    d = Path(config.backup.dir)
    before = {p.name: sha(p) for p in d.iterdir()}
    (tree / "var/lib/asterisk/new").write_text("new\n")

    async def cancel_mid_way():
        started = asyncio.Event()
        task = asyncio.create_task(run(config, what="data", progress=lambda *a: started.set()))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_way())
    assert {p.name: sha(p) for p in d.iterdir()} == before
    out = subprocess.run(["pgrep", "-f", "--", f"--files-from={d}"], capture_output=True)
    assert out.returncode == 1  # no tar left running


def test_verify_catches_corruption_and_deep_checks_rows(tmp_path, root, wazo_db, capsys):
    from harness.backup import write_config_file

    from wazod.cli import main

    config = backup_config(tmp_path, root=root, dsn=wazo_db.dsn("asterisk"))
    cfg = write_config_file(tmp_path / "config.yml", config)
    assert main(["backup", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["backup", "verify", "--deep", "--json", "--config", str(cfg)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["deep"]["ok"] and report["deep"]["rows"] > 1000
    assert wazo_db.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'wazod_verify%'").strip() == "0"
    d = Path(config.backup.dir)
    for name in ("data.tgz", "db.tgz"):
        good = (d / name).read_bytes()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        (d / name).write_bytes(bytes(bad))
        assert main(["backup", "verify", str(d), "--config", str(cfg)]) == 1
        out = capsys.readouterr().out
        assert f"{name}: FAILED" in out, out
        (d / name).write_bytes(good)
    # a truncated archive too
    good = (d / "data.tgz").read_bytes()
    (d / "data.tgz").write_bytes(good[: len(good) // 3])
    assert main(["backup", "verify", "--json", "--config", str(cfg)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "damaged archive" in report["archives"][0]["problems"][0]


def test_scan_reads_long_names_pax_and_concatenated_gzip(tmp_path):
    from wazod.backup.archive import scan

    src = tmp_path / "src"
    deep = src / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    for i in range(5):
        (deep / (f"{i}-" + "f" * 120)).write_bytes(os.urandom(1000 + i))
    for fmt in ("gnu", "pax", "ustar"):
        out = tmp_path / f"{fmt}.tgz"
        r = subprocess.run(["tar", f"--format={fmt}", "-czf", str(out), "-C", str(src), "."], capture_output=True)
        if r.returncode != 0:  # ustar cannot hold some of these names: that is tar's limit, not ours
            continue
        assert scan(str(out)).members == len(tar_names(out)), fmt
    # a gzip stream made of two members (what "cat a.gz b.gz" gives) is still one valid archive
    plain = tmp_path / "a.tar"
    subprocess.run(["tar", "-cf", str(plain), "-C", str(src), "."], check=True)
    raw = plain.read_bytes()
    import gzip
    two = tmp_path / "two.tgz"
    two.write_bytes(gzip.compress(raw[:7000]) + gzip.compress(raw[7000:]))
    assert scan(str(two)).members == len(tar_names(tmp_path / "gnu.tgz"))


def test_sets_made_by_wazos_own_script_verify_rotate_and_restore(tmp_path, root, wazo_db, capsys):
    """Upgrading from Wazo: its archives (no manifest) are verified, kept in the rotation and restorable."""
    from harness.backup import write_config_file

    from wazod.cli import main

    config = backup_config(tmp_path, root=root, dsn=wazo_db.dsn("asterisk"), keep=3)
    d = Path(config.backup.dir)
    d.mkdir()
    # what wazo-backup ran: tar cpzf of the list; pg_dump -Fc > pg-backupd/asterisk-<version>.dump; tar cpzf
    # (its list holds only Wazo's paths: the file the harness puts outside them is not in it)
    subprocess.run(["tar", "cpzf", str(d / "data.tgz"), "-C", str(root), f"--exclude={OUTSIDE}", "etc", "var"],
                   check=True)
    dump_dir = tmp_path / "wazo-tmp" / "pg-backupd"
    dump_dir.mkdir(parents=True)
    with open(dump_dir / "asterisk-26.08.dump", "wb") as f:
        subprocess.run(["pg_dump", "-Fc", "--exclude-table-data=auth_acl", "--exclude-table-data=auth_token",
                        wazo_db.dsn("asterisk")], stdout=f, check=True)
    subprocess.run(["tar", "cpzf", str(d / "db.tgz"), "-C", str(dump_dir.parent), "pg-backupd"], check=True)
    cfg = write_config_file(tmp_path / "config.yml", config)
    assert main(["backup", "verify", "--json", "--config", str(cfg)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(a["ok"] for a in report["archives"])
    assert any("no manifest" in c for c in report["archives"][1]["checks"])
    wazo_db_sha = sha(d / "db.tgz")
    assert main(["backup", "--config", str(cfg)]) == 0
    assert sha(d / "db.tgz.1") == wazo_db_sha and not (d / "db.manifest.json.1").exists()
    capsys.readouterr()
    # restore from Wazo's own archives
    wazo_db.psql("UPDATE userfeatures SET firstname = 'changed'", db="asterisk")
    assert main(["restore", "--data", str(d / "data.tgz.1"), "--db", str(d / "db.tgz.1"), "--config", str(cfg)]) == 0
    assert wazo_db.psql("SELECT DISTINCT firstname FROM userfeatures", db="asterisk").strip() == "User"


def test_progress_bar_on_a_terminal_only(tmp_path):
    import pty  # noqa: F401  (a real terminal for the child)
    import sys

    from harness.backup import write_config_file

    tree = tmp_path / "t"
    (tree / "var/lib/asterisk").mkdir(parents=True)
    (tree / "var/lib/asterisk/blob").write_bytes(os.urandom(12 * 1024 * 1024))
    config = backup_config(tmp_path, root=tree, dsn="postgresql://nobody@127.0.0.1:1/asterisk")
    cfg = write_config_file(tmp_path / "config.yml", config)
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "wazod", "backup", "data", "--config", str(cfg)],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0
    text = out.decode(errors="replace")
    assert "data       [" in text and "100.0%" in text and "backup: ok" in text
    # not on a pipe: the same command prints only its result
    piped = subprocess.run([sys.executable, "-m", "wazod", "backup", "data", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "100.0%" not in piped.stderr and "100.0%" not in piped.stdout


@pytest.mark.parametrize("started_by", ["a terminal", "nohup or a background job (SIGINT ignored)"])
def test_sigterm_of_the_cli_cleans_up(tmp_path, started_by):
    import signal
    import sys

    from harness import wait_for
    from harness.backup import write_config_file

    tree = tmp_path / "t"
    (tree / "var/lib/asterisk").mkdir(parents=True)
    for i in range(10):
        (tree / f"var/lib/asterisk/blob{i}").write_bytes(os.urandom(4 * 1024 * 1024))
    config = backup_config(tmp_path, root=tree, dsn="postgresql://nobody@127.0.0.1:1/asterisk", use_pigz=False)
    cfg = write_config_file(tmp_path / "config.yml", config)
    argv = [sys.executable, "-m", "wazod", "backup", "data", "--config", str(cfg)]
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    d = Path(config.backup.dir)
    before = {p.name: sha(p) for p in d.iterdir()}
    # a shell starts background jobs, and nohup its command, with SIGINT ignored: that must not make SIGTERM moot
    ignore_int = started_by.startswith("nohup")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_int else None)
    wait_for(lambda: any(p.name.startswith(".wazod-data.tgz") for p in d.iterdir()), timeout=30, interval=0.02)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert {p.name: sha(p) for p in d.iterdir()} == before
    assert subprocess.run(["pgrep", "-f", "--", f"--files-from={d}"], capture_output=True).returncode == 1
    state = json.loads((Path(config.node.state_dir) / "job-backup.json").read_text())
    assert state["last_result"] == "failed" and "interrupted" in state["error"]


def test_file_vanishing_during_the_backup_is_listed_not_fatal(tmp_path):
    tree = tmp_path / "t"
    inbox = tree / "var/spool/asterisk/voicemail/default/1001/INBOX"
    inbox.mkdir(parents=True)
    for i in range(5):
        (inbox / f"msg{i:04d}.wav").write_bytes(b"RIFF" + os.urandom(100))
    config = backup_config(tmp_path, root=tree, dsn="postgresql://nobody@127.0.0.1:1/asterisk")
    gone = inbox / "msg0003.wav"

    def progress(phase, done, total):  # the file list is made; the caller deletes a message before tar reads it
        if gone.exists():
            gone.unlink()

    result = asyncio.run(run(config, what="data", progress=progress))
    assert result.status == "ok", result.error
    d = Path(config.backup.dir)
    names = tar_names(d / "data.tgz")
    assert "var/spool/asterisk/voicemail/default/1001/INBOX/msg0004.wav" in names
    assert not any(n.endswith("msg0003.wav") for n in names)
    manifest = json.loads((d / "data.manifest.json").read_text())
    rel = "var/spool/asterisk/voicemail/default/1001/INBOX/msg0003.wav"
    assert any(s["path"] == rel and "vanished" in s["reason"] for s in manifest["skipped"])
    assert manifest["members"] == len(names) and result.data["skipped_count"] == 1


def test_size_rules_follow_the_configuration(tmp_path, root):
    from wazod.backup.tree import select

    strict = backup_config(tmp_path, root=root, dsn="postgresql:///x", voicemail_dir_rule=True).backup
    sel = select(strict)
    assert INBOX in {s.path for s in sel.skipped}  # asked for: the full inbox goes, and is listed
    lax = backup_config(tmp_path, root=root, dsn="postgresql:///x", max_file_size=None, max_dir_entries=None).backup
    sel = select(lax)
    assert BIG_SOUND in sel.members and f"{CROWDED_DIR}/prompt-119.wav" in sel.members
    assert {s.reason for s in sel.skipped} == {"excluded"}
