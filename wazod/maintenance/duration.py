"""Durations as an administrator types them: ``3600``, ``90m``, ``2h``, ``1h30m``, ``1.5h``, ``45s``, ``1d``.

A bare number is seconds (the contract's unit for every duration); units are
s, m (or min), h and d and may be chained, largest first or not.
"""

from __future__ import annotations

import re

from wazod.errors import ExitCode, WazodError

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(min|[smhd]?)\s*", re.IGNORECASE)
_HINT = "use seconds (3600) or a number with s, m, h or d (90m, 2h, 1h30m)"


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``; a ``WazodError`` (exit 2) naming the value otherwise. Zero is refused:
    a maintenance of no time is a typo, not a request."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text)
        pos, seconds, parts = 0, 0.0, 0
        while pos < len(raw):
            m = _PART.match(raw, pos)
            if not m or m.end() == pos:
                raise WazodError(f"invalid duration {raw!r}: {_HINT}", ExitCode.USAGE)
            unit = m.group(2).lower()
            if unit == "" and (parts or m.end() < len(raw.rstrip())):
                # "90 30m" or "1h30": a bare number only stands alone
                raise WazodError(f"invalid duration {raw!r}: {_HINT}", ExitCode.USAGE)
            seconds += float(m.group(1)) * _UNITS[unit]
            parts += 1
            pos = m.end()
        if parts == 0:
            raise WazodError(f"invalid duration {raw!r}: {_HINT}", ExitCode.USAGE)
    if seconds <= 0 or seconds != seconds:
        raise WazodError(f"invalid duration {text!r}: must be more than zero", ExitCode.USAGE)
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``; the inverse of parse_duration for display (whole seconds)."""
    total = max(0, round(seconds))
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            out.append(f"{total // size}{unit}")
            total %= size
    return "".join(out) or "0s"
