"""WAZOD-MIB: the notification OIDs and varbinds, and the MIB module text rendered from them.

Why rendered: the numbers the notifier sends and the MIB the network
management system loads must never disagree, so both come from the tables
below; ``wazod/mibs/WAZOD-MIB.txt`` is ``render_mib()`` (a test keeps them
equal, and ``python -m wazod.bus.mib > wazod/mibs/WAZOD-MIB.txt`` refreshes it).

OID root: ``enterprises.32473`` is the enterprise number RFC 5612 sets aside
for documentation; wazod uses its arc 7 until the project has its own number
(changing ``ENTERPRISE_OID`` and regenerating the MIB is all it takes).
"""

from __future__ import annotations

import re

ENTERPRISE_OID = (1, 3, 6, 1, 4, 1, 32473, 7)
NOTIFICATIONS_OID = ENTERPRISE_OID + (0,)
EVENT_OBJECTS_OID = ENTERPRISE_OID + (1, 1)

SYS_UPTIME_OID = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID_OID = "1.3.6.1.6.3.1.1.4.1.0"

# event name -> sub-identifier under wazodNotifications; numbers are forever: add, never renumber
NOTIFICATION_NUMBERS: dict[str, int] = {
    "daemon_started": 1, "daemon_stopping": 2, "config_reloaded": 3,
    "ha_master_down": 10, "ha_master_up": 11, "ha_takeover_started": 12, "ha_takeover_completed": 13,
    "ha_takeover_failed": 14, "ha_failback_started": 15, "ha_failback_completed": 16, "ha_failback_failed": 17,
    "ha_isolated": 18, "ha_flapping": 19, "ha_slave_down": 20, "ha_slave_up": 21,
    "ha_partitioned": 22, "ha_fenced": 23, "ha_unfenced": 24, "ha_fence_failed": 25, "ha_copy_back_failed": 26,
    "ha_released": 27,
    "berofos_mode_changed": 30, "berofos_failed": 31, "berofos_taken": 32,
    "replication_completed": 40, "replication_skipped": 41, "replication_failed": 42,
    "sync_completed": 43, "sync_failed": 44, "backup_completed": 45, "backup_failed": 46,
    "purge_completed": 47, "purge_failed": 48,
    "health_degraded": 50, "health_recovered": 51,
    "maintenance_started": 60, "maintenance_ended": 61,
    "restore_completed": 62, "restore_failed": 63,
}
OTHER_EVENT_NUMBER = 100  # wazodOtherEvent: any event name not listed above

# (column, MIB name, syntax, description)
EVENT_OBJECTS = [
    (1, "wazodEventName", "DisplayString (SIZE (1..64))",
     "The wazod event name, as on the bus (for example ha_takeover_completed)."),
    (2, "wazodEventNode", "DisplayString (SIZE (0..64))", "Name of the node that emitted the event."),
    (3, "wazodEventOriginUuid", "DisplayString (SIZE (0..64))",
     "Installation UUID of the node (Wazo's XIVO_UUID), as origin_uuid on the bus."),
    (4, "wazodEventSeq", "Unsigned32",
     "Sequence number of the event on its node: grows by one per event and survives restarts, "
     "so a gap means a missed notification (modulo 2^32)."),
    (5, "wazodEventTimestamp", "DisplayString (SIZE (0..40))",
     "When the event happened, ISO 8601 with UTC offset."),
    (6, "wazodEventSeverity", "INTEGER { info(1), warning(2) }",
     "warning for failures and losses (names ending in _failed, _down, _isolated, _flapping, _degraded), "
     "info otherwise."),
    (7, "wazodEventData", "OCTET STRING (SIZE (0..1024))",
     "The event data as compact JSON in UTF-8, cut at 1024 octets (then it ends with an ellipsis)."),
]

STATUS_OID = ENTERPRISE_OID + (1, 2)
JOBS_OID = ENTERPRISE_OID + (1, 3)

