"""The parts the supervisor runs, each built by a factory ``factory(ctx) -> component | None``.

A component has a ``name``, an ``async run()`` that returns once
``ctx.stopping`` is set, and optionally an ``async reload()`` called after a
successful SIGHUP reload. A factory returns None when its part does not apply
(for example no broker configured). Adding a part means adding one line here.
"""

from __future__ import annotations

import importlib

from wazod.logsetup import get_logger

log = get_logger("components")

FACTORIES = [
    "wazod.scheduler:JobScheduler",
    "wazod.maintenance:component",
    "wazod.ha.monitor:component",
    "wazod.berofos.drift:component",
    "wazod.bus.publisher:component",
    "wazod.bus.wazo:component",
    "wazod.bus.snmp:component",
    "wazod.health.checks:component",
    "wazod.endpoint.server:component",
    "wazod.replication.continuous:component",
    "wazod.sync.continuous:component",
]


def build_components(ctx) -> list:
    components = []
    for spec in FACTORIES:
        module_name, attr = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                log.debug("part not installed", part=module_name)
                continue
            raise
        component = getattr(module, attr)(ctx)
        if component is not None:
            components.append(component)
    return components
