"""beroNet berofos failover switches: the ISDN lines follow the node that holds the services.

``apply_mode(config, mode, emitter=None)`` is the contract the HA part uses
(0: lines on the slave, at takeover; 1: lines on the master, at failback).
The CLI is ``wazod berofos``, the daemon's drift check is ``wazod.berofos.drift``,
and ``wazod.berofos.simulator`` is a device for tests, the demo and the lab.
"""

from wazod._lazy import lazy_exports

# switch pulls in aiohttp: imported on first use, not by whoever reads bnfos.conf or the config
_EXPORTS = {
    "apply_mode": "switch", "read_status": "switch", "DeviceResult": "switch", "DeviceStatus": "switch",
    "Device": "conf", "load_devices": "conf", "BnfosConfError": "conf",
    "MODE_MASTER": "protocol", "MODE_SLAVE": "protocol",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
