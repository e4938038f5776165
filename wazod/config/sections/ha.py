from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import Section


class ServicesSection(Section):
    backend: Literal["wazo", "systemd", "command"] = Field(
        "wazo", description="how telephony services are started and stopped: wazo | systemd | command"
    )
    start: list[list[str]] = Field(default_factory=list, description="command backend: argv lists run in order to start")
    stop: list[list[str]] = Field(default_factory=list, description="command backend: argv lists run in order to stop")
    status: list[str] | None = Field(None, description="command backend: argv whose exit 0 means running")
    units: list[str] = Field(
        default_factory=lambda: [
            "wazo-dxtora", "wazo-provd", "wazo-agid", "asterisk", "wazo-amid", "wazo-call-logd",
            "wazo-agentd", "wazo-dird", "wazo-phoned", "wazo-calld", "wazo-websocketd", "wazo-chatd",
        ],
        description="systemd backend: units started in this order and stopped in reverse",
    )
    step_timeout: float = Field(120.0, description="seconds one start or stop step may take")
    retries: int = Field(3, description="attempts of a failing step before the action is reported failed")


class HaSection(Section):
    node_type: Literal["master", "slave", "disabled"] | None = Field(
        None, description="master | slave | disabled; null: read from ha_conf (and 'disabled' without it)"
    )
    remote_address: str | None = Field(None, description="the other node; null: read from ha_conf")
    ha_conf: str = Field("/etc/xivo/ha.conf", description="Wazo's own HA file, rewritten by the web UI")
    marker_dir: str = Field("/var/lib/wazo", description="where Wazo keeps is-primary / is-secondary")
    probe_interval: float = Field(0.5, description="seconds between probe rounds")
    fall: int = Field(4, description="consecutive failed rounds before the master is down")
    rise: int = Field(4, description="consecutive good rounds before the master is up again")
    failback_hold: float = Field(10.0, description="seconds the master must stay up before failback")
    witnesses: list[str] = Field(default_factory=list, description="addresses the slave must reach before taking over")
    services: ServicesSection = Field(default_factory=ServicesSection, description="telephony services of this node")
