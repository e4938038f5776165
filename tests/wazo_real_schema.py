"""A test database with the shape of a real Wazo ``asterisk`` database (issue 18).

The small schema of ``wazo_schema`` holds the tables wazod's code reasons
about, with their real columns. Tried against a database built from Wazo's
current models, replication behaved differently than on it: many more tables,
indexes and keys, most of them in tables of a few rows. This module adds, in
the harness's own words, the rest of that shape: the table names of Wazo's
models (xivo-dao, wazo-auth, wazo-call-logd), each with an id or uuid key, its
tenant and its parents (ON DELETE CASCADE or SET NULL as the models declare
them for the most part), an enum column for Wazo's enum types, indexes on the
keys, and rows spread as on a 5,000-user system:

* 121 tables, 108 replicated: 65 empty, 22 with fewer than 100 rows, 4 with
  100 to 1,000 and 17 with more than 1,000 (about 190,000 rows in all; the
  SIP sections' options are the biggest table, as on Wazo);
* ~306 indexes, ~124 foreign keys (most with ON DELETE CASCADE / SET NULL),
  61 sequences, 35 enum types, the tenant <-> endpoint_sip key cycle;
* 600,000 rows in the excluded log tables (cel, queue_log, stat_*).

The columns of the added tables are a shape, not Wazo's exact column lists:
what matters for replication (keys, indexes, types that COPY handles
differently, row counts and widths) is there; ``shape(dsn)`` measures it.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass

import wazo_schema

TENANT = "11111111-1111-4111-8111-111111111111"
USERS = 5000

# Wazo's enum types beyond those of the small schema (names from xivo-dao's models; values abridged)
ENUMS = {
    "dialaction_action": ["none", "endcall:busy", "endcall:hangup", "user", "group", "queue", "voicemail",
                          "trunk", "schedule", "extension", "outcall", "sound", "custom", "ivr", "conference",
                          "switchboard", "application:custom"],
    "dialaction_category": ["callfilter", "group", "incall", "queue", "schedule", "user", "outcall", "ivr",
                            "ivr_choice"],
    "callfilter_type": ["bosssecretary"],
    "callfilter_bosssecretary": ["bossfirst-serial", "bossfirst-simult", "secretary-serial", "secretary-simult",
                                 "all"],
    "callfilter_callfrom": ["internal", "external", "all"],
    "callfiltermember_bstype": ["boss", "secretary"],
    "ldapserver_protocolversion": ["2", "3"],
    "ldapserver_securitylayer": ["tls", "ssl"],
    "schedule_path_type": ["user", "group", "queue", "incall", "outcall", "voicemenu"],
    "trunk_protocol": ["sip", "iax", "sccp", "custom"],
    "useriax_protocol": ["iax"],
    "usersip_protocol": ["sip"],
    "endpoint_sip_section_type": ["aor", "auth", "endpoint", "identify", "registration",
                                  "registration_outbound_auth", "outbound_auth"],
    "queue_category": ["group", "queue"],
    "queuemember_usertype": ["agent", "user"],
    "queue_monitor_type": ["no", "mixmonitor"],
    "queue_autopause": ["no", "yes", "all"],
    "moh_mode": ["custom", "files", "mp3"],
    "moh_sort": ["alphabetical", "random", "random_start"],
    "meeting_authorization_status": ["pending", "accepted", "rejected"],
    "func_key_mapping_blf": ["false", "true"],
    "agent_membership_status_type": ["queue", "group"],
    "phone_number_kind": ["main", "other"],
    "schedule_time_mode": ["opened", "closed"],
    "paginguser_caller": ["caller", "member"],
}


@dataclass
class T:
    """One added table: key kind, rows, parents ``(column, table, column, on_delete)``, enum column."""

    name: str
    rows: int = 0
    pk: str = "serial"  # serial | uuid | none (the parents' columns, or the name, make the key: no sequence)
    parents: tuple = ()
    enum: str | None = None
    tenant: bool = True
    unique_name: bool = False
    width: int = 0  # bytes of text payload per row


# keys declared without ON DELETE (the rest of the added keys cascade or set null)
PLAIN_KEYS = {("outcalltrunk", "outcallid"), ("outcalltrunk", "trunkfeaturesid"), ("dialpattern", "outcall_id"),
              ("asterisk_file_section", "asterisk_file_id"), ("asterisk_file_variable", "asterisk_file_section_id"),
              ("pjsip_transport_option", "pjsip_transport_uuid"), ("line_extension", "extension_id")}


def _p(col, table, ref="id", on_delete="CASCADE"):
    return (col, table, ref, on_delete)


# The parents of the small schema, with their row counts (for key-consistent data).
SMALL_PARENT_ROWS = {"userfeatures": USERS, "linefeatures": USERS, "extensions": USERS, "queuefeatures": 1,
                     "func_key_template": USERS, "voicemail": USERS}

TABLES: list[T] = [
    # > 1,000 rows
    T("endpoint_sip_section", 3 * USERS + 3, pk="uuid", tenant=False, enum="endpoint_sip_section_type",
      parents=(_p("endpoint_sip_uuid", "endpoint_sip", "uuid"),)),
    T("endpoint_sip_section_option", 97_000, tenant=False, width=16,
      parents=(_p("endpoint_sip_section_uuid", "endpoint_sip_section", "uuid"),)),
    T("line_extension", USERS, pk="none", tenant=False,
      parents=(_p("line_id", "linefeatures"), _p("extension_id", "extensions"))),
    T("func_key", 2 * USERS, tenant=False,
      parents=(_p("type_id", "func_key_type", on_delete="NO ACTION"),
               _p("destination_type_id", "func_key_destination_type", on_delete="NO ACTION"))),
    T("func_key_mapping", 2 * USERS, pk="none", tenant=False, enum="func_key_mapping_blf",
      parents=(_p("template_id", "func_key_template"), _p("func_key_id", "func_key"))),
    T("func_key_dest_user", USERS, pk="none", tenant=False,
      parents=(_p("func_key_id", "func_key"), _p("user_id", "userfeatures"))),
    # 100 - 1,000 rows
    T("queuemember", 500, pk="none", tenant=False, enum="queuemember_usertype",
      parents=(_p("userid", "userfeatures", on_delete="SET NULL"), _p("queue_id", "queuefeatures"))),
    T("dialaction", 600, pk="none", tenant=False, enum="dialaction_category"),
    T("groupfeatures", 120, unique_name=True, enum="queue_category"),
    T("incall", 300, parents=(_p("extension_id", "extensions", on_delete="SET NULL"),)),
    # 1 - 99 rows
    T("features", 40, tenant=False, width=20),
    T("func_key_type", 3, tenant=False),
    T("func_key_destination_type", 14, tenant=False),
    T("pjsip_transport", 3, pk="uuid", tenant=False, unique_name=True),
    T("pjsip_transport_option", 12, tenant=False, parents=(_p("pjsip_transport_uuid", "pjsip_transport", "uuid"),)),
    T("moh", 3, pk="uuid", unique_name=True, enum="moh_mode"),
    T("trunkfeatures", 4, enum="trunk_protocol",
      parents=(_p("endpoint_sip_uuid", "endpoint_sip", "uuid", "SET NULL"),)),
    T("outcall", 3, unique_name=True),
    T("outcalltrunk", 4, pk="none", tenant=False, parents=(_p("outcallid", "outcall"), _p("trunkfeaturesid", "trunkfeatures"))),
    T("dialpattern", 12, tenant=False, parents=(_p("outcall_id", "outcall"),)),
    T("sccpgeneralsettings", 10, tenant=False),
    T("asterisk_file", 8, tenant=False, unique_name=True),
    T("asterisk_file_section", 30, tenant=False, parents=(_p("asterisk_file_id", "asterisk_file"),)),
    T("asterisk_file_variable", 90, tenant=False, width=12,
      parents=(_p("asterisk_file_section_id", "asterisk_file_section"),)),
    T("schedule", 5, unique_name=True),
    # empty on a typical system (features not in use)
    T("accessfeatures", unique_name=True), T("agentfeatures", unique_name=True), T("agent_login_status", pk="none", tenant=False),
    T("agent_membership_status", pk="none", tenant=False, enum="agent_membership_status_type",
      parents=(_p("agent_id", "agentfeatures"), _p("queue_id", "queuefeatures"))),
    T("agentqueueskill", pk="none", tenant=False, parents=(_p("agentid", "agentfeatures"), _p("skillid", "queueskill"))),
    T("application", pk="uuid", unique_name=True),
    T("application_dest_node", tenant=False, pk="uuid", parents=(_p("application_uuid", "application", "uuid"),)),
    T("blocklist", pk="uuid", parents=(_p("user_id", "userfeatures"),)),
    T("blocklist_number", pk="uuid", tenant=False, parents=(_p("blocklist_uuid", "blocklist", "uuid"),)),
    T("blocklist_user", pk="uuid", tenant=False, parents=(_p("blocklist_uuid", "blocklist", "uuid"),
                                                         _p("user_uuid", "userfeatures", "uuid"))),
    T("callfilter", unique_name=True, enum="callfilter_bosssecretary"),
    T("callfiltermember", tenant=False, enum="callfiltermember_bstype", parents=(_p("callfilterid", "callfilter"),)),
    T("conference", unique_name=True),
    T("contextinclude", pk="none", tenant=False, parents=(_p("context", "context", "name"),)),
    T("contextmember", pk="none", tenant=False, parents=(_p("context", "context", "name"),)),
    T("contextnumbers", pk="none", tenant=False, parents=(_p("context", "context", "name"),)),
    T("external_app", pk="uuid", unique_name=True),
    T("feature_extension", pk="uuid", tenant=False),
    T("func_key_dest_agent", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"), _p("agent_id", "agentfeatures"))),
    T("func_key_dest_bsfilter", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),
                                                       _p("filtermember_id", "callfiltermember"))),
    T("func_key_dest_conference", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),
                                                         _p("conference_id", "conference"))),
    T("func_key_dest_custom", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),)),
    T("func_key_dest_features", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),)),
    T("func_key_dest_forward", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),)),
    T("func_key_dest_group", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"), _p("group_id", "groupfeatures"))),
    T("func_key_dest_group_member", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),
                                                           _p("group_id", "groupfeatures"))),
    T("func_key_dest_paging", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"), _p("paging_id", "paging"))),
    T("func_key_dest_park_position", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),
                                                            _p("parking_lot_id", "paging"))),
    T("func_key_dest_parking", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),
                                                      _p("parking_lot_id", "paging"))),
    T("func_key_dest_queue", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"), _p("queue_id", "queuefeatures"))),
    T("func_key_dest_service", pk="none", tenant=False, parents=(_p("func_key_id", "func_key"),)),
    T("iaxcallnumberlimits", pk="none", tenant=False),
    T("ingress_http", unique_name=True, pk="uuid"),
    T("ivr", unique_name=True),
    T("ivr_choice", pk="none", tenant=False, parents=(_p("ivr_id", "ivr"),)),
    T("meeting", pk="uuid", unique_name=True),
    T("meeting_authorization", pk="uuid", tenant=False, enum="meeting_authorization_status",
      parents=(_p("meeting_uuid", "meeting", "uuid"),)),
    T("paging", unique_name=True),
    T("paginguser", pk="none", tenant=False, enum="paginguser_caller", parents=(_p("pagingid", "paging"),
                                                                      _p("userfeaturesid", "userfeatures"))),
    T("pickup", unique_name=True),
    T("pickupmember", pk="none", tenant=False, parents=(_p("pickupid", "pickup"),)),
    T("queue", unique_name=True, tenant=False, enum="queue_autopause"),
    T("queueskill", unique_name=True, parents=(_p("catid", "queueskillcat", on_delete="SET NULL"),)),
    T("queueskillcat", unique_name=True),
    T("rightcall", unique_name=True),
    T("rightcallexten", pk="none", tenant=False, parents=(_p("rightcallid", "rightcall"),)),
    T("rightcallmember", pk="none", tenant=False, parents=(_p("rightcallid", "rightcall"),)),
    T("schedule_time", tenant=False, enum="schedule_time_mode", parents=(_p("schedule_id", "schedule"),)),
    T("schedulepath", pk="none", tenant=False, enum="schedule_path_type", parents=(_p("schedule_id", "schedule"),)),
    T("sccpdevice", pk="none", tenant=False),
    T("sccpline", unique_name=True, parents=(_p("endpoint_sip_uuid", "endpoint_sip", "uuid", "SET NULL"),)),
    T("switchboard", pk="uuid", unique_name=True),
    T("switchboard_member_user", tenant=False, pk="uuid", parents=(_p("switchboard_uuid", "switchboard", "uuid"),
                                                                   _p("user_uuid", "userfeatures", "uuid"))),
    T("user_external_app", pk="uuid", tenant=False, parents=(_p("user_uuid", "userfeatures", "uuid"),)),
    T("user_voicemail", pk="none", tenant=False, parents=(_p("user_id", "userfeatures"), _p("voicemail_id", "voicemail", "uniqueid"))),
    T("ldapfilter", tenant=False, enum="ldapserver_securitylayer"),
    T("ldapserver", unique_name=True, enum="ldapserver_protocolversion"),
    T("callerid", tenant=False, enum="callfilter_callfrom"),
    T("agentglobalparams", tenant=False),
    T("staticvoicemail", tenant=False),
    T("staticiax", tenant=False),
    T("staticqueue", tenant=False, enum="queue_monitor_type"),
    T("voicemail_zonemessages", tenant=False),
    T("provisioning", unique_name=True, tenant=False),
    T("general", unique_name=True, tenant=False, enum="dialaction_action"),
]


def _scaled(rows: int, users: int) -> int:
    """Tables that grow with the users (more than 1,000 rows at 5,000 users) scale with ``users``."""
    return max(1, rows * users // USERS) if rows > 1000 else rows


def _rows_of(name: str, users: int = USERS) -> int:
    for t in TABLES:
        if t.name == name:
            return _scaled(t.rows, users)
    if name in SMALL_PARENT_ROWS:
        return _scaled(SMALL_PARENT_ROWS[name], users) if SMALL_PARENT_ROWS[name] > 1 else 1
    return 1 if name in ("endpoint_sip", "context", "tenant") else 0


def _ref_type(table: str, column: str) -> str:
    if column == "uuid" and table in ("endpoint_sip",):
        return "uuid"
    if column == "uuid" and table == "userfeatures":
        return "varchar(38)"
    if column == "name":
        return "varchar(79)"
    for t in TABLES:
        if t.name == table:
            return "uuid" if column == "uuid" else "integer"
    return "integer"


def schema_sql() -> str:
    out = [f"CREATE TYPE {name} AS ENUM ({', '.join(repr(v) for v in values)});" for name, values in ENUMS.items()]
    fks = []
    for t in TABLES:
        cols = {"serial": ["id serial PRIMARY KEY"], "uuid": ["uuid uuid PRIMARY KEY DEFAULT uuid_generate_v4()"],
                "none": []}[t.pk]
        if t.tenant:
            cols.append("tenant_uuid varchar(36) NOT NULL")
            fks.append((t.name, "tenant_uuid", "tenant", "uuid", "CASCADE"))
        cols += ["name varchar(128) NOT NULL DEFAULT ''", "label text", "enabled boolean NOT NULL DEFAULT true",
                 "options varchar[][] NOT NULL DEFAULT '{}'", "created_at timestamptz NOT NULL DEFAULT now()"]
        if t.enum:
            cols.append(f"kind {t.enum}")
        for col, table, ref, on_delete in t.parents:
            cols.append(f"{col} {_ref_type(table, ref)}")
            fks.append((t.name, col, table, ref, on_delete))
        if t.pk == "none":
            key = [c for c, *_ in t.parents[:2]] or ["name"]
            cols.append(f"PRIMARY KEY ({', '.join(key)})")
        out.append(f"CREATE TABLE {t.name} ({', '.join(cols)});")
        if t.enum:  # looked up by kind, as Wazo's list views filter them
            out.append(f"CREATE INDEX {t.name}__idx__kind ON {t.name} (kind);")
        if t.unique_name:
            key = "tenant_uuid, name" if t.tenant else "name"
            out.append(f"ALTER TABLE {t.name} ADD CONSTRAINT {t.name}_name_key UNIQUE ({key});")
    for table, col, parent, ref, on_delete in fks:
        if (table, col) in PLAIN_KEYS or (table.startswith("func_key_dest_") and col != "func_key_id"):
            on_delete = "NO ACTION"  # the key protects the target; deleting it is refused, not cascaded
        action = "" if on_delete == "NO ACTION" else f" ON DELETE {on_delete}"
        out.append(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{col}_fkey FOREIGN KEY ({col}) "
                   f"REFERENCES {parent} ({ref}){action};")
        out.append(f"CREATE INDEX {table}__idx__{col} ON {table} ({col});")
    return "\n".join(out)


def data_sql(users: int = USERS) -> str:
    out = ["SET session_replication_role = replica;"]
    for t in TABLES:
        rows = _scaled(t.rows, users)
        if t.pk == "none" and t.parents:  # the parents' columns are the key: only as many distinct pairs
            rows = min(rows, math.lcm(*(max(1, _rows_of(p[1], users)) for p in t.parents[:2])))
        if not rows:
            continue
        cols, exprs = [], []
        if t.pk == "uuid":
            cols.append("uuid")
            exprs.append("md5(g::text || '" + t.name + "')::uuid")
        if t.tenant:
            cols.append("tenant_uuid")
            exprs.append(f"'{TENANT}'")
        cols += ["name", "label"]
        exprs += [f"'{t.name[:12]}' || g", f"repeat('x', {t.width})" if t.width else "NULL"]
        if t.enum:
            cols.append("kind")
            exprs.append(f"(enum_range(NULL::{t.enum}))[1 + g % array_length(enum_range(NULL::{t.enum}), 1)]")
        for col, table, ref, _on_delete in t.parents:
            n = _rows_of(table, users)
            if not n:
                continue
            cols.append(col)
            if ref == "uuid" and table in [x.name for x in TABLES]:
                exprs.append(f"md5((1 + g % {n})::text || '{table}')::uuid")
            elif ref == "uuid":
                exprs.append(f"(SELECT uuid FROM {table} ORDER BY uuid LIMIT 1 OFFSET (g % {n}))")
            elif ref == "name":
                exprs.append("'default'")
            else:
                exprs.append(f"1 + g % {n}")
        out.append(f"INSERT INTO {t.name} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
                   f"FROM generate_series(1, {rows}) g;")
    # endpoint_sip's sections point at the real endpoints (uuids of the small schema's rows)
    out.append("WITH e AS (SELECT uuid, row_number() OVER (ORDER BY name) AS n FROM endpoint_sip), "
               "s AS (SELECT uuid, row_number() OVER (ORDER BY uuid) AS n FROM endpoint_sip_section) "
               f"UPDATE endpoint_sip_section t SET endpoint_sip_uuid = e.uuid FROM s, e "
               f"WHERE t.uuid = s.uuid AND e.n = 1 + s.n % {users + 1};")
    out.append("SET session_replication_role = DEFAULT;")
    return "\n".join(out)


LOG_ROWS_SQL = """
INSERT INTO cel (eventtype, eventtime, uniqueid, linkedid, channame, cid_num, exten, context)
    SELECT 'CHAN_START', now() - g * interval '1 minute', 'u' || g, 'l' || (g / 3), 'PJSIP/line-' || (g % 5000),
           (1000 + g % 5000)::text, '1001', 'default' FROM generate_series(1, {cel}) g;
