"""The whole configuration model: every section, for ``wazod run``, ``config check`` and the commands that
read several parts. A command that reads only a few sections names them to ``load_config(sections=...)``
and this model (and the sections it does not read) is never built."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from wazod.config import ConfigViews
from wazod.config.sections import Section
from wazod.config.sections.backup import BackupSection
from wazod.config.sections.berofos import BerofosSection
from wazod.config.sections.bus import BusSection
from wazod.config.sections.ha import HaSection
from wazod.config.sections.health import HealthSection
from wazod.config.sections.logging import LoggingSection
from wazod.config.sections.maintenance import MaintenanceSection
from wazod.config.sections.node import NodeSection
from wazod.config.sections.purge import PurgeSection
from wazod.config.sections.replication import ReplicationSection
from wazod.config.sections.snmp import SnmpSection
from wazod.config.sections.status import StatusSection
from wazod.config.sections.sync import SyncSection
from wazod.secrets import mask


class Config(Section, ConfigViews):
    # the order of SECTIONS in wazod.config (a test keeps them equal)
    node: NodeSection = Field(default_factory=NodeSection, description="this node")
    ha: HaSection = Field(default_factory=HaSection, description="high availability")
    replication: ReplicationSection = Field(default_factory=ReplicationSection, description="database replication (master)")
    sync: SyncSection = Field(default_factory=SyncSection, description="file sync (master) and copy-back (slave)")
    backup: BackupSection = Field(default_factory=BackupSection, description="daily backup")
    purge: PurgeSection = Field(default_factory=PurgeSection, description="nightly purge of log tables")
    berofos: BerofosSection = Field(default_factory=BerofosSection, description="berofos failover switches")
    bus: BusSection = Field(default_factory=BusSection, description="event bus")
    snmp: SnmpSection = Field(default_factory=SnmpSection, description="SNMP notifications")
    status: StatusSection = Field(default_factory=StatusSection, description="local HTTP status endpoint")
    health: HealthSection = Field(default_factory=HealthSection, description="health checks")
    maintenance: MaintenanceSection = Field(default_factory=MaintenanceSection, description="maintenance mode")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="logging to the journal and a file")

    def masked(self) -> dict[str, Any]:
        return mask(self.model_dump(mode="json"))
