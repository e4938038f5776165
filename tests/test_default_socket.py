"""Every database job with the shipped defaults: no DSN in the configuration, Debian's socket, peer authentication.

The node's PostgreSQL is reached where a stock Wazo node has it: the socket
``/var/run/postgresql/.s.PGSQL.5432``, ``local all all peer`` and nothing
else. The configuration names no DSN at all, so ``backup.dsn``,
``purge.dsn``, ``replication.source_dsn`` and ``health.postgresql.dsn`` are
their shipped default ``postgresql:///asterisk``. Each job runs as the real
``wazod`` CLI (root, no PG* variable) in a mount namespace where that
socket is the test cluster's (tests/harness/default_socket.py); the
machine's own PostgreSQL on the same path is never seen nor touched.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest
import yaml
from harness.default_socket import DefaultSocketNode
from harness.pg import pg_bindir
from harness.util import run
from wazo_schema import SCHEMA_SQL, create_wazo_database, populate_sql

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and peer authentication need root")


@pytest.fixture
def node(pg_template):
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres system user")
    made = DefaultSocketNode(pg_template)
    yield made
    made.destroy()


def host_server_ready() -> bool:
    """Whether this machine's own PostgreSQL answers on the Debian socket, seen from outside the namespace."""
    return run([str(pg_bindir() / "pg_isready"), "-q", "-h", "/var/run/postgresql", "-p", "5432", "-t", "3"],
               check=False).returncode == 0


def test_every_job_with_no_dsn_configured(node, make_pg_cluster, tmp_path):
    host_ready_before = host_server_ready()
    node.psql("CREATE DATABASE asterisk")
    node.psql(SCHEMA_SQL + populate_sql(users=20, log_rows=200, days_span=800), db="asterisk")
    slave = make_pg_cluster()
    create_wazo_database(slave.create_database("asterisk"), users=2, log_rows=5,
                         node_uuid="00000000-0000-4000-8000-00000000000b")
    root = tmp_path / "root"
    (root / "usr/share/wazo").mkdir(parents=True)
    (root / "usr/share/wazo/WAZO-VERSION").write_text("26.08\n")
    config = {
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "master", "remote_address": "127.0.0.1", "ha_conf": str(tmp_path / "ha.conf")},
        "backup": {"dir": str(tmp_path / "backups"), "root": str(root), "restore_services": "none",
                   "uuid_apply_commands": [], "update_keys_command": None},
        # the slave is another machine: only the master side (source_dsn) is the default here
        "replication": {"target_dsn": slave.dsn("asterisk")},
    }
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump(config))
    effective = json.loads(node.wazod("config", "check", "--json", config=cfg).stdout)
    effective = effective.get("config", effective)
    for section, key in (("backup", "dsn"), ("purge", "dsn"), ("replication", "source_dsn")):
        assert effective[section][key] == "postgresql:///asterisk"
    assert effective["health"]["postgresql"]["dsn"] == "postgresql:///asterisk"

    backup = node.wazod("backup", config=cfg)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert (tmp_path / "backups/db.tgz").stat().st_size > 0

    verify = node.wazod("backup", "verify", "--deep", "--json", config=cfg)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is True, report
    assert not node.psql("SELECT datname FROM pg_database WHERE datname LIKE '%verify%'")  # scratch db dropped

    node.psql("UPDATE userfeatures SET firstname = 'changed after the backup'", db="asterisk")
    restore = node.wazod("restore", "--db", str(tmp_path / "backups/db.tgz"), config=cfg)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert node.psql("SELECT count(*) FROM userfeatures WHERE firstname = 'changed after the backup'",
                     db="asterisk") == "0"
    assert node.psql("SELECT count(*) FROM userfeatures", db="asterisk") == "20"

    old_cel = "SELECT count(*) FROM cel WHERE eventtime < now() - interval '366 days'"
    assert int(node.psql(old_cel, db="asterisk")) > 0
    purge = node.wazod("purge", config=cfg)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert node.psql(old_cel, db="asterisk") == "0"

    replicate = node.wazod("replicate", config=cfg)
    assert replicate.returncode == 0, replicate.stdout + replicate.stderr
    assert slave.psql("SELECT count(*) FROM userfeatures", db="asterisk").strip() == "20"

    health = node.python(
        "import asyncio, sys\n"
        "from wazod.config import load_config\n"
        "from wazod.health.postgres import check_postgres\n"
        f"config = load_config({str(cfg)!r}).config\n"
        "result = asyncio.run(check_postgres(config.health.postgresql))\n"
        "print(result.level, result.summary)\n")
    assert health.returncode == 0, health.stderr
    assert health.stdout.startswith("ok PostgreSQL"), health.stdout

    # outside the namespace nothing changed: the machine's own server (if it has one) still answers there
    assert host_server_ready() == host_ready_before
