"""Continuous file sync (the master daemon's inotify part) with real rsync over the harness sshd."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from harness import wait_for_async

from wazod.config import Config, LoadedConfig
from wazod.context import Context
from wazod.events import open_emitter
from wazod.state import StateStore
from wazod.statusboard import StatusBoard
from wazod.sync.continuous import ContinuousSync

VM = "var/spool/asterisk/voicemail/default/1001"


def make_ctx(tmp_path, sshd) -> Context:
    config = Config.model_validate({
        "node": {"name": "pbx1", "state_dir": str(tmp_path / "state"), "uuid_file": str(tmp_path / "none")},
        "ha": {"node_type": "master", "remote_address": sshd.host},
        "sync": {
            "ssh_key": str(sshd.client_key), "ssh_port": sshd.port, "known_hosts": str(tmp_path / "known_hosts"),
            "local_root": str(tmp_path / "local"), "remote_root": str(tmp_path / "remote") + "/",
            "paths": ["/var/spool/asterisk/voicemail", "/var/lib/wazo/sounds/tenants/*/*"],
            "connect_timeout": 5, "batch_delay": 0.2,
        },
    })
    state = StateStore(config.node.state_dir)
    return Context(LoadedConfig(config, Path(tmp_path / "config.yml")), open_emitter(config), state,
                   StatusBoard(state, "pbx1", "master"))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def sync_events(ctx) -> list[dict]:
    return [e for e in ctx.emitter.store.after(0) if e["name"].startswith("sync_")]


@pytest.fixture
def tree(tmp_path, sshd):
    local, remote = tmp_path / "local", tmp_path / "remote"
    write(local / VM / "INBOX/msg0000.txt", "[message]\ncallerid=1002\n")
    write(local / VM / "INBOX/msg0000.wav", "RIFF" + "v" * 3000)
    write(local / "var/lib/wazo/sounds/tenants/t1/playback/hello.wav", "RIFF" + "h" * 500)
    (local / "var/lib/wazo/sounds/tenants/t1/monitor").mkdir(parents=True)
    remote.mkdir()
    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line() + "\n")
    return local, remote


async def test_changes_reach_the_slave_as_the_full_rsync_would_leave_them(tmp_path, sshd, tree):
    local, remote = tree
    ctx = make_ctx(tmp_path, sshd)
    part = ContinuousSync(ctx)
    task = asyncio.create_task(part.run())
    try:
        await wait_for_async(lambda: len(part._roots) == 2, timeout=20)  # voicemail, t1/playback

        async def copied(n: int) -> None:
            await wait_for_async(lambda: part.copies == n and not part.pending, timeout=60)

        # a new voicemail: only its folder is copied
        write(local / VM / "INBOX/msg0001.txt", "[message]\ncallerid=1003\n")
        write(local / VM / "INBOX/msg0001.wav", "RIFF" + "n" * 2000)
        await copied(1)
        assert (remote / VM / "INBOX/msg0001.wav").read_text() == "RIFF" + "n" * 2000
        assert (remote / VM / "INBOX/msg0000.wav").exists()  # the rest of the folder came along
        assert not (remote / "var/lib/wazo").exists()  # other synced paths were not walked
        event = sync_events(ctx)[-1]
        assert event["name"] == "sync_completed" and event["data"]["trigger"] == "continuous"
        assert event["data"]["files"] >= 2 and 0 < event["data"]["lag_s"] < 600

        # listened to: Asterisk renames it into Old/ (a rename across folders)
        (local / VM / "Old").mkdir()
        for ext in ("txt", "wav"):
            os.rename(local / VM / f"INBOX/msg0001.{ext}", local / VM / f"Old/msg0000.{ext}")
        await copied(2)
        assert (remote / VM / "Old/msg0000.wav").read_text() == "RIFF" + "n" * 2000
        assert not (remote / VM / "INBOX/msg0001.wav").exists()

        # deleted, and a whole mailbox removed
        (local / VM / "INBOX/msg0000.txt").unlink()
        await copied(3)
        assert not (remote / VM / "INBOX/msg0000.txt").exists() and (remote / VM / "INBOX/msg0000.wav").exists()
        shutil.rmtree(local / VM)
        await copied(4)
        assert not (remote / VM).exists() and (remote / "var/spool/asterisk/voicemail/default").is_dir()

        # a file in a directory that is not synced (call recordings) copies nothing: the next real change
        # is the one and only copy after it
        write(local / "var/lib/wazo/sounds/tenants/t1/monitor/call.wav", "recording")
        write(local / "var/lib/wazo/sounds/tenants/t1/playback/new.wav", "RIFF new")
        await copied(5)
        assert (remote / "var/lib/wazo/sounds/tenants/t1/playback/new.wav").read_text() == "RIFF new"
        assert not (remote / "var/lib/wazo/sounds/tenants/t1/monitor").exists()
        assert [e["name"] for e in sync_events(ctx)] == ["sync_completed"] * 5
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 20)
        ctx.emitter.store.close()


async def test_a_slave_out_of_reach_keeps_the_changes_and_copies_them_later(tmp_path, sshd, tree):
    local, remote = tree
    ctx = make_ctx(tmp_path, sshd)
    part = ContinuousSync(ctx)
    part.retry = 0.3
    sshd.stop()
    task = asyncio.create_task(part.run())
    try:
        await wait_for_async(lambda: len(part._roots) == 2, timeout=20)
        write(local / VM / "INBOX/msg0002.txt", "left while the slave was away")
        await wait_for_async(lambda: part.report.failures >= 1, timeout=60)
        assert not (remote / VM).exists()
        assert sync_events(ctx) == []  # a short outage is not an alarm
        sshd.start()
        await wait_for_async(lambda: part.copies == 1, timeout=60)
        assert (remote / VM / "INBOX/msg0002.txt").read_text() == "left while the slave was away"
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 20)
        ctx.emitter.store.close()
