"""Event outputs: the MQTT publisher and the SNMP notifier, both fed by the durable outbox.

Every event is first stored by ``wazod.events.Emitter`` (daemon and CLI
processes alike); each output here reads the store with its own cursor and
moves it only once the event was confirmed, so nothing is lost while the
broker or a trap receiver is away.
"""
