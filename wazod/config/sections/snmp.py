from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import Section


class TrapTarget(Section):
    host: str = Field(..., description="trap receiver address")
    port: int = Field(162, description="trap receiver port")
    version: Literal["2c", "3"] = Field("2c", description="SNMP version")
    community: str | None = Field(None, description="v2c community")
    user: str | None = Field(None, description="v3 user name")
    auth_key: str | None = Field(None, description="v3 authentication key")
    priv_key: str | None = Field(None, description="v3 privacy key")


class SnmpSection(Section):
    traps: list[TrapTarget] = Field(default_factory=list, description="notification targets")
