from __future__ import annotations

from pydantic import Field

from . import Section


class BerofosSection(Section):
    config: str = Field("/etc/bnfos.conf", description="beroNet berofos devices; no file at this default path: no berofos; a path set in a file must exist")
    timeout: float = Field(3.0, gt=0, description="seconds one HTTP request to a device may take")
    retries: int = Field(2, ge=0, description="further attempts after a failed switch or read (not after HTTP 401)")
    retry_delay: float = Field(0.5, ge=0, description="seconds before the first retry; doubled at each retry")
    retry_delay_max: float = Field(5.0, ge=0, description="longest pause between two attempts")
    switch_timeout: float = Field(
        20.0, gt=0, description="seconds one device may take to switch, retries included; then it is reported failed"
    )
    lock_wait: float = Field(
        30.0, ge=0, description="seconds a switch waits for another berofos operation (CLI or daemon) to finish"
    )
    drift_interval: float = Field(
        60.0, ge=0, description="seconds between two reads of every device's mode by the daemon; 0 disables the check"
    )
    drift_correct: bool = Field(
        True, description="set the mode back when a device is found in the wrong one (false: only report it)"
    )
