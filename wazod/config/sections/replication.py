from __future__ import annotations

from pydantic import Field

from . import Dsn, Section, db_os_user_field

WAZO_EXCLUDED_TABLES = [
    "call_log", "call_log_participant", "cel", "dhcp", "queue_log", "session", "stat_agent",
    "stat_agent_periodic", "stat_call_on_queue", "stat_queue", "stat_queue_periodic", "mail",
    "monitoring", "netiface", "resolvconf", "infos",
]


class ReplicationSection(Section):
    schedule: str = Field("0 * * * *", description="five-field crontab schedule of the master to slave replication")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    source_dsn: Dsn = Field("postgresql:///asterisk", description="the master's asterisk database")
    target_dsn: Dsn = Field(
        "postgresql://postgres@{remote_address}/asterisk",
        description="the slave's asterisk database; {remote_address} is replaced by ha.remote_address",
    )
    exclude_tables: list[str] = Field(
        default_factory=lambda: list(WAZO_EXCLUDED_TABLES),
        description="tables never copied (Wazo's list plus infos, so each node keeps its UUID); remove infos to copy it",
    )
    db_os_user: str | None = db_os_user_field()
    connect_timeout: float = Field(10.0, gt=0, description="seconds to wait for each database connection")
    lock_timeout: float = Field(
        30.0, ge=0, description="seconds the slave waits for its table locks before the run fails (0: no limit)"
    )
    timeout: float = Field(1800.0, gt=0, description="seconds after which a replication run is abandoned (rolled back)")
    rebuild_indexes: bool = Field(
        True,
        description="drop the indexes and primary/unique keys of the big tables being reloaded (rebuild_min_size) "
        "and add them back after the load, checked identical (faster; all within the replication transaction)",
    )
    continuous: bool = Field(
        True,
        description="on the master, check for changes every check_interval seconds and copy the changed tables "
        "at once (the schedule stays as the safety net); false: only the schedule and `wazod replicate`",
    )
    check_interval: float = Field(
        5.0, ge=0.5, le=3600, description="seconds between two continuous change checks (replication.continuous)"
    )
    rebuild_min_size: int = Field(
        262144,
        ge=0,
        description="with rebuild_indexes, only tables at least this many bytes large on the master have their "
        "indexes and keys rebuilt after the load; smaller ones load with them in place (cheaper below this)",
    )
    check_foreign_keys: bool = Field(
        False,
        description="with rebuild_indexes, also drop the foreign keys between rebuilt tables and add them back "
        "validated; false: the keys stay and the rows are trusted, as Wazo's replica-role load does",
    )
    full_copy_interval: float = Field(
        86400.0,
        ge=0,
        description="seconds after which every table is copied again even when no change was detected (0: never)",
    )
