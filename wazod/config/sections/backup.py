from __future__ import annotations

from pydantic import Field

from . import Section


class BackupSection(Section):
    schedule: str = Field("25 6 * * *", description="five-field crontab schedule of the backup (every morning at 06:25)")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    dir: str = Field("/var/backups/xivo", description="where data.tgz and db.tgz are written")
    keep: int = Field(7, description="old sets kept (data.tgz.1 ... data.tgz.N)")
    root: str = Field("/", description="the tree the data backup reads")
    dsn: str = Field("postgresql:///asterisk", description="database dumped into db.tgz")
