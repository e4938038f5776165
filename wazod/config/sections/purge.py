from __future__ import annotations

from pydantic import Field

from . import Section


class PurgeSection(Section):
    schedule: str = Field("25 3 * * *", description="five-field crontab schedule of the nightly purge")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    days_to_keep: int = Field(365, ge=0, description="days of log rows kept; 0 deletes every row")
    days_to_keep_per_table: dict[str, int] = Field(
        default_factory=dict, description="per-table retention, wins over days_to_keep and -d"
    )
    dsn: str = Field("postgresql:///asterisk", description="database purged")
    archives: list[str] = Field(default_factory=list, description="names of archive plugins, run before the purge")
