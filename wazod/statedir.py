"""The state directory is root's alone: 0700, owned by wazod's user, never writable by others.

Lock files, the outbox, job records and the node's UUID live there. Another
local user who could open a lock file could hold a shared ``flock`` on it and
block every takeover; one who could write the directory could replace any
file. So the directory (and its ``locks/``) is created 0700 whatever the
umask, an existing one that group or others may write (or that another user
owns) is refused with a sentence saying how to fix it, and the files inside
are created 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wazod.errors import ConfigError

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` 0700 if missing (parents as usual), else check it; returns it.

    An existing directory owned by us that is readable by others (made by an
    older wazod under umask 022) is tightened to 0700; one that group or
    others may write, or that another user owns, is refused (ConfigError).
    """
    path = Path(path)
    try:
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
        return path
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return ensure_private_dir(path)
    except FileExistsError:
        pass
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"state directory {path} is not a directory (node.state_dir)")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"state directory {path} belongs to uid {st.st_uid}, not to wazod's user "
                          f"(uid {os.geteuid()}): refused; chown it or choose another node.state_dir")
    if st.st_mode & 0o022:
        raise ConfigError(f"state directory {path} is writable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}): refused, another local user could replace its files; "
                          f"check its content, then chmod 700 {path}")
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: str | os.PathLike) -> None:
    """Make an existing file of ours 0600 (it may date from a version that made it 0644)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, FILE_MODE)
