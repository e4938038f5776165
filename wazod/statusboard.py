"""The daemon's live state, in one place, persisted for ``wazod status``.

Parts of the daemon set their section (``ha``, ``services``, ``berofos``,
``maintenance``, ``health``...); listeners (the retained MQTT state topic,
the status endpoint) are told of every change, and a snapshot is written
atomically to ``<state_dir>/status.json`` so the CLI can answer when the
daemon is down.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from wazod.events import now_iso
from wazod.state import StateStore


class StatusBoard:
    def __init__(self, state: StateStore, node: str, role: str):
        self._state = state
        self._data: dict[str, Any] = {
            "node": node,
            "role": role,
            "ha_state": "disabled" if role == "disabled" else "starting",
            "ha_since": now_iso(),
            "services": "unknown",
            "berofos": {},
        }
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self._data.get(key, default))

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    def update(self, **changes: Any) -> None:
        changed = {k: v for k, v in changes.items() if self._data.get(k) != v}
        if not changed:
            return
        if "ha_state" in changed:
            changed.setdefault("ha_since", now_iso())
        self._data.update(copy.deepcopy(changed))
        self.persist()
        snap = self.snapshot()
        for listener in list(self._listeners):
            try:
                listener(snap)
            except Exception:
                pass

    def persist(self) -> None:
        self._state.write("status", self._data)
