#!/usr/bin/env python3
"""Print the wazod(8) man page, generated from the command line's argparse parser.

The body comes from argparse-manpage (Debian's python3-argparse-manpage, a
build dependency of the package); this script adds the section number, the
header and the sections argparse has no place for (files, signals, exit
status). Run it with a Python that imports wazod (the package build uses the
fresh virtualenv); Debian's dist-packages is appended to the path when
argparse-manpage is not installed there.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

try:
    from build_manpages.manpage import Manpage
except ImportError:  # a virtualenv without system packages: take Debian's copy
    sys.path.append("/usr/lib/python3/dist-packages")
    from build_manpages.manpage import Manpage

from wazod import __version__
from wazod.cli import build_parser

EXTRA_SECTIONS = [
    ("Exit status", "0 ok, 1 failed, 2 bad usage or configuration, 3 lock held by another wazod, 4 wrong role "
                    "for this node (for example replicate on the slave)."),
    ("Signals", "wazod run stops cleanly on SIGTERM (running jobs reach a safe point first) and reloads its "
                "configuration on SIGHUP, keeping the running one when the new one is invalid."),
    ("Files", "/etc/wazod/config.yml and /etc/wazod/conf.d/*.yml (the first conf.d file defining a key wins); "
              "/etc/xivo/ha.conf (Wazo's HA settings); /var/lib/wazod (state, 0700); "
              "/var/log/wazod.log (logging.file, on a Wazo node); /usr/share/snmp/mibs/WAZOD-MIB.txt."),
    ("See also", "systemctl(1), journalctl(1), logrotate(8); the README in /usr/share/doc/wazod."),
]


def render() -> str:
    parser = build_parser()
    parser.man_short_description = "supervisor of a Wazo IPBX node and HA pair"
    parser._manpage = [{"heading": heading, "content": content} for heading, content in EXTRA_SECTIONS]
    body = str(Manpage(parser))
    # reproducible builds: dpkg-buildpackage sets SOURCE_DATE_EPOCH to the changelog's date
    day = datetime.datetime.fromtimestamp(int(os.environ.get("SOURCE_DATE_EPOCH") or time.time()), datetime.UTC)
    header = f'.TH WAZOD 8 "{day:%Y-%m-%d}" "wazod {__version__}" "System Administration"'
    lines = body.splitlines()
    if not lines or not lines[0].startswith(".TH "):
        raise SystemExit("manpage: argparse-manpage's output has no .TH header line")
    return "\n".join([header, *lines[1:]]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
