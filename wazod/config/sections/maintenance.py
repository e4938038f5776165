"""Configuration of maintenance mode (``maintenance:``).

Maintenance holds the HA decisions (no takeover, failback, berofos change or
service move) and the scheduled replication and sync while a node or the
pair is being upgraded or repaired. It always ends by itself: a forgotten
maintenance must not leave the pair unprotected for days.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from . import Section


class MaintenanceSection(Section):
    default_duration: float = Field(7200.0, gt=0, description="seconds a maintenance lasts when --for is not given")
    max_duration: float = Field(
        86400.0, gt=0, description="longest maintenance accepted (--for, or asked by the peer), in seconds"
    )
    hold_backup: bool = Field(False, description="also hold the scheduled backup while maintenance is on")
    hold_purge: bool = Field(False, description="also hold the scheduled purge while maintenance is on")
    tell_peer: bool = Field(True, description="switching maintenance on or off on this node also switches the peer")
    peer_url: str | None = Field(
        None,
        description="base URL of the peer's status endpoint, '{remote_address}' is replaced; null: the scheme, "
        "host and port of ha.peer_url, else http://{remote_address}:<port of status.listen>",
    )
    peer_token_file: str | None = Field(
        None, description="file whose first line is the peer's admin token, sent in X-Auth-Token to switch its "
        "maintenance; null: status.admin_token_file (the pair shares it)"
    )
    peer_timeout: float = Field(5.0, gt=0, description="seconds the peer may take to answer")
    peer_retry_interval: float = Field(
        30.0, gt=0, description="seconds between the daemon's new tries to tell a peer that could not be told"
    )
    watch_interval: float = Field(
        1.0, gt=0, description="seconds between the daemon's looks at the state file (changes by the CLI, expiry)"
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> MaintenanceSection:
        if self.default_duration > self.max_duration:
            raise ValueError(f"default_duration ({self.default_duration:g}) must not exceed max_duration "
                             f"({self.max_duration:g})")
        return self
