"""``wazod replicate`` and ``wazod sync`` from the command line: roles, exit codes, records, events."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
import wazo_schema
import yaml


def wazod(config_path, *args):
    return subprocess.run([sys.executable, "-m", "wazod", "--config", str(config_path), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WAZOD_CONFIG": str(config_path)})


def write_config(tmp_path, node_type, **sections):
    doc = {"node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
           "ha": {"node_type": node_type, "remote_address": "127.0.0.1"}, **sections}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def master_config(tmp_path, pg_pair):
    """A master's config replicating a 10-user Wazo database into the pair's slave (3 users, its own UUID)."""
    master = pg_pair.master.create_database("asterisk")
    slave = pg_pair.slave.create_database("asterisk")
    wazo_schema.create_wazo_database(master, users=10, log_rows=10)
    wazo_schema.create_wazo_database(slave, users=3, log_rows=10,
                                     node_uuid="00000000-0000-4000-8000-00000000000b")
    cfg = write_config(tmp_path, "master", replication={
        "source_dsn": master, "target_dsn": f"postgresql://postgres@{{remote_address}}:{pg_pair.slave.port}/asterisk"})
    return cfg


@pytest.mark.parametrize("command", [["replicate"], ["sync"], ["replicate", "--dry-run"]])
def test_off_the_master_exit_4(tmp_path, command):
    proc = wazod(write_config(tmp_path, "slave"), *command)
    assert proc.returncode == 4, proc.stderr
    assert "master" in proc.stderr


def test_sync_init_refused_on_a_disabled_node(tmp_path):
    proc = wazod(write_config(tmp_path, "disabled"), "sync", "--init")
    assert proc.returncode == 4


def test_replicate_cli_records_result_and_emits_events(tmp_path, pg_pair):
    cfg = master_config(tmp_path, pg_pair)

    dry = wazod(cfg, "replicate", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["dry_run"] is True and doc["data"]["would_copy"]["userfeatures"] == 10

    first = wazod(cfg, "replicate", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "ok"
    second = wazod(cfg, "replicate")
    assert second.returncode == 0 and "replication: skipped" in second.stdout

    record = json.loads((tmp_path / "state" / "job-replication.json").read_text())
    assert record["last_result"] == "skipped"
    with sqlite3.connect(tmp_path / "state" / "events.sqlite3") as db:
        names = [r[0] for r in db.execute("SELECT name FROM events ORDER BY seq")]
    assert names == ["replication_completed", "replication_skipped"]

    pg_pair.slave.psql("UPDATE infos SET wazo_version = '26.01'", db="asterisk")
    failed = wazod(cfg, "replicate", "--force")
    assert failed.returncode == 1
    assert "wazo_version" in failed.stdout


def test_replicate_from_the_kept_configuration_copies_a_change_without_validating_again(tmp_path, pg_pair):
    """The second run takes its sections from the validated-configuration cache (pydantic and PyYAML never
    imported) and still copies what changed on the master, with the same DSNs."""
    cfg = master_config(tmp_path, pg_pair)
    env = {**os.environ, "WAZOD_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-m", "wazod", "replicate", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0 and "replication: ok" in first.stdout, first.stdout + first.stderr
    assert len(list((tmp_path / "cache").glob("config-*.json"))) == 1

    pg_pair.master.psql("UPDATE userfeatures SET firstname = 'Kept' WHERE id = (SELECT min(id) FROM userfeatures)",
                        db="asterisk")
    modules = tmp_path / "modules.json"
    code = ("import atexit, json, sys\n"
            f"atexit.register(lambda: open({str(modules)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
            f"sys.argv = ['wazod', 'replicate', '--config', {str(cfg)!r}]\n"
            "from wazod.cli import main\nraise SystemExit(main())\n")
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 0 and "replication: ok" in second.stdout, second.stdout + second.stderr
    loaded = {m.split(".")[0] for m in json.loads(modules.read_text())}
    assert not loaded & {"pydantic", "pydantic_core", "yaml"}, sorted(loaded & {"pydantic", "pydantic_core", "yaml"})
    copied = pg_pair.slave.psql("SELECT count(*) FROM userfeatures WHERE firstname = 'Kept'", db="asterisk")
    assert copied.strip() == "1"


def test_sync_cli_over_sshd_and_init_without_terminal(tmp_path, sshd):
    src = tmp_path / "local" / "etc" / "asterisk" / "extensions_extra.d"
    src.mkdir(parents=True)
    (src / "a.conf").write_text("[a]\n")
    (tmp_path / "remote").mkdir()
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line() + "\n")
    cfg = write_config(tmp_path, "master", ha={"node_type": "master", "remote_address": sshd.host}, sync={
        "ssh_key": str(sshd.client_key), "ssh_port": sshd.port, "known_hosts": str(kh),
        "local_root": str(tmp_path / "local"), "remote_root": str(tmp_path / "remote") + "/",
        "paths": ["/etc/asterisk/extensions_extra.d"]})
    done = wazod(cfg, "sync", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["files"] == 1
    assert (tmp_path / "remote/etc/asterisk/extensions_extra.d/a.conf").read_text() == "[a]\n"

    # --init on the slave: the key is accepted already, the host key is recorded again
    slave_cfg = write_config(tmp_path, "slave", ha={"node_type": "slave", "remote_address": sshd.host}, sync={
        "ssh_key": str(sshd.client_key), "ssh_port": sshd.port, "known_hosts": str(tmp_path / "kh2")})
    init = wazod(slave_cfg, "sync", "--init", "--json")
    assert init.returncode == 0, init.stdout + init.stderr
    assert json.loads(init.stdout)["ok"] is True
    assert sshd.host_public_key() in (tmp_path / "kh2").read_text()
