"""The job runner's lock and records, and the scheduler's no-overlap and catch-up rules."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from harness import wait_for_async

from wazod.config import load_config
from wazod.context import Context
from wazod.errors import LockHeld, WrongRole
from wazod.events import EventStore, open_emitter
from wazod.jobs import JOBS, JobResult, JobSpec, check_role, run_job
from wazod.locks import OperationLock
from wazod.scheduler import JobScheduler, make_trigger, missed_since
from wazod.state import StateStore
from wazod.statusboard import StatusBoard


@pytest.fixture
def loaded(tmp_path):
    cfg = tmp_path / "config.yml"
    backups = tmp_path / "existing-backups"  # a backup set exists: no initial backup at start
    backups.mkdir()
    for name in ("data.tgz", "db.tgz"):
        (backups / name).write_bytes(b"x")
    cfg.write_text(textwrap.dedent(f"""
        node: {{name: n1, state_dir: {tmp_path / 'state'}, uuid_file: /nonexistent}}
        ha: {{node_type: master, remote_address: 127.0.0.1, ha_conf: /nonexistent}}
        backup: {{dir: {backups}}}
    """))
    return load_config(cfg)


async def counting_job(config, *, marker, hold=0.0, **_):
    """A real job body: appends a line to a file, optionally holding for a while."""
    with open(marker, "a") as f:
        f.write(f"{os.getpid()} {time.time()}\n")
    await asyncio.sleep(hold)
    return JobResult("purge", "ok", data={"rows": 3})


async def test_run_job_records_result_and_emits_event(loaded, tmp_path):
    config = loaded.config
    emitter = open_emitter(config)
    marker = tmp_path / "ran"
    result = await run_job("purge", config, emitter, entry=counting_job, marker=marker)
    assert result.status == "ok" and marker.read_text().count("\n") == 1
    rec = StateStore(config.node.state_dir).read("job-purge")
    assert rec["last_result"] == "ok" and rec["data"] == {"rows": 3} and rec["last_success"] == rec["last_run"]
    ev = emitter.store.after(0)[-1]
    assert ev["name"] == "purge_completed" and ev["data"]["rows"] == 3 and ev["node"] == "n1"


async def test_failing_job_becomes_failed_result_and_event(loaded):
    async def broken(config, **_):
        raise RuntimeError("disk on fire")

    emitter = open_emitter(loaded.config)
    result = await run_job("backup", loaded.config, emitter, entry=broken)
    assert result.status == "failed" and "disk on fire" in result.error
    ev = emitter.store.after(0)[-1]
    assert ev["name"] == "backup_failed" and "disk on fire" in ev["data"]["error"]


async def test_lock_held_by_another_process_is_refused(loaded, tmp_path):
    state_dir = loaded.config.node.state_dir
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from wazod.locks import OperationLock
        lock = OperationLock({state_dir!r}, "purge"); lock.acquire()
        print("held", flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=rf"pid {holder.pid}"):
            await run_job("purge", loaded.config, None, entry=counting_job, marker=tmp_path / "m")
        assert not (tmp_path / "m").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with the process: the next run goes through
    await run_job("purge", loaded.config, None, entry=counting_job, marker=tmp_path / "m")
    assert (tmp_path / "m").exists()


def test_lock_exit_code_3_from_cli(loaded):
    """A CLI job command against a held lock exits 3 (the contract's code), names the holder, runs nothing."""
    with OperationLock(loaded.config.node.state_dir, "purge"):
        done = subprocess.run([sys.executable, "-m", "wazod", "purge", "--config", str(loaded.path)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert f"pid {os.getpid()}" in done.stderr, done.stderr
    assert StateStore(loaded.config.node.state_dir).read("job-purge") is None  # the job never started


def test_check_role():
    check_role(JOBS["purge"], "slave")
    with pytest.raises(WrongRole) as exc:
        check_role(JOBS["replication"], "slave")
    assert exc.value.exit_code == 4


MISSED_CASES = [
    # schedule, last run (minutes ago), now offset, missed?
    ("0 * * * *", 130, True),   # two hourly runs missed -> run once
    ("0 * * * *", None, False),  # never ran: no catch-up (the first schedule will run it)
    ("25 3 * * *", 60 * 24 * 3, True),
    ("*/5 * * * *", 1, False),
]


@pytest.mark.parametrize("expr,ago,expected", MISSED_CASES)
def test_missed_since(expr, ago, expected):
    now = dt.datetime(2026, 11, 27, 10, 2, tzinfo=dt.UTC)
    last = None if ago is None else now - dt.timedelta(minutes=ago)
    assert missed_since(make_trigger(expr), last, now) is expected


def _ctx(loaded):
    state = StateStore(loaded.config.node.state_dir)
    emitter = open_emitter(loaded.config)
    return Context(loaded, emitter, state, StatusBoard(state, "n1", loaded.config.role))


async def test_scheduler_catch_up_runs_once_and_no_overlap(loaded, tmp_path, monkeypatch):
    """A job missed while the daemon was down runs once soon after start; never twice at once."""
    marker = tmp_path / "ran"
    release = asyncio.Event()

    async def entry(config, **_):
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        await release.wait()  # held until the test has fired the second trigger
        return JobResult("purge", "ok", data={})

    monkeypatch.setitem(JOBS, "purge", JobSpec("purge", "tests:unused", None))
    monkeypatch.setattr(JobSpec, "load", lambda self: entry)
    monkeypatch.setattr("wazod.scheduler.CATCH_UP_DELAY", 0.2)
    # last run three days ago: several nightly runs were missed while "down"
    state = StateStore(loaded.config.node.state_dir)
    state.write("job-purge", {"last_run": (dt.datetime.now().astimezone() - dt.timedelta(days=3)).isoformat()})
    ctx = _ctx(loaded)
    sched = JobScheduler(ctx)
    assert "purge" in sched.catch_up()
    task = asyncio.create_task(sched.run())
    await wait_for_async(marker.exists, timeout=20)  # the catch-up run has started and is held
    await asyncio.wait_for(sched._fire("purge"), 10)  # a second trigger while it runs: skipped, not queued
    release.set()
    await wait_for_async(lambda: (state.read("job-purge") or {}).get("last_result") == "ok", timeout=20)
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)
    assert marker.read_text().count("\n") == 1
    # the record is now recent: a restart does not catch up again
    assert "purge" not in JobScheduler(_ctx(loaded)).catch_up()


async def test_scheduler_skips_run_when_cli_holds_lock(loaded, tmp_path, monkeypatch):
    marker = tmp_path / "ran"

    async def entry(config, **_):
        return await counting_job(config, marker=marker)

    monkeypatch.setattr(JobSpec, "load", lambda self: entry)
    ctx = _ctx(loaded)
    sched = JobScheduler(ctx)
    with OperationLock(loaded.config.node.state_dir, "backup"):
        await sched._fire("backup")
    assert not marker.exists()
    await sched._fire("backup")
    assert marker.exists()


def test_scheduler_schedules_only_jobs_of_the_role(loaded, tmp_path):
    ctx = _ctx(loaded)
    assert set(JobScheduler(ctx).applicable_jobs()) == {"replication", "sync", "backup", "purge"}
    slave = loaded.config.model_copy(deep=True)
    slave.ha.node_type = "slave"
    ctx.loaded.config = slave
    assert set(JobScheduler(ctx).applicable_jobs()) == {"backup", "purge"}


def test_seq_is_shared_by_processes_and_survives_restart(loaded):
    config = loaded.config
    e1 = open_emitter(config)
    first = e1.emit("daemon_started", {})
    code = textwrap.dedent(f"""
        from wazod.config import load_config
        from wazod.events import open_emitter
        e = open_emitter(load_config({str(loaded.path)!r}).config)
        for _ in range(5): e.emit("purge_completed", {{}})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    e1.store.close()
    e2 = open_emitter(config)
    last = e2.emit("daemon_stopping", {})
    assert last["seq"] == first["seq"] + 6
    seqs = [e["seq"] for e in EventStore(config.state_dir / "events.sqlite3").after(0)]
    assert seqs == list(range(first["seq"], last["seq"] + 1))
    assert last["origin_uuid"] == first["origin_uuid"]
    dt.datetime.fromisoformat(last["timestamp"])  # ISO 8601 with offset
    assert last["timestamp"][-6] in "+-"
    assert json.loads(json.dumps(last)) == last


async def test_first_backup_runs_at_start_when_none_exists(loaded, tmp_path, monkeypatch):
    """A fresh install (no data.tgz/db.tgz in backup.dir) gets its first backup right after start;
    a restart with a set in place takes none."""
    marker = tmp_path / "ran"

    def load(spec):
        async def named(config, **_):
            with open(marker, "a") as f:
                f.write(f"{spec.name}\n")
            return JobResult(spec.name, "ok", data={})
        return named

    monkeypatch.setattr(JobSpec, "load", load)
    monkeypatch.setattr("wazod.scheduler.CATCH_UP_DELAY", 0.1)
    cfg = loaded.config
    cfg.backup.dir = str(tmp_path / "backups")
    ctx = _ctx(loaded)
    task = asyncio.create_task(JobScheduler(ctx).run())
    await wait_for_async(marker.exists, timeout=20, message="no initial backup was started")
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)
    assert marker.read_text() == "backup\n"
    # with a backup set present, a restart takes none
    (tmp_path / "backups").mkdir(exist_ok=True)
    for name in ("data.tgz", "db.tgz"):
        (tmp_path / "backups" / name).write_bytes(b"x")
    marker.unlink()
    ctx = _ctx(loaded)
    sched = JobScheduler(ctx)
    task = asyncio.create_task(sched.run())
    # run() decides synchronously once its scheduler is running; a purge then planned with the same
    # delay fires after the first backup would have: when it has run, no backup came before it
    await wait_for_async(lambda: sched.scheduler is not None and sched.scheduler.running, timeout=10)
    sched.start_extra("purge", 0.1)
    await wait_for_async(lambda: (StateStore(cfg.node.state_dir).read("job-purge") or {}).get("last_result"),
                         timeout=20)
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)
    assert marker.read_text() == "purge\n"


async def test_maintenance_holds_the_jobs_it_names(loaded, tmp_path, monkeypatch):
    """Replication is held while maintenance is on; backup runs unless maintenance holds it too."""
    marker = tmp_path / "ran"

    async def entry(config, **_):
        return await counting_job(config, marker=marker)

    monkeypatch.setattr(JobSpec, "load", lambda self: entry)
    ctx = _ctx(loaded)
    held = {"replication", "sync"}
    ctx.registry["maintenance_holds"] = lambda job: job in held
    sched = JobScheduler(ctx)
    await sched._fire("replication")
    assert not marker.exists()
    await sched._fire("backup")
    assert marker.read_text().count("\n") == 1
    held.add("backup")  # maintenance.hold_backup: true
    await sched._fire("backup")
    assert marker.read_text().count("\n") == 1