# read-only scalars of the optional agent: (sub-identifier, MIB name, syntax, description)
STATUS_OBJECTS = [
    (1, "wazodNodeName", "DisplayString", "Name of this node (node.name)."),
    (2, "wazodRole", "DisplayString", "HA role of this node: master, slave or disabled."),
    (3, "wazodHaState", "DisplayString", "HA state of the daemon (for example standby, active, starting)."),
    (4, "wazodHaSince", "DisplayString", "When the HA state last changed, ISO 8601."),
    (5, "wazodServices", "DisplayString", "Telephony services of this node: running, stopped or unknown."),
    (6, "wazodLastEventSeq", "Unsigned32", "seq of the newest event of this node (modulo 2^32)."),
]
JOB_NAMES = ["replication", "sync", "backup", "purge"]  # job k: LastResult = 2k-1, LastRun = 2k under wazodJobs


def job_objects() -> list[tuple[int, str, str, str]]:
    out = []
    for k, job in enumerate(JOB_NAMES, start=1):
        cap = job.capitalize()
        out.append((2 * k - 1, f"wazod{cap}LastResult", "DisplayString",
                    f"Result of the last {job} run: ok, failed, skipped, or none when it never ran."))
        out.append((2 * k, f"wazod{cap}LastRun", "DisplayString",
                    f"When the last {job} run started, ISO 8601; empty when it never ran."))
    return out


_WARNING_RE = re.compile(r"(_failed|_down|_isolated|_flapping|_degraded)$")


def severity(name: str) -> int:
    return 2 if _WARNING_RE.search(name) else 1


def mib_name(event: str) -> str:
    """ha_takeover_completed -> wazodHaTakeoverCompleted."""
    return "wazod" + "".join(part.capitalize() for part in event.split("_"))


def notification_oid(event: str) -> tuple[int, ...]:
    return NOTIFICATIONS_OID + (NOTIFICATION_NUMBERS.get(event, OTHER_EVENT_NUMBER),)


def _oid_text(oid: tuple[int, ...]) -> str:
    return ".".join(map(str, oid))


_DESCRIPTIONS = {
    "daemon": "The wazod daemon", "config": "The configuration", "ha": "High availability",
    "berofos": "A berofos failover switch", "replication": "Database replication", "sync": "File sync",
    "backup": "The backup", "purge": "The purge of log tables", "health": "A health check",
    "maintenance": "Maintenance mode",
}


def _notification_description(event: str) -> str:
    area = _DESCRIPTIONS.get(event.split("_")[0], "wazod")
    return f"{area}: event {event} (see the wazod documentation for its data)."


