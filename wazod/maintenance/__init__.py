"""Maintenance mode: upgrade or repair a node, or the pair, without a takeover.

Wazo's way was to comment out the HA cron files by hand on both nodes, and to
remember to put them back. Here ``wazod maintenance on`` holds every HA
action (takeover, failback, berofos change, service start or stop) and the
scheduled replication and sync, on this node and, through its status
endpoint, on the peer; probing and reporting go on. It survives restarts and
always ends by itself (``--for``, default ``maintenance.default_duration``).

Modules: ``duration`` (parsing ``90m``/``2h``), ``state`` (the state file and
its changes, with their events), ``peer`` (telling the other node),
``daemon`` (the daemon part: registry hooks, HTTP routes, expiry).
"""

from wazod._lazy import lazy_exports

# daemon pulls in aiohttp and prometheus_client: imported on first use (the daemon), not by the CLI
_EXPORTS = {
    "MaintenanceComponent": "daemon", "component": "daemon",
    "format_duration": "duration", "parse_duration": "duration",
    "MaintenanceState": "state", "is_active": "state", "status_view": "state",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
