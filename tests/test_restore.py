"""``wazod restore`` end to end: real archives, a real PostgreSQL cluster, services through the command backend."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from harness.backup import backup_config, make_wazo_root, write_config_file
from wazo_schema import create_wazo_database

from wazod.backup import run
from wazod.backup.restore import set_default_environment
from wazod.cli import main
from wazod.events import open_emitter

NODE_UUID = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def lab(tmp_path, pg_cluster):
    """A node with a backup set made, then changed since: what a restore must undo (or keep)."""
    create_wazo_database(pg_cluster.create_database("asterisk"), users=20, log_rows=100)
    root = make_wazo_root(tmp_path / "root")
    marks = tmp_path / "marks"
    marks.mkdir()
    writer = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"]
    config = backup_config(
        tmp_path, root=root, dsn=pg_cluster.dsn("asterisk"), restore_services="ha",
        update_keys_command=[*writer, str(marks / "keys"), "updated"],
        uuid_apply_commands=[[*writer, str(marks / "uuid"), "{uuid}"]],
    )
    config.ha.services.backend = "command"
    config.ha.services.stop = [[*writer, str(marks / "services"), "stop"]]
    config.ha.services.start = [[*writer, str(marks / "services"), "start"]]
    config.ha.services.retries = 1
    assert asyncio.run(run(config)).status == "ok"
    # life goes on after the backup
    pg_cluster.psql("UPDATE userfeatures SET firstname = 'changed'; DELETE FROM extensions WHERE id > 5;"
                    "UPDATE netiface SET address = '198.51.100.7'", db="asterisk")
    (root / "etc/asterisk/pjsip.conf").write_text("changed\n")
    (root / "etc/hostname").write_text("renamed-node\n")
    (root / "etc/profile.d/xivo_uuid.sh").write_text("export XIVO_UUID=wrong\n")
    cfg = write_config_file(tmp_path / "config.yml", config)
    return type("Lab", (), {"config": config, "cfg": str(cfg), "pg": pg_cluster, "root": root, "marks": marks})


def q(lab, sql, db="asterisk"):
    return lab.pg.psql(sql, db=db).strip()


def events(lab):
    emitter = open_emitter(lab.config)
    try:
        return [e for e in emitter.store.pending("t") if e["name"].startswith("restore_")]
    finally:
        emitter.store.close()


def test_restore_end_to_end_keeping_the_network(lab, capsys):
    assert main(["restore", "--config", lab.cfg]) == 0
    out = capsys.readouterr().out
    assert "step 10/10: start the telephony services" in out and "restore completed" in out
    # the database is the backup's ...
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "User"
    assert q(lab, "SELECT count(*) FROM extensions") == "20"
    assert q(lab, "SELECT count(*) FROM auth_token") == "0"  # never saved, as Wazo
    # ... except the node's own network tables
    assert q(lab, "SELECT address FROM netiface") == "198.51.100.7"
    assert q(lab, "SELECT count(*) FROM pg_database WHERE datname = 'asterisk_previous'", db="postgres") == "0"
    # files are the backup's, except the network files
    assert (lab.root / "etc/asterisk/pjsip.conf").read_text().startswith("content of etc/asterisk/pjsip.conf")
    assert (lab.root / "etc/hostname").read_text() == "renamed-node\n"
    # the UUID, the keys, the services
    assert (lab.root / "etc/profile.d/xivo_uuid.sh").read_text() == f"export XIVO_UUID={NODE_UUID}\n"
    assert f'DefaultEnvironment="XIVO_UUID={NODE_UUID}"' in (lab.root / "etc/systemd/system.conf").read_text()
    assert (lab.marks / "uuid").read_text() == f"{NODE_UUID}\n"
    assert (lab.marks / "keys").read_text() == "updated\n"
    assert (lab.marks / "services").read_text() == "stop\nstart\n"
    assert [e["name"] for e in events(lab)] == ["restore_completed"]


def test_restore_without_keep_network(lab, capsys):
    assert main(["restore", "--no-keep-network", "--config", lab.cfg]) == 0
    assert q(lab, "SELECT address FROM netiface") == "192.0.2.10"
    assert (lab.root / "etc/hostname").read_text().startswith("content of etc/hostname")


def test_failure_rolls_the_database_back_and_says_where(lab, capsys):
    lab.config.backup.update_keys_command = ["false"]
    write_config_file(Path(lab.cfg), lab.config)
    assert main(["restore", "--json", "--config", lab.cfg]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["stopped_at"] == 8 and report["rolled_back"] and "false exited with 1" in report["error"]
    assert "restore stopped at step 8 (run false); database asterisk rolled back" in captured.err
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "changed"  # the database as it was
    assert q(lab, "SELECT count(*) FROM pg_database WHERE datname = 'asterisk_previous'", db="postgres") == "0"
    assert (lab.marks / "services").read_text() == "stop\nstart\n"  # services restarted on the old database
    evs = events(lab)
    assert [e["name"] for e in evs] == ["restore_failed"] and evs[0]["data"]["stopped_at"] == 8


def test_other_version_refused_unless_forced_and_dry_run_changes_nothing(lab, capsys):
    lab.pg.psql("UPDATE infos SET wazo_version = '26.09'", db="asterisk")
    assert main(["restore", "--config", lab.cfg]) == 1
    captured = capsys.readouterr()
    assert "backup is of Wazo 26.08, this node runs 26.09" in captured.out + captured.err
    assert not (lab.marks / "services").exists()  # refused before stopping anything
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "changed"

    assert main(["restore", "--dry-run", "--force", "--config", lab.cfg]) == 0
    out = capsys.readouterr().out
    for n in range(1, 11):
        assert f"step {n}/10:" in out
    assert "rename database asterisk to asterisk_previous" in out
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "changed"
    assert not (lab.marks / "services").exists()
    assert [e["name"] for e in events(lab)] == ["restore_failed"]  # the refusal; the dry run emits nothing

    assert main(["restore", "--force", "--config", lab.cfg]) == 0
    assert q(lab, "SELECT wazo_version FROM infos") == "26.08"
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "User"


def test_restore_db_only_onto_a_server_without_the_database(tmp_path, lab, make_pg_cluster, capsys):
    fresh = make_pg_cluster()
    config = backup_config(tmp_path, root=lab.root, dsn=fresh.dsn("asterisk"), backup_dir=tmp_path / "other")
    cfg = write_config_file(tmp_path / "fresh.yml", config)
    db_tgz = Path(lab.config.backup.dir) / "db.tgz"
    assert main(["restore", "--db", str(db_tgz), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "extract data.tgz" in out and ": skipped" in out
    assert fresh.psql("SELECT count(*) FROM userfeatures", db="asterisk").strip() == "20"


def test_missing_backup_is_a_usage_error(tmp_path, capsys):
    config = backup_config(tmp_path, root=tmp_path, dsn="postgresql://nobody@127.0.0.1:1/asterisk")
    cfg = write_config_file(tmp_path / "c.yml", config)
    assert main(["restore", "--config", str(cfg)]) == 2
    assert "no such backup" in capsys.readouterr().err


def test_default_environment_editing():
    text = "[Manager]\n#DefaultEnvironment=\nDefaultEnvironment=\"A=1\" XIVO_UUID=old\n[Other]\nX=1\n"
    out = set_default_environment(text, "XIVO_UUID", "new")
    assert 'DefaultEnvironment="A=1" "XIVO_UUID=new"' in out and "old" not in out and "[Other]\nX=1" in out
    assert set_default_environment("", "XIVO_UUID", "u") == '[Manager]\nDefaultEnvironment="XIVO_UUID=u"\n'
    assert set_default_environment("[Manager]\n#x\n", "K", "v") == '[Manager]\nDefaultEnvironment="K=v"\n#x\n'


def test_sigterm_during_restore_rolls_back(lab, tmp_path):
    import signal
    import subprocess

    from harness import wait_for

    started = lab.marks / "keys-started"
    lab.config.backup.update_keys_command = [
        sys.executable, "-c", f"import time; open({str(started)!r}, 'w').close(); time.sleep(60)"]
    write_config_file(Path(lab.cfg), lab.config)
    proc = subprocess.Popen([sys.executable, "-m", "wazod", "restore", "--config", lab.cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(started.exists, timeout=60, interval=0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "restore stopped at step 8" in out and "rolled back" in out
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "changed"
    assert q(lab, "SELECT count(*) FROM pg_database WHERE datname = 'asterisk_previous'", db="postgres") == "0"
    assert (lab.marks / "services").read_text() == "stop\nstart\n"
    assert subprocess.run(["pgrep", "-f", str(started)], capture_output=True).returncode == 1  # child killed


def test_damaged_backup_refused_before_anything_changes(lab, capsys):
    db_tgz = Path(lab.config.backup.dir) / "db.tgz"
    raw = bytearray(db_tgz.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    db_tgz.write_bytes(bytes(raw))
    assert main(["restore", "--config", lab.cfg]) == 1
    captured = capsys.readouterr()
    assert "restore stopped at step 1" in captured.err and "db.tgz" in captured.err
    assert not (lab.marks / "services").exists()
    assert q(lab, "SELECT DISTINCT firstname FROM userfeatures") == "changed"
    assert (lab.root / "etc/asterisk/pjsip.conf").read_text() == "changed\n"


def test_restore_holds_every_job_and_ha_lock_for_its_duration(lab):
    """Issue 15 item 17: restore took only restore+backup; replication, sync, purge and HA could act meanwhile."""
    import subprocess

    from harness import wait_for

    from wazod.backup.restore import RESTORE_LOCKS
    from wazod.locks import is_held

    started, gate = lab.marks / "keys-started", lab.marks / "gate"
    lab.config.backup.update_keys_command = [
        sys.executable, "-c", "import os, sys, time\nopen(sys.argv[1], 'w').close()\n"
        "deadline = time.time() + 60\n"
        "while not os.path.exists(sys.argv[2]) and time.time() < deadline: time.sleep(0.05)\n",
        str(started), str(gate)]
    write_config_file(Path(lab.cfg), lab.config)
    proc = subprocess.Popen([sys.executable, "-m", "wazod", "restore", "--config", lab.cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(started.exists, timeout=60, interval=0.05)
        state_dir = lab.config.state_dir
        assert {op: is_held(state_dir, op) for op in RESTORE_LOCKS} == {op: True for op in RESTORE_LOCKS}
        for argv in (["purge", "--dry-run"], ["services", "start"], ["restore"]):
            other = subprocess.run([sys.executable, "-m", "wazod", *argv, "--config", lab.cfg],
                                   capture_output=True, text=True, timeout=60)
            assert other.returncode == 3, (argv, other.stdout, other.stderr)
        assert (lab.marks / "services").read_text() == "stop\n"  # nobody restarted them meanwhile
    finally:
        gate.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert not any(is_held(lab.config.state_dir, op) for op in RESTORE_LOCKS)
    assert (lab.marks / "services").read_text() == "stop\nstart\n"
