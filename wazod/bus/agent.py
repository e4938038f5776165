"""The optional read-only SNMP agent (``snmp.agent``): role, HA state, last job results.

Why: a network management system that polls (rather than waits for
notifications) can read the same facts ``wazod status`` shows, as the
``wazodStatus`` and ``wazodJobs`` scalars of WAZOD-MIB. Values are read at
request time from the live status board and the job records, so they are
never stale. Read-only, v2c community, off by default; it runs in the
daemon's event loop (pysnmp asyncio) and never blocks it.
"""

from __future__ import annotations

from typing import Any

from wazod.bus.mib import JOB_NAMES, JOBS_OID, STATUS_OID, job_objects
from wazod.logsetup import get_logger

log = get_logger("snmp")


class StatusAgent:
    def __init__(self, ctx):
        self.ctx = ctx
        self._engine = None

    def _status_values(self) -> dict[int, Any]:
        status = self.ctx.status
        return {
            1: self.ctx.config.node_name,
            2: self.ctx.config.role,
            3: status.get("ha_state") or "",
            4: status.get("ha_since") or "",
            5: status.get("services") or "unknown",
            6: self.ctx.emitter.store.last_seq() % 2**32,
        }

    def _job_value(self, sub: int) -> str:
        job = JOB_NAMES[(sub - 1) // 2]
        record = self.ctx.state.read(f"job-{job}", {}) or {}
        if sub % 2:
            return record.get("last_result") or "none"
        return record.get("last_run") or ""

    def start(self) -> None:
        """Open the UDP port and register the objects; raises OSError when the port is taken."""
        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import cmdrsp, context
        from pysnmp.proto.api import v2c

        settings = self.ctx.config.snmp.agent
        snmp_engine = engine.SnmpEngine()
        config.add_transport(snmp_engine, udp.DOMAIN_NAME, udp.UdpTransport().open_server_mode(settings.address))
        config.add_v1_system(snmp_engine, "wazod-agent", settings.community)
        config.add_vacm_user(snmp_engine, 2, "wazod-agent", "noAuthNoPriv", STATUS_OID[:-1])
        snmp_context = context.SnmpContext(snmp_engine)
        builder = snmp_context.get_mib_instrum().get_mib_builder()
        MibScalar, MibScalarInstance = builder.import_symbols("SNMPv2-SMI", "MibScalar", "MibScalarInstance")

        class Live(MibScalarInstance):
            """A scalar whose value is read from wazod at each request."""

            def __init__(self, oid, read, syntax):
                super().__init__(oid, (0,), syntax)
                self._read = read

            def getValue(self, name, **context):  # noqa: N802 - pysnmp's name
                return self.getSyntax().clone(self._read())

        symbols = []
        for sub in range(1, 7):
            syntax = v2c.Unsigned32(0) if sub == 6 else v2c.OctetString("")
            symbols.append(MibScalar(STATUS_OID + (sub,), syntax.clone()).setMaxAccess("read-only"))
            symbols.append(Live(STATUS_OID + (sub,), lambda sub=sub: self._status_values()[sub], syntax))
        for sub, _name, _syntax, _description in job_objects():
            symbols.append(MibScalar(JOBS_OID + (sub,), v2c.OctetString("")).setMaxAccess("read-only"))
            symbols.append(Live(JOBS_OID + (sub,), lambda sub=sub: self._job_value(sub), v2c.OctetString("")))
        builder.export_symbols("__WAZOD-STATUS", *symbols)
        cmdrsp.GetCommandResponder(snmp_engine, snmp_context)
        cmdrsp.NextCommandResponder(snmp_engine, snmp_context)
        cmdrsp.BulkCommandResponder(snmp_engine, snmp_context)
        self._engine = snmp_engine
        log.info("snmp agent listening", listen=settings.listen)

    def stop(self) -> None:
        if self._engine is not None:
            try:
                self._engine.close_dispatcher()
            except Exception:  # closing a half-open engine must not break the stop
                log.debug("snmp agent close failed", exc_info=True)
            self._engine = None
