"""Monotonic instants shown to the outside world.

The HA loop reasons in ``time.monotonic()`` (immune to NTP steps); events,
/status and /arbiter show wall-clock ISO timestamps. One conversion, shared by
the monitor and the arbiter's route, so neither imports the other for it.
"""

from __future__ import annotations

import datetime as dt
import time


def mono_to_iso(mono: float | None) -> str | None:
    """The wall-clock ISO time of a ``time.monotonic()`` instant of this process (None stays None)."""
    if mono is None:
        return None
    wall = time.time() - (time.monotonic() - mono)
    return dt.datetime.fromtimestamp(wall, dt.UTC).astimezone().isoformat()
