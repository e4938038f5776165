"""Small persistent state files in ``node.state_dir``, written atomically.

Job records (last run, result, duration), the daemon's status snapshot, the
maintenance flag... each is one JSON file, so ``wazod status`` can answer from
disk when the daemon is down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wazod.fsutil import atomic_write_json, read_json
from wazod.statedir import FILE_MODE, ensure_private_dir


class StateStore:
    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def read(self, name: str, default: Any = None) -> Any:
        return read_json(self.path(name), default)

    def write(self, name: str, value: Any) -> None:
        ensure_private_dir(self.dir)
        atomic_write_json(self.path(name), value, mode=FILE_MODE)

    def update(self, name: str, **changes: Any) -> dict:
        current = self.read(name, {}) or {}
        current.update(changes)
        self.write(name, current)
        return current
