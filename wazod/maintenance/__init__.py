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

from wazod.maintenance.daemon import MaintenanceComponent, component
from wazod.maintenance.duration import format_duration, parse_duration
from wazod.maintenance.state import MaintenanceState, is_active, status_view

__all__ = ["MaintenanceComponent", "MaintenanceState", "component", "format_duration", "is_active",
           "parse_duration", "status_view"]
