from __future__ import annotations

from pydantic import Field

from . import Section


class MqttSection(Section):
    host: str | None = Field(None, description="MQTT broker; null: no broker, events go to the log and the outbox")
    port: int = Field(1883, description="MQTT broker port")
    topic_prefix: str = Field("wazod", description="first level of every topic")


class BusSection(Section):
    mqtt: MqttSection = Field(default_factory=MqttSection, description="MQTT publishing of events")
