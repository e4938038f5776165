"""Issue 15 item 8: restore's check step refuses hostile data archives before anything changes.

Each archive is a real .tgz built with Python's tarfile: one harmless member plus
one a backup of this node cannot hold. ``wazod restore --data`` must stop at
step 1 naming the member, with nothing extracted (the harmless file is not
written either) and the services untouched.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest
from harness.backup import backup_config, write_config_file

from wazod.cli import main

HARMLESS = "etc/asterisk/extensions_custom.conf"


def member(name, kind=tarfile.REGTYPE, mode=0o644, linkname="", pax=None, data=b""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        info.pax_headers = pax
    return info, data


def build(path: Path, *members, fmt=tarfile.GNU_FORMAT) -> Path:
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in [member("etc/asterisk", tarfile.DIRTYPE, 0o755),
                           member(HARMLESS, data=b"[custom]\n"), *members]:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.fixture
def node(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    marks = tmp_path / "marks"
    writer = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"]
    config = backup_config(tmp_path, root=root, dsn="postgresql://nobody@127.0.0.1:1/asterisk",
                           restore_services="ha")
    config.ha.services.backend = "command"
    config.ha.services.stop = [[*writer, str(marks), "stop"]]
    config.ha.services.start = [[*writer, str(marks), "start"]]
    cfg = write_config_file(tmp_path / "config.yml", config)
    return type("Node", (), {"root": root, "cfg": str(cfg), "marks": marks, "dir": tmp_path})


HOSTILE = {
    "world-writable device": (member("var/lib/wazo/tty", tarfile.CHRTYPE, 0o666),
                              "var/lib/wazo/tty: a character device"),
    "fifo": (member("var/spool/asterisk/fifo", tarfile.FIFOTYPE), "a FIFO"),
    "setuid root file": (member("usr/local/bin/rootsh", mode=0o4755, data=b"#!/bin/sh\n"), "setuid bit"),
    "setgid file": (member("usr/local/bin/grp", mode=0o2755, data=b"x"), "setgid bit"),
    "cron.d outside backup.paths": (member("etc/cron.d/evil", data=b"* * * * * root id\n"),
                                    "etc/cron.d/evil: outside backup.paths"),
    "absolute symlink": (member("var/lib/wazo/shadow", tarfile.SYMTYPE, linkname="/etc/shadow"),
                         "symbolic link to '/etc/shadow'"),
    "escaping relative symlink": (member("var/lib/wazo/up", tarfile.SYMTYPE, linkname="../../../../etc"),
                                  "leaves the restored tree"),
    "relative symlink outside paths": (member("var/lib/wazo/sh", tarfile.SYMTYPE, linkname="../../../etc/shadow"),
                                       "outside backup.paths"),
    "dot-dot name": (member("etc/asterisk/../../etc/cron.d/x", data=b"x"), "'..' in the name"),
    "absolute name": (member("/etc/cron.d/abs", data=b"x"), "absolute name"),
    "hard link outside": (member("var/lib/wazo/pw", tarfile.LNKTYPE, linkname="etc/shadow"), "hard link"),
    "pax path hiding a name": (member("etc/asterisk/fine.conf", data=b"x", pax={"path": "etc/cron.d/paxed"}),
                               "etc/cron.d/paxed: outside backup.paths"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_refused_before_anything_changes(node, case, capsys):
    bad, expected = HOSTILE[case]
    fmt = tarfile.PAX_FORMAT if bad[0].pax_headers else tarfile.GNU_FORMAT
    data = build(node.dir / "evil.tgz", bad, fmt=fmt)
    assert main(["restore", "--config", node.cfg, "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "restore stopped at step 1" in err and expected in err, err
    assert not (node.root / HARMLESS).exists()
    assert not node.marks.exists()  # services never stopped
    assert not any((node.root / "etc").iterdir())


def test_wazo_like_links_pass_the_check_and_are_restored(node, capsys):
    """systemd's unit links point into /lib/systemd, a masked unit to /dev/null; relative links inside paths."""
    good = build(node.dir / "good.tgz",
                 member("etc/systemd", tarfile.DIRTYPE, 0o755),
                 member("etc/systemd/system", tarfile.DIRTYPE, 0o755),
                 member("etc/systemd/system/a.service", tarfile.SYMTYPE, linkname="/lib/systemd/system/a.service"),
                 member("etc/systemd/system/b.service", tarfile.SYMTYPE, linkname="/dev/null"),
                 member("etc/asterisk/link.conf", tarfile.SYMTYPE, linkname="extensions_custom.conf"),
                 member("var/spool/asterisk", tarfile.DIRTYPE, 0o2775))
    assert main(["restore", "--config", node.cfg, "--data", str(good)]) == 0, capsys.readouterr()
    assert (node.root / "etc/asterisk/link.conf").read_text() == "[custom]\n"
    assert str((node.root / "etc/systemd/system/b.service").readlink()) == "/dev/null"
    assert node.marks.read_text() == "stop\nstart\n"
