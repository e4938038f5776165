"""The ``backup`` section: the daily backup (data.tgz, db.tgz), its verification and the restore.

Defaults reproduce Wazo's backup exactly (file list, exclusions, size limits,
directory, retention, dump options); the keys added here let an administrator
change what Wazo hard-coded, and fix its weaknesses (voicemail never skipped by
the directory-size rule unless asked, nothing skipped silently).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import Dsn, Section

# Wazo's data list (wazo-backup): paths relative to backup.root; the ones missing are left out.
WAZO_DATA_PATHS = [
    "etc/asterisk", "etc/crontab", "etc/dahdi", "etc/dhcp", "etc/hostname", "etc/hosts", "etc/ldap",
    "etc/network/if-up.d/xivo-routes", "etc/network/interfaces", "etc/ntp.conf", "etc/profile.d/xivo_uuid.sh",
    "etc/resolv.conf", "etc/ssl", "etc/systemd", "etc/wanpipe", "etc/wazo-*", "etc/xivo",
    "root/.config/wazo-auth-cli", "usr/local/bin", "usr/local/sbin", "usr/local/share",
    "usr/share/wazo/WAZO-VERSION", "var/lib/asterisk", "var/lib/wazo-auth-keys", "var/lib/wazo-provd",
    "var/lib/wazo", "var/log/asterisk", "var/spool/asterisk", "var/spool/cron/crontabs",
]

# Wazo's exclusions (fnmatch patterns on the path relative to backup.root).
WAZO_EXCLUDES = [
    "var/lib/asterisk/astdb.sqlite3-journal",
    "var/lib/wazo-provd/plugins/*/var/cache/*",
    "var/lib/wazo-provd/plugins/xivo-polycom*/var/tftpboot/*.ld",
    "var/spool/asterisk/monitor",
    "var/log/asterisk/debug*",
    "var/log/asterisk/full*",
    "var/spool/asterisk/core.*",
]

# Trees where Wazo applies its size rules (sounds, music on hold, voicemail, recordings).
WAZO_SIZE_RULE_DIRS = [
    "var/lib/wazo/sounds", "var/lib/asterisk/sounds/custom", "var/lib/asterisk/moh",
    "var/spool/asterisk/voicemail", "var/spool/asterisk/monitor",
]

NETWORK_FILES = [
    "etc/hostname", "etc/hosts", "etc/network/interfaces", "etc/network/if-up.d/xivo-routes", "etc/resolv.conf",
]


class BackupSection(Section):
    schedule: str = Field("25 6 * * *", description="five-field crontab schedule of the backup (every morning at 06:25)")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    dir: str = Field("/var/backups/xivo", description="where data.tgz and db.tgz are written")
    keep: int = Field(7, ge=0, description="old sets kept (data.tgz.1 ... data.tgz.N)")
    root: str = Field("/", description="the tree the data backup reads (and the restore writes)")
    dsn: Dsn = Field("postgresql:///asterisk", description="database dumped into db.tgz")

    # --- what data.tgz holds -------------------------------------------------
    paths: list[str] = Field(
        default_factory=lambda: list(WAZO_DATA_PATHS),
        description="paths (relative to root, shell wildcards allowed) saved in data.tgz when they exist: Wazo's list",
    )
    exclude: list[str] = Field(
        default_factory=lambda: list(WAZO_EXCLUDES),
        description="paths left out (fnmatch patterns relative to root): Wazo's exclusions; listed in the manifest",
    )
    size_rule_dirs: list[str] = Field(
        default_factory=lambda: list(WAZO_SIZE_RULE_DIRS),
        description="trees (relative to root) where the two size rules apply: Wazo's sound, music and voicemail trees",
    )
    max_file_size: int | None = Field(
        10 * 1024 * 1024, ge=0,
        description="bytes; larger files under size_rule_dirs are skipped and listed in the manifest (null: no limit)",
    )
    max_dir_entries: int | None = Field(
        100, ge=0,
        description="a directory under size_rule_dirs with more entries is skipped whole and listed (null: no limit)",
    )
    voicemail_dir: str = Field("var/spool/asterisk/voicemail", description="the voicemail tree (relative to root)")
    voicemail_dir_rule: bool = Field(
        False, description="apply max_dir_entries to voicemail too (Wazo did: a full inbox was silently lost)",
    )
    voicemail_file_rule: bool = Field(True, description="apply max_file_size to voicemail messages (as Wazo)")
    use_pigz: bool = Field(
        True, description="compress with pigz (parallel, still a standard gzip stream) when installed, else gzip",
    )
    compress_level: int = Field(6, ge=1, le=9, description="gzip level of data.tgz (6, gzip's default, as tar czf)")
    space_estimate_ratio: float = Field(
        0.9, gt=0, le=2,
        description="free-space check: data.tgz is estimated at this fraction of the bytes to save "
                    "(or the previous data.tgz's size when larger)",
    )

    # --- what db.tgz holds --------------------------------------------------
    db_dir_name: str = Field("pg-backupd", description="directory inside db.tgz holding asterisk-<version>.dump")
    exclude_table_data: list[str] = Field(
        default_factory=lambda: ["auth_acl", "auth_token"],
        description="tables whose data pg_dump leaves out (Wazo's: tokens are not worth restoring)",
    )
    db_compress_level: int | None = Field(
        1, ge=0, le=9,
        description="pg_dump -Fc --compress level: 1 dumps about a third faster than pg_dump's default and the gzip "
                    "of db.tgz recovers most of the size; null: pg_dump's default (Wazo's); 0: uncompressed dump, "
                    "compressed by pigz at compress_level",
    )
    db_os_user: str | None = Field(
        "postgres", description="when wazod runs as root, the PostgreSQL tools run as this system user "
                               "(like Wazo's sudo -u postgres); null: as wazod's own user",
    )
    count_rows: bool = Field(
        True, description="record each table's row count in the manifest, read in pg_dump's own snapshot "
                          "(what backup verify --deep compares against)",
    )
    scratch_dsn: Dsn | None = Field(
        None, description="server where backup verify --deep restores the dump (a throw-away database is "
                          "created and dropped there); null: the server of dsn",
    )
    version_file: str = Field(
        "usr/share/wazo/WAZO-VERSION",
        description="Wazo's version file (relative to root), used when infos.wazo_version cannot be read",
    )
    group: str = Field("www-data", description="group of the backup files (mode 640) when it exists")

    # --- restore ------------------------------------------------------------
    restore_services: Literal["ha", "none"] = Field(
        "ha", description="restore stops and starts the telephony services through the HA services backend "
                          "(ha.services); none: leave them alone",
    )
    network_files: list[str] = Field(
        default_factory=lambda: list(NETWORK_FILES),
        description="with --keep-network (the default), these files of data.tgz are not extracted, so the node "
                    "keeps its own addresses and name",
    )
    network_tables: list[str] = Field(
        default_factory=lambda: ["dhcp", "netiface", "resolvconf"],
        description="with --keep-network, tables copied back from asterisk_previous after the restore",
    )
    uuid_profile_path: str = Field(
        "etc/profile.d/xivo_uuid.sh", description="where restore writes 'export XIVO_UUID=...' (relative to root)",
    )
    systemd_conf_path: str | None = Field(
        "etc/systemd/system.conf",
        description="systemd file whose DefaultEnvironment gets XIVO_UUID (relative to root; null: not touched)",
    )
    uuid_apply_commands: list[list[str]] = Field(
        default_factory=lambda: [["systemctl", "set-environment", "XIVO_UUID={uuid}"], ["systemctl", "daemon-reload"]],
        description="argv lists run after writing the UUID ({uuid} is replaced); [] to skip",
    )
    update_keys_command: list[str] | None = Field(
        ["xivo-update-keys"], description="argv run after the restore to resynchronise the service keys; null: skipped",
    )
    restore_scratch_dir: str = Field("/var/tmp", description="where restore unpacks db.tgz (as the guide does)")
    restore_link_targets: list[str] = Field(
        default_factory=lambda: ["/lib/systemd/", "/usr/lib/systemd/", "/dev/null", "/usr/share/zoneinfo/"],
        description="absolute places outside `paths` a restored symbolic link may point to (systemd's unit links, "
        "masked units); a data.tgz with a link elsewhere outside `paths`, a device, a FIFO, a setuid or setgid "
        "file, or a member outside `paths` is refused before anything changes",
    )
    restore_strict: bool = Field(
        True, description="a pg_restore that reports errors fails the restore (and rolls back); false: warnings only",
    )
