from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from . import Section

WAZO_LOG_FILE = "/var/log/wazod.log"


class LoggingSection(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    file: str | None = Field(
        "auto",
        description="the daemon's JSON lines also go to this file (the journal keeps them too), created 0640 "
        "root:adm and reopened when logrotate renames it; auto: /var/log/wazod.log on a Wazo node (the directory "
        "of ha.ha_conf, /etc/xivo, exists), none elsewhere; null: the journal only",
    )

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        if not os.path.isabs(value) or value.endswith("/"):
            raise ValueError("must be auto, null or an absolute file path")
        return value

    def resolved_file(self, ha_conf: str) -> str | None:
        """The path the daemon logs to. ``auto`` decides from the host, so the shipped config.yml stays
        the same on every machine: a Wazo node is one whose ha.conf directory (/etc/xivo) exists."""
        if self.file != "auto":
            return self.file
        return WAZO_LOG_FILE if Path(ha_conf).parent.is_dir() else None
