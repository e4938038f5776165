"""``bus``: the durable outbox and its MQTT publication (see docs/bus.md)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from . import Section


class MqttSection(Section):
    host: str | None = Field(None, description="MQTT broker; null: no broker, events go to the log and the outbox")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port")
    topic_prefix: str = Field("wazod", description="first level of every topic")
    client_id: str | None = Field(None, description="MQTT client identifier; null: wazod-<node name>")
    username: str | None = Field(None, description="user name given to the broker; null: anonymous")
    password_file: str | None = Field(
        None, description="file holding the broker password (first line), read at each connection; needs username"
    )
    tls: bool = Field(False, description="connect with TLS (implied by tls_ca or tls_cert)")
    tls_ca: str | None = Field(None, description="CA bundle checking the broker's certificate; null: the system CAs")
    tls_cert: str | None = Field(None, description="client certificate (PEM) for brokers that require one")
    tls_key: str | None = Field(None, description="private key of tls_cert (PEM); null: inside tls_cert")
    keepalive: int = Field(
        15, ge=5, le=3600,
        description="seconds between MQTT pings; the broker publishes online=false after 1.5 x this without news",
    )
    timeout: float = Field(10.0, gt=0, description="seconds to wait for the broker to acknowledge a connect or publish")
    reconnect_min: float = Field(0.5, gt=0, description="first delay before reconnecting (doubles, with jitter)")
    reconnect_max: float = Field(30.0, gt=0, description="longest delay between reconnection attempts")
    max_inflight: int = Field(200, ge=1, le=65535, description="QoS 1 messages awaiting the broker's PUBACK at once")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(c in value for c in "#+\0"):
            raise ValueError("must be a non-empty topic without wildcards (# or +)")
        return value

    @model_validator(mode="after")
    def _password_needs_user(self):
        if self.password_file and not self.username:
            raise ValueError("password_file needs username")
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key needs tls_cert")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        return self

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.tls_ca or self.tls_cert)


class WazoBusSection(Section):
    enabled: bool | Literal["auto"] = Field(
        "auto", description="publish events on Wazo's own RabbitMQ bus: true | false | auto (on a Wazo node, "
        "i.e. when node.wazo_dir exists)",
    )
    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="AMQP URL of Wazo's RabbitMQ (amqp:// or amqps://, user, password, host, port, vhost)",
    )
    password_file: str | None = Field(
        None, description="file holding the broker password (first line), read at each connection; "
        "replaces the URL's password",
    )
    exchange_name: str = Field("wazo-headers", description="exchange the events are published to (Wazo's)")
    exchange_type: Literal["headers", "topic"] = Field("headers", description="type of that exchange (Wazo's)")
    routing_key_prefix: str = Field(
        "wazod", description="routing keys are <prefix>.<node>.<event name> (for topic-exchange consumers)",
    )
    timeout: float = Field(10.0, gt=0, description="seconds to wait for the broker to accept a connection")
    reconnect_min: float = Field(0.5, gt=0, description="first delay before reconnecting (doubles, with jitter)")
    reconnect_max: float = Field(30.0, gt=0, description="longest delay between reconnection attempts")
    max_inflight: int = Field(200, ge=1, le=65535, description="messages awaiting the broker's confirm at once")

    @field_validator("url")
    @classmethod
    def _url_is_amqp(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError("must be an amqp:// or amqps:// URL naming a host, e.g. amqp://guest:guest@127.0.0.1:5672/")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("the port is not a number") from None
        return value

    @field_validator("exchange_name", "routing_key_prefix")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value or len(value) > 127 or any(not c.isprintable() or c.isspace() for c in value):
            raise ValueError("must be 1 to 127 printable characters without spaces")
        return value

    @model_validator(mode="after")
    def _delays(self):
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        return self


class BusSection(Section):
    mqtt: MqttSection = Field(default_factory=MqttSection, description="MQTT publishing of events")
    wazo: WazoBusSection = Field(
        default_factory=WazoBusSection,
        description="publication of events on Wazo's RabbitMQ, the way Wazo services publish theirs "
        "(wazo-webhookd, wazo-websocketd)",
    )
    outbox_max: int = Field(
        100_000, ge=100,
        description="events kept in the outbox (state_dir/events.sqlite3); beyond, the oldest unsent are dropped, "
        "with an error in the journal",
    )
    poll_interval: float = Field(
        1.0, gt=0, le=60,
        description="seconds between looks at the outbox for events appended by other processes (CLI commands)",
    )
    drain_timeout: float = Field(5.0, ge=0, description="seconds a stopping daemon keeps publishing what is pending")
