"""The effective configuration of wazod: Wazo's file hierarchy, validated by pydantic.

``load_config(path)`` is the one entry point: it reads config.yml and conf.d,
fills ``ha.node_type`` / ``ha.remote_address`` from Wazo's ha.conf when the
files leave them out, validates everything, and raises ``ConfigError`` with
the file, line (for YAML errors) and key path of the first problem.
"""

from __future__ import annotations

import json
import os
import reprlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from wazod import DEFAULT_CONFIG_PATH  # noqa: E402  (re-exported)
from wazod.config.hierarchy import Hierarchy, read_config_text, read_hierarchy
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
from wazod.errors import ConfigError
from wazod.secrets import mask


class Config(Section):
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

    # --- derived values -------------------------------------------------
    @property
    def node_name(self) -> str:
        return self.node.name or socket.gethostname()

    @property
    def role(self) -> str:
        return self.ha.node_type or "disabled"

    @property
    def state_dir(self) -> Path:
        return Path(self.node.state_dir)

    @property
    def log_file(self) -> str | None:
        """The daemon's log file (``logging.file`` with ``auto`` resolved on this host), or None."""
        return self.logging.resolved_file(self.node.on_wazo)

    def masked(self) -> dict[str, Any]:
        return mask(self.model_dump(mode="json"))


@dataclass
class LoadedConfig:
    """A validated config plus where it came from (for reload and ha.conf watching)."""

    config: Config
    path: Path
    files: list[Path] = field(default_factory=list)
    ha_conf_used: bool = False
    ha_conf_mtime: float | None = None
    must_exist: bool = False


def read_ha_conf(path: str | os.PathLike) -> dict[str, Any]:
    """Wazo's /etc/xivo/ha.conf (JSON). Missing: {}. Unreadable JSON: a ConfigError naming it."""
    text = read_config_text(Path(path))
    if text is None:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with node_type and remote_address")
    return data


def shorten(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never echoes a huge value whole."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxdict = 6
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_validation_error(err: ValidationError, hierarchy: Hierarchy) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key_path = ".".join(str(p) for p in loc)
        src = hierarchy.source_of(loc)
        if src is None and e["type"] == "extra_forbidden":
            src = hierarchy.source_of(loc[:-1])
        where = str(src) if src else "(defaults)"
        if src is not None:
            from wazod.config.explain import key_line

            line = key_line(src, loc)
            where += f":{line}" if line else ""
        if e["type"] == "extra_forbidden":
            from wazod.config.explain import did_you_mean

            msg = "unknown key" + did_you_mean(Config, loc)
        else:
            value = e.get("input")
            shown = mask(value, str(loc[-1])) if loc else value
            msg = f"{e['msg']} (got {shorten(shown)})"
        lines.append(f"{where}: {key_path}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike | None = None, *, must_exist: bool = False) -> LoadedConfig:
    """Read, merge and validate. ``must_exist``: the file was named explicitly (``--config``,
    ``$WAZOD_CONFIG``), so its absence is an error rather than a run on the built-in defaults."""
    path = Path(path or os.environ.get("WAZOD_CONFIG") or DEFAULT_CONFIG_PATH)
    if must_exist and not path.exists():
        raise ConfigError(f"{path}: no such configuration file (named by --config or $WAZOD_CONFIG)")
    hierarchy = read_hierarchy(path)
    raw = hierarchy.merged()
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, hierarchy)) from None
    loaded = LoadedConfig(config=config, path=path, files=[layer.path for layer in hierarchy.layers],
                          must_exist=must_exist)
    ha = config.ha
    if ha.node_type is None or ha.remote_address is None:
        loaded.ha_conf_used = True
        try:
            loaded.ha_conf_mtime = os.stat(ha.ha_conf).st_mtime
        except OSError:
            loaded.ha_conf_mtime = None
        ha_conf = read_ha_conf(ha.ha_conf)
        for key, value in (("node_type", ha_conf.get("node_type") or "disabled"),
                           ("remote_address", ha_conf.get("remote_address") or None)):
            if getattr(ha, key) is not None:
                continue
            try:
                setattr(ha, key, value)
            except ValidationError as e:
                raise ConfigError(f"{ha.ha_conf}: {key}: {e.errors()[0]['msg']} (got {shorten(value)})") from None
    return loaded


__all__ = ["Config", "LoadedConfig", "load_config", "read_ha_conf", "DEFAULT_CONFIG_PATH"]
