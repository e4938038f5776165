"""rsync runs: which paths, the argv, the --stats figures, exit codes in words."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

# rsync(1), EXIT VALUES
EXIT_CODES = {
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files or directories",
    4: "requested action not supported",
    5: "error starting the client-server protocol",
    6: "daemon unable to append to its log file",
    10: "error in socket I/O",
    11: "error in file I/O (disk full, or the destination directory missing or not writable?)",
    12: "error in the rsync protocol data stream (the other side died?)",
    13: "errors with program diagnostics",
    14: "error in IPC code",
    20: "interrupted by a signal",
    21: "some error returned by waitpid()",
    22: "error allocating core memory buffers",
    23: "partial transfer due to errors (some files could not be read or written)",
    24: "partial transfer because some source files vanished during the copy",
    25: "the --max-delete limit stopped deletions",
    30: "timeout in data send/receive",
    35: "timeout waiting for the daemon connection",
    255: "ssh failed (connection, authentication or host key)",
}

_STATS = {
    "files": r"Number of regular files transferred:\s*([\d,.]+)",
    "bytes": r"Total transferred file size:\s*([\d,.]+)",
    "deleted": r"Number of deleted files:\s*([\d,.]+)",
    "bytes_sent": r"Total bytes sent:\s*([\d,.]+)",
}


def exit_code_words(code: int) -> str:
    return EXIT_CODES.get(code, "unknown error")


def parse_stats(stdout: str) -> dict[str, int]:
    out = {}
    for key, pattern in _STATS.items():
        m = re.search(pattern, stdout)
        out[key] = int(re.sub(r"[,.]", "", m.group(1))) if m else 0
    return out


@dataclass
class Sources:
    """rsync source arguments (``<root>/./<path>`` so that -R keeps the path) and what was left out."""

    args: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def expand(paths: list[str], local_root: str, exclude_names: list[str] = ()) -> Sources:
    """Existing paths under ``local_root``; globs expanded, their matches named in ``exclude_names`` left out."""
    root = os.path.abspath(local_root)
    src = Sources()
    for path in paths:
        rel = path.lstrip("/")
        full = os.path.join(root, rel)
        if glob.has_magic(rel):
            matches = sorted(glob.glob(full))
            if not matches:
                src.missing.append(path)
            for m in matches:
                if os.path.basename(m.rstrip("/")) in exclude_names:
                    src.excluded.append("/" + os.path.relpath(m, root))
                else:
                    src.args.append(f"{root.rstrip('/')}/./{os.path.relpath(m, root)}")
        elif os.path.lexists(full):
            src.args.append(f"{root.rstrip('/')}/./{rel}")
        else:
            src.missing.append(path)
    return src


def destination(user: str, host: str, remote_root: str) -> str:
    from wazod.sync.ssh import bracket

    return f"{user}@{bracket(host)}:{remote_root}"
