from __future__ import annotations

from pydantic import Field

from . import Section


class StatusSection(Section):
    listen: str = Field("127.0.0.1:9599", description="status endpoint: GET /health, /liveness, /status, /metrics")