INSERT INTO queue_log (time, callid, queuename, agent, event, data1)
    SELECT now() - g * interval '1 minute', 'c' || g, 'q1', 'Agent/1', 'ENTERQUEUE', '1' FROM generate_series(1, {ql}) g;
INSERT INTO stat_agent_periodic (time, stat_agent_id, stat_queue_id)
    SELECT now() - g * interval '1 minute', 1, 1 FROM generate_series(1, {stat}) g;
INSERT INTO stat_call_on_queue (callid, time, status, stat_queue_id, stat_agent_id)
    SELECT 'c' || g, now() - g * interval '1 minute', 'answered', 1, 1 FROM generate_series(1, {stat}) g;
INSERT INTO stat_queue_periodic (time, answered, stat_queue_id)
    SELECT now() - g * interval '1 minute', g % 5, 1 FROM generate_series(1, {stat}) g;
"""


def _psql(dsn: str, sql: str) -> None:
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
                         input=sql, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()[-2000:]}")


def create_real_shape_database(dsn: str, *, users: int = USERS, log_rows: int = 600_000,
                               node_uuid: str | None = None, data: bool = True) -> None:
    """Wazo's small schema with real columns, then the rest of a real database's shape (module docstring)."""
    kwargs = {"node_uuid": node_uuid} if node_uuid else {}
    wazo_schema.create_schema(dsn)
    wazo_schema.create_wazo_indexes(dsn)
    _psql(dsn, schema_sql())
    wazo_schema.populate(dsn, users=users if data else 1, log_rows=2000 if data else 10, **kwargs)
    if data:
        _psql(dsn, data_sql(users))
        stat = log_rows // 12
        _psql(dsn, LOG_ROWS_SQL.format(cel=log_rows // 2, ql=log_rows // 4, stat=stat))
    _psql(dsn, "VACUUM ANALYZE")


SHAPE_SQL = """
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r') AS tables,
       (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public') AS indexes,
       (SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f') AS fkeys,
       (SELECT count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype = 'f'
          AND confdeltype IN ('c', 'n')) AS cascading,
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'S') AS sequences,
       (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype = 'e') AS enums
"""


def shape(dsn: str, excluded: list[str]) -> dict:
    """What the database holds: counts of objects, and the replicated tables by row count."""
    import asyncio

    return asyncio.run(ashape(dsn, excluded))


async def ashape(dsn: str, excluded: list[str]) -> dict:
    """``shape`` inside a running event loop."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        out = dict(await conn.fetchrow(SHAPE_SQL))
        names = [r[0] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")]
        counts = {n: await conn.fetchval(f'SELECT count(*) FROM public."{n}"') for n in names}
    finally:
        await conn.close()
    repl = {n: c for n, c in counts.items() if n not in excluded}
    out.update(replicated=len(repl), replicated_rows=sum(repl.values()),
               empty=sum(c == 0 for c in repl.values()), under_100=sum(0 < c < 100 for c in repl.values()),
               from_100_to_1000=sum(100 <= c <= 1000 for c in repl.values()),
               over_1000=sum(c > 1000 for c in repl.values()),
               excluded_rows=sum(c for n, c in counts.items() if n in excluded))
    return out
