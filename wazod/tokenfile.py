"""Static tokens kept in files: reading them, and refusing files others could read.

Both sides use it: the endpoint checking ``X-Auth-Token`` (``wazod.endpoint.auth``)
and the clients of the peer's endpoint (maintenance telling the peer). It sits
low so that both can import it. Tokens are never logged.
"""

from __future__ import annotations

import os
import stat

from wazod.logsetup import get_logger

log = get_logger("tokens")


def read_token_file(path: str | None) -> str | None:
    """The first line of ``path``, stripped; None when unset, missing, unreadable or empty."""
    if not path:
        return None
    try:
        with open(path) as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        log.error("token file cannot be read", file=path, error=getattr(e, "strerror", None) or type(e).__name__)
        return None
    return token or None


def exposure(path: str) -> str | None:
    """Why another local user could read or replace the token in ``path``, or None when only we can.

    A token that changes state must be private to root: a file readable by a group or by
    everyone, or owned by another user (who could rewrite it), gives it away.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}: others may read it (chmod 600)"
    return None
