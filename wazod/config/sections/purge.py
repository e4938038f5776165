"""The ``purge`` section: which log tables lose which rows, and how gently.

Defaults follow wazo-purge-db (365 days, Wazo's tables and time columns);
the batch keys are what makes wazod's purge safe on a live node: every batch
is its own short transaction, sized to stay under ``batch_seconds``.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from . import Dsn, Section, db_os_user_field

# table -> the column its age is read from (wazo-purge-db's purgers, plus
# wazo-call-logd's call-logs purger, which wazo-purge-db runs too)
WAZO_PURGED_TABLES = {
    "cel": "eventtime",
    "queue_log": "time",
    "stat_agent_periodic": "time",
    "stat_call_on_queue": "time",
    "stat_queue_periodic": "time",
    "stat_switchboard_queue": "time",
    "call_logd_call_log": "date",
}

# wazo-purge-db's purger (plugin) names, accepted in days_to_keep_per_table so
# an existing days_to_keep_per_plugin setting can be copied as is
WAZO_PURGER_NAMES = {
    "cel": "cel",
    "queue-log": "queue_log",
    "stat-agent": "stat_agent_periodic",
    "stat-call-on": "stat_call_on_queue",
    "stat-queue": "stat_queue_periodic",
    "stat-switchboard": "stat_switchboard_queue",
    "call-logs": "call_logd_call_log",
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")


class PurgeSection(Section):
    schedule: str = Field("25 3 * * *", description="five-field crontab schedule of the nightly purge")
    jitter: int = Field(0, ge=0, description="random delay of up to this many seconds added to each scheduled run")
    days_to_keep: int = Field(365, ge=0, description="days of log rows kept; 0 deletes every row")
    days_to_keep_per_table: dict[str, int] = Field(
        default_factory=dict,
        description="per-table retention (table name or wazo-purge-db plugin name such as queue-log), "
        "wins over days_to_keep and -d",
    )
    dsn: Dsn = Field("postgresql:///asterisk", description="database purged")
    db_os_user: str | None = db_os_user_field()
    archives: list[str] = Field(
        default_factory=list,
        description="archive plugins run before rows are deleted: csv (built in), plugins of the entry-point "
        "group wazod.purge_archives, or legacy wazo_purge_db.archives plugins; a table whose archive fails "
        "is not purged",
    )
    tables: dict[str, str | None] = Field(
        default_factory=lambda: dict(WAZO_PURGED_TABLES),
        description="tables purged, in order, each with its time column (timestamptz compared with now(), "
        "timestamp without time zone with localtimestamp); a table absent from the database is skipped; "
        "a table set to null (in conf.d) is not purged",
    )
    archive_dir: str | None = Field(
        None, description="where the csv archiver writes <table>-<time>.csv.gz; null: <state_dir>/purge-archives"
    )
    batch_rows: int = Field(
        200000, ge=100, description="most rows one batch deletes (a heap-block walk reads up to 4 times as many "
        "where few of them go, a primary-key walk spans as many key values); batches shrink below it to stay "
        "under batch_seconds",
    )
    batch_seconds: float = Field(
        0.5, gt=0, le=30, description="target duration of each batch transaction; the batch size adapts to it"
    )
    lock_timeout: float = Field(
        5.0, gt=0, description="seconds a batch waits for a lock held by someone else before that table fails"
    )
    statement_timeout: float = Field(60.0, gt=0, description="seconds any one statement of the purge may take")
    analyze: bool = Field(True, description="ANALYZE each table that lost rows, so plans follow the new size")
    vacuum_full_hint_ratio: float = Field(
        0.2, gt=0, le=1, description="a note suggests VACUUM FULL (never run automatically: it locks the table) "
        "when a purge removed at least this fraction of a table",
    )

    @field_validator("tables")
    @classmethod
    def _identifiers(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for table, column in value.items():
            if column is None:
                continue
            if not _IDENT.match(table):
                raise ValueError(f"{table!r} is not a table name (letters, digits, _; optionally schema.table)")
            if not _IDENT.match(column) or "." in column:
                raise ValueError(f"{column!r} (time column of {table}) is not a column name")
        return value

    @model_validator(mode="after")
    def _known_tables(self) -> PurgeSection:
        for key, days in self.days_to_keep_per_table.items():
            if days < 0:
                raise ValueError(f"days_to_keep_per_table.{key}: must be 0 or more (got {days})")
            if self.table_for(key) is None:
                raise ValueError(
                    f"days_to_keep_per_table.{key}: not a purged table (purge.tables: {', '.join(self.purged_tables)})"
                )
        return self

    @property
    def purged_tables(self) -> dict[str, str]:
        """Table -> time column, in order, without the tables set to null."""
        return {table: column for table, column in self.tables.items() if column}

    def table_for(self, key: str) -> str | None:
        """The purged table a per-table key names (its own name or its wazo-purge-db plugin name)."""
        if key in self.purged_tables:
            return key
        table = WAZO_PURGER_NAMES.get(key)
        return table if table in self.purged_tables else None

    def days_for(self, table: str, days: int | None = None) -> int:
        """Retention of ``table``: the per-table value beats ``-d`` (``days``), which replaces days_to_keep."""
        # a table's own name beats its wazo-purge-db plugin name when both are given
        items = sorted(self.days_to_keep_per_table.items(), key=lambda kv: kv[0] in self.purged_tables)
        by_table = {self.table_for(k): v for k, v in items}
        if table in by_table:
            return by_table[table]
        return self.days_to_keep if days is None else days
