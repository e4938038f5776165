from __future__ import annotations

from pydantic import Field

from . import Section, UserName

WAZO_SYNC_PATHS = [
    "/etc/asterisk/extensions_extra.d",
    "/etc/xivo/asterisk",
    "/root/.config/wazo-auth-cli",
    "/var/lib/asterisk/agi-bin",
    "/var/lib/asterisk/moh",
    "/var/lib/wazo-auth-keys",
    "/var/lib/wazo/sounds/tenants/*/*",
]

# What the slave may have recorded while it held the services (Wazo layout).
COPY_BACK_PATHS = [
    "/var/spool/asterisk/voicemail",
    "/var/spool/asterisk/monitor",
    "/var/lib/wazo/sounds/tenants",
]


class SyncSection(Section):
    schedule: str = Field("0 * * * *", description="five-field crontab schedule of the master to slave file sync")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    ssh_key: str = Field("/root/.ssh/xivo_id_rsa", description="private key used for rsync over ssh")
    remote_root: str = Field("/", description="where the paths land on the other node")
    ssh_port: int = Field(22, ge=1, le=65535, description="ssh port of the other node")
    remote_user: UserName = Field("root", description="ssh user on the other node (a plain user name)")
    known_hosts: str | None = Field(
        None,
        description="known_hosts file wazod keeps for the other node (null: <state_dir>/known_hosts); "
        "written by `wazod sync --init`",
    )
    local_root: str = Field("/", description="where the paths are read on this node (the paths are relative to it)")
    paths: list[str] = Field(
        default_factory=lambda: list(WAZO_SYNC_PATHS),
        description="paths copied to the slave (globs allowed; tenant monitor and recording dirs are excluded)",
    )
    glob_exclude: list[str] = Field(
        default_factory=lambda: ["monitor", "recording"],
        description="names left out when a glob of `paths` matches them (call recordings stay on each node)",
    )
    continuous: bool = Field(
        True,
        description="on the master, watch sync.paths (inotify) and copy what changed within seconds "
        "(the schedule's full rsync stays as the safety net); false: only the schedule and `wazod sync`",
    )
    batch_delay: float = Field(
        1.0, ge=0.05, le=60,
        description="seconds of quiet gathered before a continuous copy (a file being written is copied once)",
    )
    connect_timeout: int = Field(10, ge=1, description="seconds ssh waits for the other node to answer")
    timeout: float = Field(3600.0, gt=0, description="seconds after which a sync run is stopped")
    copy_back_paths: list[str] = Field(
        default_factory=lambda: list(COPY_BACK_PATHS),
        description="on failback, what the slave copies to the master (voicemail, recordings, custom sounds; "
        "globs allowed); newer master files are kept, nothing is deleted",
    )
    copy_back_timeout: float = Field(300.0, gt=0, description="seconds the failback waits for the copy-back")
