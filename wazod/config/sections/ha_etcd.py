"""The ``ha.etcd`` section: how this pair uses an etcd arbiter (``ha.arbiter: etcd://...``).

Kept apart from ``ha`` because it only matters with an etcd arbiter, and
because its rules (whole-second TTLs, one directory per pair) are etcd's.
"""

from __future__ import annotations

from pydantic import Field

from . import Section


class EtcdSection(Section):
    pair_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="the pair's name in etcd, the same on both nodes and different for every pair sharing the "
        "cluster: keys live under <prefix>/<pair_id>/; required with an etcd arbiter",
    )
    prefix: str = Field(
        "/wazod", pattern=r"^(/[A-Za-z0-9._-]+)+$", description="etcd key prefix under which every pair has its directory"
    )
    ttl: int = Field(
        2, ge=2, description="seconds of the lease that keeps a node's keys (etcd grants whole seconds): the slave "
        "obtains the owner key at most ttl seconds after the master stopped renewing it (2: takeover within 3 s "
        "of a master's death; docs/ha-etcd.md)"
    )
    timeout: float | None = Field(
        None, gt=0, description="seconds one etcd call may take (observe, claim, renew, release); null: 0.8 x probe_interval"
    )
    username: str | None = Field(None, min_length=1, description="etcd user (authentication enabled); null: none")
    password_file: str | None = Field(
        None, description="file whose first line is the etcd user's password (read at start, never logged)"
    )
    ca_file: str | None = Field(
        None, description="PEM file of the CA that signed the etcd members' certificates: set, wazod talks TLS "
        "to etcd; null: plaintext"
    )
    cert_file: str | None = Field(None, description="PEM client certificate (etcd --client-cert-auth); null: none")
    key_file: str | None = Field(None, description="PEM key of cert_file")
