from __future__ import annotations

from pydantic import Field

from . import Section

WAZO_SYNC_PATHS = [
    "/etc/asterisk/extensions_extra.d",
    "/etc/xivo/asterisk",
    "/root/.config/wazo-auth-cli",
    "/var/lib/asterisk/agi-bin",
    "/var/lib/asterisk/moh",
    "/var/lib/wazo-auth-keys",
    "/var/lib/wazo/sounds/tenants/*/*",
]


class SyncSection(Section):
    schedule: str = Field("0 * * * *", description="five-field crontab schedule of the master to slave file sync")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    ssh_key: str = Field("/root/.ssh/xivo_id_rsa", description="private key used for rsync over ssh")
    remote_root: str = Field("/", description="where the paths land on the other node")
    ssh_port: int = Field(22, description="ssh port of the other node")
    paths: list[str] = Field(
        default_factory=lambda: list(WAZO_SYNC_PATHS),
        description="paths copied to the slave (globs allowed; tenant monitor and recording dirs are excluded)",
    )
