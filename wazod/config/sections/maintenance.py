from __future__ import annotations

from pydantic import Field

from . import Section


class MaintenanceSection(Section):
    default_duration: float = Field(7200.0, description="seconds a maintenance lasts when --for is not given")
