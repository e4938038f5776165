"""Helpers for the backup and restore tests: a Wazo-like root tree and a config for it.

The tree holds one file of each case Wazo's backup treats specially (see
shared/reference/wazo-behaviour.md): a sound file over 10 MB, a voicemail
inbox of 150 messages (a directory over the 100-entry rule), a sound directory
of 120 files, a core file, a recording under monitor, debug/full logs, provd
caches and Polycom firmware, the astdb journal. Owners, modes and times are set
to values the tests can check after a round trip.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from wazod.config import Config

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

OLD_MTIME = 1_600_000_000  # 2020-09-13: a time the tests check after extraction
OWNER = (1234, 2345)  # numeric owner/group, no need for the names to exist

KEPT = [
    "etc/asterisk/pjsip.conf", "etc/asterisk/extensions_extra.d/custom.conf", "etc/crontab", "etc/hostname",
    "etc/hosts", "etc/network/interfaces", "etc/resolv.conf", "etc/xivo/asterisk/xivo_globals.conf",
    "etc/wazo-confd/conf.d/50-local.yml", "etc/wazo-auth/key.yml", "etc/profile.d/xivo_uuid.sh",
    "usr/share/wazo/WAZO-VERSION", "var/lib/asterisk/astdb.sqlite3", "var/lib/asterisk/moh/default/small.wav",
    "var/log/asterisk/messages", "var/lib/wazo-auth-keys/wazo-calld-key.yml",
]
EXCLUDED = [
    "var/lib/asterisk/astdb.sqlite3-journal", "var/spool/asterisk/monitor/rec-1.wav", "var/spool/asterisk/core.4242",
    "var/log/asterisk/full", "var/log/asterisk/debug", "var/lib/wazo-provd/plugins/xivo-polycom-5.4/var/tftpboot/fw.ld",
    "var/lib/wazo-provd/plugins/xivo-aastra-4/var/cache/c.bin",
]
BIG_SOUND = "var/lib/asterisk/moh/default/huge.wav"
CROWDED_DIR = "var/lib/wazo/sounds/tenants/t1/playback"
INBOX = "var/spool/asterisk/voicemail/default/1001/INBOX"
OUTSIDE = "etc/passwd-not-in-the-list"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def make_wazo_root(root: Path, *, wazo_version: str = "26.08") -> Path:
    """Populate ``root`` with a small Wazo file tree; returns root."""
    for rel in KEPT:
        _write(root / rel, f"content of {rel}\n".encode() * 3)
    _write(root / "usr/share/wazo/WAZO-VERSION", f"{wazo_version}\n".encode())
    _write(root / "etc/profile.d/xivo_uuid.sh", b"export XIVO_UUID=00000000-0000-4000-8000-000000000001\n")
    _write(root / "etc/systemd/system.conf", b"[Manager]\n#DefaultEnvironment=\n")
    secret = root / "etc/asterisk/manager.conf"
    _write(secret, b"[general]\nsecret=abc\n", 0o640)
    os.chown(secret, *OWNER)
    os.utime(secret, (OLD_MTIME, OLD_MTIME))
    os.chmod(root / "etc/asterisk", 0o750)
    for rel in EXCLUDED:
        _write(root / rel, b"excluded\n")
    with open(root / BIG_SOUND, "wb") as f:  # 11 MB, sparse: cheap to make, over the 10 MB limit
        f.truncate(11 * 1024 * 1024)
    for i in range(120):
        _write(root / CROWDED_DIR / f"prompt-{i:03d}.wav", b"RIFF" + os.urandom(60))
    for i in range(150):
        _write(root / INBOX / f"msg{i:04d}.wav", b"RIFF" + os.urandom(200))
    os.symlink("pjsip.conf", root / "etc/asterisk/pjsip-link.conf")
    _write(root / OUTSIDE, b"not saved\n")
    return root


def backup_config(tmp_path: Path, *, root: Path, dsn: str, backup_dir: Path | None = None,
                  **backup: object) -> Config:
    """A Config whose backup section points at ``root``, ``dsn`` and a private directory."""
    section = {
        "dir": str(backup_dir or tmp_path / "backups"), "root": str(root), "dsn": dsn,
        "restore_services": "none", "uuid_apply_commands": [], "update_keys_command": None,
    }
    section.update(backup)
    return Config.model_validate({
        "node": {"name": "pbx-test", "state_dir": str(tmp_path / "state")},
        "ha": {"node_type": "disabled"},
        "backup": section,
    })


def write_config_file(path: Path, config: Config) -> Path:
    """The same config as a config.yml, for the CLI."""
    import yaml

    data = config.model_dump(mode="json", include={"node", "ha", "backup"})
    path.write_text(yaml.safe_dump(data))
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)
