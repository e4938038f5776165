"""Issue 15 items 10 and 12: what a backup set holds and how it is installed.

Real files, real tar, real backup runs (data part: no database needed).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tarfile
from pathlib import Path

from harness.backup import backup_config

from wazod.backup import run

NO_DB = "postgresql://nobody@127.0.0.1:1/asterisk"
VOICEMAIL = "var/spool/asterisk/voicemail/default/1001/INBOX/msg0001.wav"


def test_symlinked_top_path_is_saved_with_its_content(tmp_path):
    """The spool moved to a bigger disk and linked back: the voicemails were missing, the backup said ok."""
    root, bigdisk = tmp_path / "root", tmp_path / "bigdisk"
    (bigdisk / "spool" / Path(VOICEMAIL).relative_to("var/spool/asterisk").parent).mkdir(parents=True)
    (bigdisk / "spool" / Path(VOICEMAIL).relative_to("var/spool/asterisk")).write_bytes(b"RIFF voicemail")
    (root / "var/spool").mkdir(parents=True)
    os.symlink(bigdisk / "spool", root / "var/spool/asterisk")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("pbx\n")
    config = backup_config(tmp_path, root=root, dsn=NO_DB, paths=["etc/hostname", "var/spool/asterisk"], exclude=[])
    result = asyncio.run(run(config, what="data"))
    assert result.status == "ok", result.error
    assert result.data["followed_links"] == [{"path": "var/spool/asterisk", "target": str(bigdisk / "spool")}]
    data_tgz = Path(config.backup.dir) / "data.tgz"
    with tarfile.open(data_tgz) as tar:
        names = {m.name.rstrip("/"): m for m in tar.getmembers()}
        assert names[VOICEMAIL].isfile()
        assert tar.extractfile(names[VOICEMAIL]).read() == b"RIFF voicemail"
        assert not any(m.issym() for m in names.values())
    manifest = json.loads((Path(config.backup.dir) / "data.manifest.json").read_text())
    assert manifest["followed_links"][0]["path"] == "var/spool/asterisk"
    # Wazo's own restore command puts the files back
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    subprocess.run(["tar", "xpf", str(data_tgz), "-C", str(fresh)], check=True)
    assert (fresh / VOICEMAIL).read_bytes() == b"RIFF voicemail"
