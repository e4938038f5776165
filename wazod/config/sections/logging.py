from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from . import Section

WAZO_LOG_FILE = "/var/log/wazod.log"


class LoggingSection(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    file: str | None = Field(
        "auto",
        description="the daemon's JSON lines also go to this file (the journal keeps them too), created 0640 "
        "root:adm and reopened when logrotate renames it; auto: /var/log/wazod.log on a Wazo node (node.wazo_dir, "
        "/etc/xivo, exists), none elsewhere; null: the journal only",
    )

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        if not os.path.isabs(value) or value.endswith("/"):
            raise ValueError("must be auto, null or an absolute file path")
        return value

    def resolved_file(self, on_wazo: bool) -> str | None:
        """The path the daemon logs to. ``auto`` decides from the host, so the shipped config.yml stays
        the same on every machine: ``on_wazo`` is ``node.on_wazo`` (Wazo's /etc/xivo exists)."""
        if self.file != "auto":
            return self.file
        return WAZO_LOG_FILE if on_wazo else None
