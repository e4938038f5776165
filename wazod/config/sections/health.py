"""Configuration of the health checks (``health:``).

Every check has its own interval and can be switched off; hysteresis
(``fall``/``rise``) is shared, so a level is reported only once it has been
seen on consecutive runs, and events fire on level changes only.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from . import Dsn, Section, db_os_user_field


class CheckSection(Section):
    enabled: bool = Field(True, description="run this check")
    interval: float | None = Field(None, gt=0, description="seconds between runs; null: health.interval")


class DiskCheckSection(CheckSection):
    paths: list[str] = Field(
        default_factory=lambda: ["/var/backups/xivo", "/var/lib/postgresql", "/var/spool/asterisk", "/var/log"],
        description="paths whose file system free space is watched (a missing path is skipped)",
    )
    warning_free_percent: float = Field(15.0, ge=0, le=100, description="warning below this free space, in percent")
    critical_free_percent: float = Field(5.0, ge=0, le=100, description="critical below this free space, in percent")

    @model_validator(mode="after")
    def _ordered(self):
        if self.critical_free_percent > self.warning_free_percent:
            raise ValueError("critical_free_percent must not exceed warning_free_percent")
        return self


class ProcessCheckSection(CheckSection):
    names: list[str] | None = Field(
        None,
        description="telephony processes expected on the active node and absent on a standby slave; "
        "null: the units of ha.services.units",
    )
    unexpected_level: str = Field(
        "warning", pattern="^(ok|warning|critical)$",
        description="level when telephony processes run on a standby slave (ok | warning | critical)",
    )


class NtpCheckSection(CheckSection):
    interval: float | None = Field(300.0, gt=0, description="seconds between runs; null: health.interval")
    tool: str = Field(
        "auto", pattern="^(auto|chronyc|ntpq|timedatectl)$",
        description="where synchronisation is read: auto (chronyc, ntpq, timedatectl: the first installed one "
        "that answers) | chronyc | ntpq | timedatectl",
    )
    chronyc_host: str | None = Field(None, description="chronyc -h: chronyd's address or command socket; null: default")
    warning_offset: float = Field(0.5, ge=0, description="warning when the clock is off by more than this, in seconds")
    critical_offset: float = Field(10.0, ge=0, description="critical when the clock is off by more than this, in seconds")
    ntp_conf: str = Field("/etc/ntp.conf", description="ntpd's configuration written by the administrator")
    dhcp_conf: str = Field(
        "/var/lib/ntp/ntp.conf.dhcp",
        description="ntpd's DHCP-provided configuration, used instead of ntp_conf when present (the guide's pitfall)",
    )
    timeout: float = Field(10.0, gt=0, description="seconds the tool may take")

    @model_validator(mode="after")
    def _ordered(self):
        if self.critical_offset < self.warning_offset:
            raise ValueError("critical_offset must not be below warning_offset")
        return self


class CertificateCheckSection(CheckSection):
    interval: float | None = Field(3600.0, gt=0, description="seconds between runs; null: health.interval")
    files: list[str] = Field(
        default_factory=lambda: ["/usr/share/xivo-certs/server.crt"],
        description="PEM certificates (chains allowed) to watch; the first certificate of a file is the server's",
    )
    warning_days: float = Field(30.0, ge=0, description="warning when a certificate expires within this many days")
    critical_days: float = Field(7.0, ge=0, description="critical when a certificate expires within this many days")
    check_hostname: bool = Field(True, description="warn when the server certificate does not name this host")
    hostname: str | None = Field(None, description="the name the certificate must carry; null: this host's FQDN")

    @model_validator(mode="after")
    def _ordered(self):
        if self.critical_days > self.warning_days:
            raise ValueError("critical_days must not exceed warning_days")
        return self


class PostgresCheckSection(CheckSection):
    interval: float | None = Field(30.0, gt=0, description="seconds between runs; null: health.interval")
    dsn: Dsn = Field("postgresql:///asterisk", description="the local database that must answer")
    db_os_user: str | None = db_os_user_field()
    timeout: float = Field(5.0, gt=0, description="seconds to connect and answer SELECT 1")


class LogsCheckSection(CheckSection):
    interval: float | None = Field(3600.0, gt=0, description="seconds between runs; null: health.interval")
    paths: list[str] = Field(
        default_factory=lambda: ["/var/log", "/var/log/asterisk"],
        description="directories whose live log files are watched (not recursive; rotated files are ignored)",
    )
    warning_file_mb: float = Field(1024.0, gt=0, description="warning when a live log file reaches this size, in MiB")
    critical_file_mb: float = Field(4096.0, gt=0, description="critical when a live log file reaches this size, in MiB")
    logrotate_status: str | None = Field(
        "/var/lib/logrotate/status", description="logrotate's state file, rewritten on every run; null: not checked"
    )
    logrotate_max_age_hours: float = Field(
        48.0, gt=0, description="warning when logrotate's state file is older than this (logrotate runs daily)"
    )

    @model_validator(mode="after")
    def _ordered(self):
        if self.critical_file_mb < self.warning_file_mb:
            raise ValueError("critical_file_mb must not be below warning_file_mb")
        return self


class HealthSection(Section):
    interval: float = Field(60.0, gt=0, description="seconds between runs of each health check without its own interval")
    fall: int = Field(2, ge=1, description="consecutive runs at a worse level before it is reported (health_degraded)")
    rise: int = Field(2, ge=1, description="consecutive runs at a better level before it is reported (health_recovered)")
    disk: DiskCheckSection = Field(default_factory=DiskCheckSection, description="free disk space")
    process: ProcessCheckSection = Field(default_factory=ProcessCheckSection, description="telephony processes")
    ntp: NtpCheckSection = Field(default_factory=NtpCheckSection, description="clock synchronisation")
    certificate: CertificateCheckSection = Field(
        default_factory=CertificateCheckSection, description="TLS certificates: expiry and host name"
    )
    postgresql: PostgresCheckSection = Field(default_factory=PostgresCheckSection, description="local PostgreSQL")
    logs: LogsCheckSection = Field(default_factory=LogsCheckSection, description="log files and logrotate")