def render_mib() -> str:
    objects = ", ".join(name for _, name, _, _ in EVENT_OBJECTS)
    out = [
        "WAZOD-MIB DEFINITIONS ::= BEGIN",
        "",
        "IMPORTS",
        "    MODULE-IDENTITY, OBJECT-TYPE, NOTIFICATION-TYPE, Unsigned32, enterprises",
        "        FROM SNMPv2-SMI",
        "    DisplayString",
        "        FROM SNMPv2-TC",
        "    MODULE-COMPLIANCE, OBJECT-GROUP, NOTIFICATION-GROUP",
        "        FROM SNMPv2-CONF;",
        "",
        "wazodMIB MODULE-IDENTITY",
        '    LAST-UPDATED "202611270000Z"',
        '    ORGANIZATION "wazod project"',
        '    CONTACT-INFO "wazod maintainers; see the project README"',
        "    DESCRIPTION",
        '        "Notifications of wazod, the supervisor of a Wazo IPBX high-availability pair.',
        "        Every wazod event is sent as the notification of the same name, with the",
        "        wazodEvent* objects as variable bindings; events not listed here are sent",
        '        as wazodOtherEvent."',
        '    REVISION "202611270000Z"',
        '    DESCRIPTION "First version."',
        f"    ::= {{ enterprises {' '.join(map(str, ENTERPRISE_OID[6:]))} }}",
        "",
        "wazodNotifications OBJECT IDENTIFIER ::= { wazodMIB 0 }",
        "wazodObjects       OBJECT IDENTIFIER ::= { wazodMIB 1 }",
        "wazodConformance   OBJECT IDENTIFIER ::= { wazodMIB 2 }",
        "wazodEvent         OBJECT IDENTIFIER ::= { wazodObjects 1 }",
        "wazodStatus        OBJECT IDENTIFIER ::= { wazodObjects 2 }",
        "wazodJobs          OBJECT IDENTIFIER ::= { wazodObjects 3 }",
        "",
    ]
    tables = [(STATUS_OBJECTS, "wazodStatus", "read-only"), (job_objects(), "wazodJobs", "read-only"),
              (EVENT_OBJECTS, "wazodEvent", "accessible-for-notify")]
    for table, parent, access in tables:
        for sub, name, syntax, description in table:
            out += [
                f"{name} OBJECT-TYPE",
                f"    SYNTAX      {syntax}",
                f"    MAX-ACCESS  {access}",
                "    STATUS      current",
                f'    DESCRIPTION "{description}"',
                f"    ::= {{ {parent} {sub} }}",
                "",
            ]
    names = []
    for event, number in sorted(NOTIFICATION_NUMBERS.items(), key=lambda kv: kv[1]):
        names.append(mib_name(event))
        out += [
            f"{mib_name(event)} NOTIFICATION-TYPE",
            f"    OBJECTS     {{ {objects} }}",
            "    STATUS      current",
            f'    DESCRIPTION "{_notification_description(event)}"',
            f"    ::= {{ wazodNotifications {number} }}",
            "",
        ]
    names.append("wazodOtherEvent")
    status_names = [name for _, name, _, _ in STATUS_OBJECTS + job_objects()]
    out += [
        "wazodOtherEvent NOTIFICATION-TYPE",
        f"    OBJECTS     {{ {objects} }}",
        "    STATUS      current",
        '    DESCRIPTION "A wazod event without a notification of its own; wazodEventName names it."',
        f"    ::= {{ wazodNotifications {OTHER_EVENT_NUMBER} }}",
        "",
        "wazodCompliances OBJECT IDENTIFIER ::= { wazodConformance 1 }",
        "wazodGroups      OBJECT IDENTIFIER ::= { wazodConformance 2 }",
        "",
        "wazodCompliance MODULE-COMPLIANCE",
        "    STATUS      current",
        '    DESCRIPTION "A wazod node sends every notification with all the event objects."',
        "    MODULE",
        "        MANDATORY-GROUPS { wazodEventGroup, wazodNotificationGroup }",
        "        GROUP wazodStatusGroup",
        '        DESCRIPTION "Only when the agent is enabled (snmp.agent.enabled)."',
        "    ::= { wazodCompliances 1 }",
        "",
        "wazodEventGroup OBJECT-GROUP",
        f"    OBJECTS     {{ {objects} }}",
        "    STATUS      current",
        '    DESCRIPTION "The variable bindings of every wazod notification."',
        "    ::= { wazodGroups 1 }",
        "",
        "wazodNotificationGroup NOTIFICATION-GROUP",
        "    NOTIFICATIONS {",
        *[f"        {n}{',' if i < len(names) - 1 else ''}" for i, n in enumerate(names)],
        "    }",
        "    STATUS      current",
        '    DESCRIPTION "The notifications of wazod."',
        "    ::= { wazodGroups 2 }",
        "",
        "wazodStatusGroup OBJECT-GROUP",
        "    OBJECTS     {",
        *[f"        {n}{',' if i < len(status_names) - 1 else ''}" for i, n in enumerate(status_names)],
        "    }",
        "    STATUS      current",
        '    DESCRIPTION "What the optional agent answers."',
        "    ::= { wazodGroups 3 }",
        "",
        "END",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_mib())
