"""Issue 15 items 9 and 16: the state directory is root's alone.

A local user who could open ``locks/services.lock`` held a shared flock on it
and every takeover failed; CLI-made files (the outbox and its WAL, uuid, locks)
were world-readable. Here the real CLI makes the files under umask 000 in a
directory other users can reach, and ``nobody`` (runuser) tries to flock and read.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

NOBODY_FLOCK = ("import fcntl, os, sys\n"
                "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
                "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)\n"
                "print('locked')\n")


@pytest.fixture
def open_base():
    """A directory any user may traverse (pytest's tmp_path is 0700: it would hide the files anyway)."""
    base = Path(tempfile.mkdtemp(prefix="wazod-statedir-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def write_config(base: Path, state_dir: Path) -> Path:
    path = base / "config.yml"
    path.write_text(textwrap.dedent(f"""
        node: {{name: n1, state_dir: {state_dir}, uuid_file: /nonexistent}}
        ha: {{node_type: slave, remote_address: 127.0.0.1, ha_conf: /nonexistent,
              services: {{backend: command, start: [["true"]], stop: [["true"]], status: ["true"]}}}}
    """))
    os.chmod(path, 0o644)
    return path


def cli(*args, umask=0o000):
    return subprocess.run([sys.executable, "-m", "wazod", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, preexec_fn=lambda: os.umask(umask))


def as_nobody(*argv):
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True, timeout=30)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_cli_made_state_is_private_and_nobody_cannot_flock(open_base):
    state = open_base / "state"
    out = cli("services", "start", "--config", str(write_config(open_base, state)))
    assert out.returncode == 0, out.stderr
    assert mode(state) == 0o700
    assert mode(state / "locks") == 0o700
    made = [state / "locks" / "services.lock", state / "events.sqlite3", state / "uuid"]
    made += [p for p in (state / "events.sqlite3-wal", state / "events.sqlite3-shm") if p.exists()]
    for p in made:
        assert mode(p) == 0o600, f"{p} is {mode(p):04o}"
    tried = as_nobody(sys.executable, "-c", NOBODY_FLOCK, str(state / "locks" / "services.lock"))
    assert tried.returncode != 0 and "locked" not in tried.stdout
    assert "Permission denied" in tried.stderr


def test_old_world_readable_state_is_tightened(open_base):
    """A state directory and lock made 0755/0644 by an older wazod become 0700/0600 at the next run."""
    state = open_base / "state"
    (state / "locks").mkdir(parents=True)
    os.chmod(state, 0o755)
    os.chmod(state / "locks", 0o755)
    lock = state / "locks" / "services.lock"
    lock.write_text("")
    os.chmod(lock, 0o644)
    out = cli("services", "start", "--config", str(write_config(open_base, state)))
    assert out.returncode == 0, out.stderr
    assert (mode(state), mode(state / "locks"), mode(lock)) == (0o700, 0o700, 0o600)
    tried = as_nobody(sys.executable, "-c", NOBODY_FLOCK, str(lock))
    assert tried.returncode != 0 and "locked" not in tried.stdout


def test_state_dir_writable_by_others_is_refused(open_base):
    state = open_base / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    out = cli("services", "start", "--config", str(write_config(open_base, state)))
    assert out.returncode == 2, out
    assert str(state) in out.stderr and "writable by group or others" in out.stderr
    assert not (state / "locks").exists() and not (state / "events.sqlite3").exists()
