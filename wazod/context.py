"""What every component of the running daemon shares."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from wazod.config import Config, LoadedConfig
from wazod.events import Emitter
from wazod.state import StateStore
from wazod.statusboard import StatusBoard


@dataclass
class Context:
    loaded: LoadedConfig
    emitter: Emitter
    state: StateStore
    status: StatusBoard
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # components put shared objects here (e.g. "scheduler", "ha_monitor") so others can find them
    registry: dict[str, Any] = field(default_factory=dict)
    # set by the supervisor's main loop on every tick; /liveness reads it
    last_tick: float = 0.0

    @property
    def config(self) -> Config:
        return self.loaded.config

    def emit(self, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.emitter.emit(name, data)
