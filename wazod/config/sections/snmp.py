"""``snmp``: notification targets for every event (see docs/bus.md, WAZOD-MIB)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from . import Section


class TrapTarget(Section):
    host: str = Field(..., description="trap receiver address")
    port: int = Field(162, ge=1, le=65535, description="trap receiver port")
    version: Literal["2c", "3"] = Field("2c", description="SNMP version")
    notification: Literal["trap", "inform"] = Field(
        "trap", description="trap (fire and forget) or inform (acknowledged by the receiver, retried)"
    )
    community: str | None = Field(None, description="v2c community")
    user: str | None = Field(None, description="v3 user name")
    auth_key: str | None = Field(None, description="v3 authentication key (at least 8 characters)")
    priv_key: str | None = Field(None, description="v3 privacy key (at least 8 characters)")
    auth_protocol: Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"] = Field(
        "sha", description="v3 authentication protocol"
    )
    priv_protocol: Literal["des", "aes", "aes192", "aes256"] = Field("aes", description="v3 privacy protocol")
    timeout: float = Field(2.0, gt=0, description="informs: seconds to wait for the receiver's answer")
    retries: int = Field(3, ge=0, le=20, description="informs: resends before the notification is reported failed")

    @model_validator(mode="after")
    def _credentials(self):
        if self.version == "2c" and not self.community:
            raise ValueError("version 2c needs community")
        if self.version == "3":
            missing = [k for k in ("user", "auth_key", "priv_key") if not getattr(self, k)]
            if missing:
                raise ValueError(f"version 3 (authPriv) needs {', '.join(missing)}")
            for key in ("auth_key", "priv_key"):
                if len(getattr(self, key)) < 8:
                    raise ValueError(f"{key} must be at least 8 characters (RFC 3414)")
        return self

    @property
    def label(self) -> str:
        """The target's identity without its secrets: ``trap v2c 10.0.0.9:162``, ``inform v3 nms@10.0.0.9:162``.

        Two targets on one host:port (a trap and an inform to one NMS, v2c and v3 during a
        migration) are two targets: each has its own outbox cursor, status and metrics under
        this name. Only targets that differ by their community alone share it
        (``SnmpSection.labels`` numbers them).
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        who = f"{self.user}@" if self.version == "3" else ""
        return f"{self.notification} v{self.version} {who}{host}:{self.port}"

    @property
    def old_label(self) -> str:
        """The cursor name of wazod before targets were told apart (one per host:port)."""
        return f"{self.host}:{self.port}"


class AgentSection(Section):
    enabled: bool = Field(False, description="answer SNMP GET/WALK for role, HA state and last job results")
    listen: str = Field("127.0.0.1:1161", description="host:port of the agent (UDP)")
    community: str | None = Field(None, description="v2c read-only community of the agent (required when enabled)")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port")
        return value

    @model_validator(mode="after")
    def _community_when_enabled(self):
        if self.enabled and not self.community:
            raise ValueError("an enabled agent needs community")
        return self

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class SnmpSection(Section):
    traps: list[TrapTarget] = Field(default_factory=list, description="notification targets")
    agent: AgentSection = Field(default_factory=AgentSection, description="small read-only SNMP agent, off by default")
    def labels(self) -> list[str]:
        """``traps``' labels, in order; a label met again (same target, another community) gets ``#2``, ``#3``..."""
        seen: dict[str, int] = {}
        out = []
        for target in self.traps:
            seen[target.label] = seen.get(target.label, 0) + 1
            out.append(target.label if seen[target.label] == 1 else f"{target.label} #{seen[target.label]}")
        return out

    engine_id: str | None = Field(
        None,
        description="SNMPv3 engine ID of this node (hex); null: one generated once and kept in state_dir/snmp-engine-id",
    )

    @field_validator("engine_id")
    @classmethod
    def _hex_engine_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-f]{10,64}", value) or len(value) % 2:
            raise ValueError("must be 5 to 32 bytes in hexadecimal")
        return value
