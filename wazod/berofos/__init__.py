"""beroNet berofos failover switches: the ISDN lines follow the node that holds the services.

``apply_mode(config, mode, emitter=None)`` is the contract the HA part uses
(0: lines on the slave, at takeover; 1: lines on the master, at failback).
The CLI is ``wazod berofos``, the daemon's drift check is ``wazod.berofos.drift``,
and ``wazod.berofos.simulator`` is a device for tests, the demo and the lab.
"""

from wazod.berofos.conf import BnfosConfError, Device, load_devices
from wazod.berofos.protocol import MODE_MASTER, MODE_SLAVE
from wazod.berofos.switch import DeviceResult, DeviceStatus, apply_mode, read_status

__all__ = [
    "apply_mode", "read_status", "DeviceResult", "DeviceStatus", "Device", "load_devices",
    "BnfosConfError", "MODE_MASTER", "MODE_SLAVE",
]
