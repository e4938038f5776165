"""DSN secrets: masked as libpq reads them, kept out of health values and events, never in a child's argv."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
import yaml
from harness.util import free_port

from wazod import dsn as dsnlib
from wazod.backup.pgtools import Pg
from wazod.cli import main
from wazod.config.sections.health import PostgresCheckSection
from wazod.errors import ConfigError
from wazod.events import open_emitter
from wazod.health.postgres import check_postgres
from wazod.secrets import MASK, mask_text


@pytest.mark.parametrize("text,secrets", [
    ("host=db password='s3 cr3t' user=x", ["s3 cr3t", "s3", "cr3t"]),
    ("host=db sslpassword=k3yp4ss sslmode=require", ["k3yp4ss"]),
    ("password=ab,cd dbname=asterisk", ["ab,cd", ",cd", "ab"]),
    ("postgresql://u:p@ss@h/db", ["p@ss", "ss@h"]),
    ("postgresql:///asterisk?password=qu3ry&sslmode=disable", ["qu3ry"]),
    ("cannot connect to postgresql://u:p@ss@h/db: refused", ["p@ss", "ss@h"]),
])
def test_mask_text_leaves_nothing_of_the_secret(text, secrets):
    masked = mask_text(text)
    assert MASK in masked
    for secret in secrets:
        assert secret not in masked, masked


def test_masked_key_value_dsn_is_still_the_same_connection():
    masked = mask_text("host=db port=5433 password='a b' dbname=asterisk")
    assert dsnlib.parse(masked) == {"host": "db", "port": "5433", "password": MASK, "dbname": "asterisk"}
    assert mask_text("postgresql:///asterisk") == "postgresql:///asterisk"


def test_unparsable_dsn_error_does_not_echo_it():
    with pytest.raises(ConfigError) as e:
        dsnlib.parse("host=db password='unterminated s3cret", "backup.dsn")
    assert "backup.dsn" in str(e.value) and "s3cret" not in str(e.value)


def test_config_check_masks_key_value_dsns(tmp_path, capsys):
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "disabled", "remote_address": "", "ha_conf": str(tmp_path / "ha.conf")},
        "backup": {"dsn": "host=db password='s3 cr3t' dbname=asterisk"},
        "purge": {"dsn": "host=db sslpassword=k3yp4ss dbname=asterisk"},
        "replication": {"target_dsn": "password=ab,cd host=db"},
    }))
    for extra in ([], ["--json"]):
        assert main(["--config", str(cfg), "config", "check", *extra]) == 0
        out = capsys.readouterr().out
        for secret in ("s3 cr3t", "cr3t", "k3yp4ss", "ab,cd", ",cd"):
            assert secret not in out


async def test_health_value_names_the_database_never_the_dsn():
    port = free_port()
    result = await check_postgres(PostgresCheckSection(
        dsn=f"host=127.0.0.1 port={port} user=wz password='s3 cr3t' dbname=asterisk", db_os_user=None, timeout=2))
    assert result.level == "critical"
    text = repr(result)
    assert "s3 cr3t" not in text and "cr3t" not in text and "password" not in text
    assert result.values["database"] == f"database asterisk on 127.0.0.1:{port} as wz"
    assert "dsn" not in result.values


def test_replication_failed_event_carries_no_dsn_secret(tmp_path, pg_cluster):
    pg_cluster.create_database("asterisk")
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "master", "remote_address": "127.0.0.1", "ha_conf": str(tmp_path / "ha.conf")},
        "replication": {"source_dsn": pg_cluster.dsn("asterisk"), "connect_timeout": 3,
                        "target_dsn": f"host=127.0.0.1 port={free_port()} password=ab,cd dbname=asterisk"},
    }))
    assert main(["--config", str(cfg), "replicate"]) == 1
    from wazod.config import load_config

    emitter = open_emitter(load_config(cfg).config)
    try:
        failed = [e for e in emitter.store.pending("t") if e["name"] == "replication_failed"]
    finally:
        emitter.store.close()
    assert failed and "cannot connect to the slave database asterisk" in failed[-1]["data"]["error"]
    assert "ab,cd" not in str(failed) and ",cd" not in str(failed)
    for path in (tmp_path / "state").rglob("*.json"):
        assert "ab,cd" not in path.read_text()


@pytest.fixture
def password_cluster(pg_cluster):
    """A role that must give its password (scram) over TCP: proof the secret reached libpq."""
    pg_cluster.psql("CREATE ROLE wz LOGIN PASSWORD 'pw:with\\odd chars'")
    hba = pg_cluster.datadir / "pg_hba.conf"
    hba.write_text("host all wz 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    pg_cluster.psql("SELECT pg_reload_conf()")
    return pg_cluster


async def test_password_never_in_a_childs_argv_nor_environment(password_cluster):
    secret = "pw:with\\odd chars"
    wrong = Pg.from_dsn(f"postgresql://wz@127.0.0.1:{password_cluster.port}/postgres?password=nope")
    with pytest.raises(Exception, match="password authentication failed"):
        await wrong.psql("SELECT 1")
    pg = Pg.from_dsn(f"postgresql://wz@127.0.0.1:{password_cluster.port}/postgres?password={quote(secret)}")
    me = psutil.Process()
    task = asyncio.create_task(pg.psql("SELECT current_user, pg_sleep(3)"))
    seen: dict[str, bytes] = {}

    async def running_psql():
        while not seen:
            for child in me.children(recursive=True):
                try:
                    if child.name() == "psql":
                        seen["cmdline"] = Path(f"/proc/{child.pid}/cmdline").read_bytes()
                        seen["environ"] = Path(f"/proc/{child.pid}/environ").read_bytes()
                        seen["passfile"] = next((v for v in seen["environ"].split(b"\0")
                                                 if v.startswith(b"PGPASSFILE=")), b"").split(b"=", 1)[-1]
                except psutil.NoSuchProcess:
                    seen.clear()
            await asyncio.sleep(0.02)

    await asyncio.wait_for(running_psql(), 10)
    assert b"psql" in seen["cmdline"] and b"dbname=postgres" in seen["cmdline"]
    for where in ("cmdline", "environ"):
        assert b"odd chars" not in seen[where] and b"pw:with" not in seen[where], where
    passfile = Path(seen["passfile"].decode())
    assert oct(passfile.stat().st_mode & 0o777) == "0o600"
    assert oct(passfile.parent.stat().st_mode & 0o777) == "0o700"
    out = await task
    assert out.split("|")[0] == "wz"  # the password reached libpq through the passfile
    assert not passfile.exists() and not passfile.parent.exists()
    assert os.environ.get("PGPASSFILE") is None


async def test_key_value_dsn_with_tls_keywords_reaches_asyncpg(pg_cluster, tmp_path):
    """asyncpg reads only URLs: a key=value DSN (TLS file keywords included) still connects."""
    from wazod import pgconnect

    ca = tmp_path / "no-ca.pem"
    dsn = (f"host={pg_cluster.host} port={pg_cluster.port} user=postgres dbname=postgres "
           f"sslmode=disable sslrootcert='{ca}' application_name='wazod test'")
    args = dsnlib.asyncpg_arguments(dsn)
    assert args["dsn"].startswith("postgresql://?") and "no-ca.pem" in args["dsn"]
    conn = await pgconnect.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_setting('application_name')") == "wazod test"
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match="purge.dsn: the connection keyword 'options' is not supported"):
        dsnlib.asyncpg_arguments("host=x options='-c a=b'", "purge.dsn")
