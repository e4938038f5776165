from __future__ import annotations

from pydantic import Field

from . import Section


class HealthSection(Section):
    interval: float = Field(60.0, description="seconds between runs of each health check")
