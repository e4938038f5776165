from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import Section


class LoggingSection(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
