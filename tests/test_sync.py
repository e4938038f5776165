"""File sync, --init and copy-back with real rsync over the harness sshd."""

from __future__ import annotations

import os
import time

import pytest

from wazod.config import Config
from wazod.sync import copy_back, init_keys, run


def make_config(tmp_path, sshd, **sync):
    base = {
        "ssh_key": str(sshd.client_key),
        "ssh_port": sshd.port,
        "known_hosts": str(tmp_path / "known_hosts"),
        "local_root": str(tmp_path / "local"),
        "remote_root": str(tmp_path / "remote") + "/",
        "paths": ["/etc/asterisk/extensions_extra.d", "/var/lib/wazo/sounds/tenants/*/*", "/var/lib/absent"],
        "connect_timeout": 5,
    }
    base.update(sync)
    return Config.model_validate({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "master", "remote_address": sshd.host},
        "sync": base,
    })


def write(path, text, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def tree(tmp_path, sshd):
    local, remote = tmp_path / "local", tmp_path / "remote"
    write(local / "etc/asterisk/extensions_extra.d/custom.conf", "[custom]\nexten => 1,1,NoOp()\n")
    write(local / "etc/asterisk/extensions_extra.d/old.conf", "old")
    write(local / "var/lib/wazo/sounds/tenants/t1/playback/hello.wav", "x" * 5000)
    write(local / "var/lib/wazo/sounds/tenants/t1/monitor/call.wav", "recording on the master")
    write(local / "var/lib/wazo/sounds/tenants/t1/recording/r.wav", "agent recording")
    remote.mkdir()
    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    return local, remote


async def test_sync_copies_paths_skips_missing_and_excludes_recordings(tmp_path, sshd, tree):
    local, remote = tree
    result = await run(make_config(tmp_path, sshd))
    assert result.status == "ok", result.error
    assert (remote / "etc/asterisk/extensions_extra.d/custom.conf").read_text().startswith("[custom]")
    assert (remote / "var/lib/wazo/sounds/tenants/t1/playback/hello.wav").stat().st_size == 5000
    assert not (remote / "var/lib/wazo/sounds/tenants/t1/monitor").exists()
    assert not (remote / "var/lib/wazo/sounds/tenants/t1/recording").exists()
    assert result.data["files"] == 3
    assert result.data["bytes"] == len("[custom]\nexten => 1,1,NoOp()\n") + 3 + 5000
    assert result.data["skipped_paths"] == ["/var/lib/absent"]
    assert "/var/lib/wazo/sounds/tenants/t1/monitor" in result.data["excluded_paths"]


async def test_deletions_and_changes_are_propagated(tmp_path, sshd, tree):
    local, remote = tree
    config = make_config(tmp_path, sshd)
    assert (await run(config)).status == "ok"
    (local / "etc/asterisk/extensions_extra.d/old.conf").unlink()
    write(local / "etc/asterisk/extensions_extra.d/custom.conf", "changed")
    result = await run(config)
    assert result.status == "ok", result.error
    assert not (remote / "etc/asterisk/extensions_extra.d/old.conf").exists()
    assert (remote / "etc/asterisk/extensions_extra.d/custom.conf").read_text() == "changed"
    assert result.data["deleted"] == 1 and result.data["files"] == 1


async def test_dry_run_transfers_nothing(tmp_path, sshd, tree):
    local, remote = tree
    result = await run(make_config(tmp_path, sshd), dry_run=True)
    assert result.status == "ok", result.error
    assert result.data["files"] == 3
    assert list(remote.iterdir()) == []


async def test_changed_host_key_is_refused(tmp_path, sshd, tree):
    local, remote = tree
    sshd.regenerate_host_key()  # the slave was reinstalled, or someone is in the middle
    result = await run(make_config(tmp_path, sshd))
    assert result.status == "failed"
    assert result.data["rsync_exit_code"] in (12, 255)
    assert "host key of 127.0.0.1 does not match" in result.error
    assert "wazod sync --init" in result.error
    assert list(remote.iterdir()) == []


async def test_missing_key_or_host_key_says_to_run_init(tmp_path, sshd, tree):
    result = await run(make_config(tmp_path, sshd, ssh_key=str(tmp_path / "nokey")))
    assert result.status == "failed" and "run `wazod sync --init`" in result.error
    result = await run(make_config(tmp_path, sshd, known_hosts=str(tmp_path / "none")))
    assert result.status == "failed" and "no host key recorded" in result.error


async def test_unreachable_node_explained(tmp_path, sshd, tree):
    from harness import free_port
    result = await run(make_config(tmp_path, sshd, ssh_port=free_port()))
    assert result.status == "failed"
    # ssh's failure (255), or rsync noticing the dead pipe first (12)
    assert result.data["rsync_exit_code"] in (12, 255)
    assert "cannot reach 127.0.0.1" in result.error and "Connection refused" in result.error


async def test_init_creates_key_records_host_key_and_checks_installation(tmp_path, sshd, tree):
    key = tmp_path / "keys" / "xivo_id_rsa"
    kh = tmp_path / "kh-init"
    config = make_config(tmp_path, sshd, ssh_key=str(key), known_hosts=str(kh))

    first = await init_keys(config, interactive=False)
    assert not first.ok
    assert key.exists() and "XiVO HA" in key.with_suffix(".pub").read_text()
    assert key.with_suffix(".pub").read_text().startswith("ssh-rsa ")
    assert sshd.host_public_key() in kh.read_text()
    assert "authorized_keys" in first.error and "no terminal" in first.error
    assert any("SHA256:" in fp for fp in first.host_key_fingerprints)

    # what ssh-copy-id would have done on the other node
    with open(sshd.authorized_keys, "a") as f:
        f.write(key.with_suffix(".pub").read_text())
    second = await init_keys(config, interactive=False)
    assert second.ok, second.error
    assert "using the existing key" in second.messages[0]
    result = await run(config)
    assert result.status == "ok", result.error
    assert result.data["files"] == 3


async def test_copy_back_moves_new_files_without_overwriting_newer_master_files(tmp_path, sshd):
    slave, master = tmp_path / "local", tmp_path / "remote"
    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    now = time.time()
    inbox = "var/spool/asterisk/voicemail/default/1001/INBOX"
    # recorded on the slave during the outage
    write(slave / inbox / "msg0000.wav", "new voicemail", mtime=now - 60)
    write(slave / "var/lib/wazo/sounds/tenants/t1/playback/greeting.wav", "old greeting", mtime=now - 7200)
    # the master's newer greeting, and a file only the master has
    write(master / "var/lib/wazo/sounds/tenants/t1/playback/greeting.wav", "new greeting", mtime=now - 600)
    write(master / "var/spool/asterisk/voicemail/default/1002/INBOX/msg0000.wav", "master only")
    config = make_config(tmp_path, sshd)
    config.ha.node_type = "slave"

    result = await copy_back(config, timeout=60)

    assert result.ok, result.error
    assert result.files == 1
    assert result.bytes == len("new voicemail")
    assert (master / inbox / "msg0000.wav").read_text() == "new voicemail"
    assert (master / "var/lib/wazo/sounds/tenants/t1/playback/greeting.wav").read_text() == "new greeting"
    assert (master / "var/spool/asterisk/voicemail/default/1002/INBOX/msg0000.wav").read_text() == "master only"


async def test_copy_back_keeps_an_older_master_file_it_replaces(tmp_path, sshd):
    slave, master = tmp_path / "local", tmp_path / "remote"
    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    now = time.time()
    inbox = "var/spool/asterisk/voicemail/default/1001/INBOX"
    write(master / inbox / "msg0000.txt", "message left before the outage", mtime=now - 86400)
    write(slave / inbox / "msg0000.txt", "message left during the outage", mtime=now - 60)
    result = await copy_back(make_config(tmp_path, sshd))
    assert result.ok, result.error
    assert (master / inbox / "msg0000.txt").read_text() == "message left during the outage"
    kept = [p for p in (master / inbox).iterdir() if p.name.startswith("msg0000.txt.wazod-copyback-")]
    assert len(kept) == 1 and kept[0].read_text() == "message left before the outage"


async def test_copy_back_reports_failure_without_raising(tmp_path, sshd):
    sshd.stop()
    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    write(tmp_path / "local/var/spool/asterisk/voicemail/x", "v")
    result = await copy_back(make_config(tmp_path, sshd), timeout=30)
    assert not result.ok and result.files == 0
    assert "cannot reach" in result.error


async def test_rsync_failure_is_explained_in_words(tmp_path, sshd, tree):
    config = make_config(tmp_path, sshd, remote_root=str(tmp_path / "no" / "such" / "dir") + "/")
    result = await run(config)
    assert result.status == "failed"
    code = result.data["rsync_exit_code"]
    assert code not in (0, 255)
    from wazod.sync.rsync import exit_code_words
    assert f"rsync exited with {code} ({exit_code_words(code)})" in result.error
