"""The ``ha`` section: who this node is in the pair, how the peer is watched, how services move.

The four timing defaults (probe_interval, fall, rise, failback_hold) are chosen
with the failover benchmark (bench/failover): with probes every 0.5 s and up to
9 transmissions per probe and round, a round fails at 30 % loss in each
direction with probability about 0.51**9 = 0.002, three failed rounds in a row
(fall) about 1e-8, so a ten-minute soak sees no false takeover, while a dead
master is declared down about 1.7 s after it died (keepalived, advert_int 1:
about 3.1 s).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from . import HostAddress, Section
from .ha_etcd import EtcdSection

ProbeName = Literal["icmp", "tcp", "sip", "peer"]


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
    step_timeout: float = Field(120.0, gt=0, description="seconds one start or stop step may take")
    retries: int = Field(3, ge=1, description="attempts of a failing step before the action is reported failed")
    retry_backoff: float = Field(
        1.0, ge=0, description="seconds before the second attempt of a failing step; doubled for each next one"
    )

    @model_validator(mode="after")
    def _command_backend_needs_argv(self) -> ServicesSection:
        for name in ("start", "stop"):
            for i, argv in enumerate(getattr(self, name)):
                if not argv or not all(isinstance(a, str) and a for a in argv):
                    raise ValueError(f"services.{name}[{i}] must be a non-empty list of non-empty strings")
        if self.status is not None and not self.status:
            raise ValueError("services.status must be null or a non-empty argv list")
        return self


class HaSection(Section):
    node_type: Literal["master", "slave", "disabled", "arbiter"] | None = Field(
        None, description="master | slave | disabled; null: read from ha_conf (and 'disabled' without it); "
        "arbiter (wazod only, never in ha_conf): the third vote of a pair, watching the two arbiter_nodes"
    )
    remote_address: HostAddress | None = Field(
        None, description="the other node (an IP address or a host name); null: read from ha_conf"
    )
    ha_conf: str = Field("/etc/xivo/ha.conf", description="Wazo's own HA file, rewritten by the web UI")
    marker_dir: str | None = Field(
        "/var/lib/wazo",
        description="where Wazo keeps is-primary / is-secondary; when this directory exists, a slave acts only "
        "while is-secondary is there (as Wazo's check does); null: markers ignored",
    )
    probe_interval: float = Field(0.5, gt=0, description="seconds between probe rounds")
    fall: int = Field(3, ge=1, description="consecutive failed rounds before the master is down")
    rise: int = Field(3, ge=1, description="consecutive good rounds before the master is up again")
    failback_hold: float = Field(
        20.0, ge=0, description="seconds the master must stay up (continuously) before failback"
    )
    witnesses: list[HostAddress] = Field(default_factory=list, description="addresses the slave must reach before taking over")
    arbiter: str | None = Field(
        None,
        description="the third vote that breaks a tie between the two nodes: http://HOST:PORT (a wazod with "
        "node_type arbiter; token: peer_token_file) or etcd://HOST:PORT[,HOST:PORT...] (an etcd v3 cluster "
        "holding the pair's lease); null: none (a cut of the link between the nodes alone makes both active)",
    )
    self_fence: bool = Field(
        True,
        description="with an arbiter: a node running the services that reaches neither its peer nor the arbiter "
        "stops them (ha_fenced) within fall rounds, and starts them again once its quorum is back; false keeps "
        "an isolated master serving (split-brain risk) but also a healthy master when arbiter and slave are "
        "both down",
    )
    arbiter_nodes: list[str] = Field(
        default_factory=list,
        description="on a node whose node_type is arbiter: the addresses of the two nodes it watches (as the "
        "nodes' remote_address name each other)",
    )
    probes: list[ProbeName] = Field(
        default_factory=lambda: ["icmp", "sip"],
        description="probes of the master run every round by the slave: icmp, tcp, sip, peer",
    )
    slave_probes: list[ProbeName] = Field(
        default_factory=lambda: ["icmp"],
        description="probes of the slave run every round by the master (its Asterisk is stopped in standby)",
    )
    policy: Literal["unreachable_or_sip_dead", "unreachable", "any_failed"] = Field(
        "unreachable_or_sip_dead",
        description="which failures make a round bad: unreachable_or_sip_dead (the host answers nothing, or answers "
        "but SIP does not), unreachable (Wazo's rule: only a silent host), any_failed (any configured probe failed)",
    )
    round_timeout: float | None = Field(
        None, gt=0, description="seconds a round waits for answers; null: 0.9 x probe_interval"
    )
    retransmit_interval: float = Field(
        0.05, gt=0, description="seconds between retransmissions (echo requests, SIP OPTIONS, TCP connects) in a round"
    )
    icmp_count: int = Field(
        9, ge=1, description="most echo requests per round and target (the round stops at the first reply)"
    )
    tcp_ports: list[int] = Field(default_factory=list, description="ports the tcp probe connects to (e.g. 5060, 5432)")
    sip_port: int = Field(5060, ge=1, le=65535, description="UDP port of the sip probe (Asterisk)")
    sip_timeout: float = Field(
        4.0, gt=0,
        description="seconds an OPTIONS may wait for its answer before Asterisk is judged dead: an Asterisk under "
        "load that answers late (even seconds late) is alive; a host that answers nothing at all is still "
        "caught in fall rounds, and a port unreachable (Asterisk not running) at once",
    )
    own_sip_address: HostAddress | None = Field(
        None,
        description="a master with an etcd arbiter probes its own Asterisk there each round (SIP OPTIONS on "
        "sip_port, when probes include sip): dead for fall rounds, its services are read at once; null: the "
        "address this node uses towards its peer (the one the peer probes)",
    )
    peer_url: str | None = Field(
        None,
        description="the other wazod's status endpoint for the peer probe, '{remote_address}' is replaced, "
        "e.g. http://{remote_address}:9599/health; null: no peer probe",
    )
    peer_token_file: str | None = Field(
        None, description="file whose first line is sent as X-Auth-Token to the peer's status endpoint "
        "(needed when it listens beyond loopback: its status.token_file); null: none"
    )
    flap_window: float = Field(120.0, gt=0, description="seconds of the sliding window in which transitions are counted")
    flap_limit: int = Field(
        4, ge=1, description="more master up/down transitions than this in flap_window: ha_flapping, state frozen"
    )
    action_backoff: float = Field(
        10.0, gt=0, description="seconds before a failed takeover or failback is tried again (doubled up to 300 s)"
    )
    services_check_interval: float = Field(
        30.0, ge=0, description="seconds between reads of the real service state on the slave (services started or "
        "killed behind wazod's back are then reconciled), and on a master with an etcd arbiter (its own services "
        "found dead: the owner key is released; read at once when its own Asterisk fails the SIP probe for fall "
        "rounds); 0: only at start-up (and, on such a master, after the SIP probe)"
    )
    copy_back_timeout: float = Field(600.0, gt=0, description="seconds the failback's copy of files back to the master may take")
    services: ServicesSection = Field(default_factory=ServicesSection, description="telephony services of this node")
    etcd: EtcdSection = Field(
        default_factory=EtcdSection, description="with ha.arbiter etcd://...: the pair's keys and lease in etcd"
    )

    @property
    def effective_round_timeout(self) -> float:
        return self.round_timeout if self.round_timeout is not None else 0.9 * self.probe_interval

    @model_validator(mode="after")
    def _coherent(self) -> HaSection:
        if self.round_timeout is not None and self.round_timeout > self.probe_interval:
            raise ValueError(f"round_timeout ({self.round_timeout}) must not exceed probe_interval ({self.probe_interval})")
        for p in self.tcp_ports:
            if not 1 <= p <= 65535:
                raise ValueError(f"tcp_ports: {p} is not a TCP port")
        if "tcp" in self.probes and not self.tcp_ports:
            raise ValueError("probes include tcp but tcp_ports is empty")
        if "peer" in self.probes and not self.peer_url:
            raise ValueError("probes include peer but peer_url is not set")
        if self.arbiter is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(self.arbiter)
            if parts.scheme not in ("http", "https", "etcd") or not parts.netloc:
                raise ValueError(f"arbiter: {self.arbiter!r} is not http://HOST:PORT or etcd://HOST:PORT[,...]")
            if parts.scheme != "etcd" and (parts.path not in ("", "/") or parts.query):
                raise ValueError(f"arbiter: {self.arbiter!r}: give only http://HOST:PORT (the path is /arbiter)")
        if self.node_type == "arbiter":
            if len(self.arbiter_nodes) != 2 or len(set(self.arbiter_nodes)) != 2:
                raise ValueError("node_type arbiter needs arbiter_nodes: the two addresses of the pair")
            if self.arbiter:
                raise ValueError("an arbiter has no arbiter of its own: ha.arbiter must be null")
        return self
