from __future__ import annotations

from pathlib import Path

from pydantic import Field

from . import Section


class NodeSection(Section):
    name: str | None = Field(None, description="name of this node in events and topics; null: the host name")
    state_dir: str = Field("/var/lib/wazod", description="persistent state: job results, event seq, outbox, locks")
    uuid_file: str = Field(
        "/etc/profile.d/xivo_uuid.sh",
        description="Wazo's file holding XIVO_UUID, read for the node's installation UUID",
    )
    wazo_dir: str = Field(
        "/etc/xivo",
        description="Wazo's configuration directory: where it exists this is a Wazo node, and the settings "
        "whose default is 'auto' (bus.wazo.enabled, logging.file) turn on",
    )
    stop_timeout: float = Field(60.0, gt=0, description="seconds a SIGTERM waits for running work to reach a safe point")

    @property
    def on_wazo(self) -> bool:
        """A Wazo node: Wazo's configuration directory exists."""
        return Path(self.wazo_dir).is_dir()
