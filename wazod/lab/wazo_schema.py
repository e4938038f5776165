"""A Wazo-like ``asterisk`` database for the demo, tests and benchmarks.

Built from shared/reference/wazo-database-and-config.md (xivo-dao, wazo-auth and
wazo-call-logd models): the configuration tables that replication copies, the
log tables that purge deletes from and replication excludes, the network tables
a restore keeps, the circular foreign keys (auth_tenant <-> auth_user,
tenant <-> endpoint_sip) that need ``session_replication_role = replica``, and
the sequences. Column lists are trimmed to what matters for wazod, with the
reference's types (timestamptz vs timestamp, enums, arrays).

Usage (sync, psycopg-free: it runs ``psql`` from the harness or any DSN):
    create_schema(dsn); populate(dsn, users=100, log_rows=1000)
or async with asyncpg: ``await acreate_schema(conn)``, ``await apopulate(conn, ...)``.
"""

from __future__ import annotations

import subprocess

WAZO_VERSION = "26.08"

SCHEMA_SQL = r"""
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE TYPE extenumbers_type AS ENUM ('extenfeatures','featuremap','generalfeatures','group','incall','outcall','queue','user','voicemenu','conference','parking');
CREATE TYPE voicemail_accesstype AS ENUM ('personal','global');
CREATE TYPE generic_bsfilter AS ENUM ('no','boss','secretary');
CREATE TYPE call_exit_type AS ENUM ('full','closed','joinempty','leaveempty','divert_ca_ratio','divert_waittime','answered','abandoned','timeout');
CREATE TYPE stat_switchboard_endtype AS ENUM ('abandoned','completed','forwarded','transferred');
CREATE TYPE netiface_networktype AS ENUM ('data','voip');
CREATE TYPE netiface_type AS ENUM ('iface');
CREATE TYPE netiface_family AS ENUM ('inet','inet6');
CREATE TYPE netiface_method AS ENUM ('static','dhcp','manual');
CREATE TYPE call_logd_call_log_participant_role AS ENUM ('source','destination');

CREATE TABLE infos (
    uuid varchar(38) PRIMARY KEY,
    wazo_version varchar(64) NOT NULL,
    live_reload_enabled boolean NOT NULL DEFAULT true,
    timezone varchar(128),
    configured boolean NOT NULL DEFAULT false
);

-- wazo-auth tables, with their circular foreign keys (added after both exist, pg_dump style)
CREATE TABLE auth_tenant (
    uuid varchar(38) PRIMARY KEY DEFAULT uuid_generate_v4(),
    name text, phone text, contact_uuid varchar(38),
    parent_uuid varchar(38) NOT NULL,
    slug varchar(10) NOT NULL UNIQUE,
    default_authentication_method text NOT NULL DEFAULT 'native'
);
CREATE TABLE auth_user (
    uuid varchar(38) PRIMARY KEY DEFAULT uuid_generate_v4(),
    username varchar(256), password_hash text, password_salt bytea,
    firstname text, lastname text, enabled boolean DEFAULT true,
    tenant_uuid varchar(38) NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('user','internal','external_api')),
    authentication_method text NOT NULL DEFAULT 'default'
);
CREATE UNIQUE INDEX auth_user_username_key ON auth_user (lower(username));
ALTER TABLE auth_tenant ADD CONSTRAINT auth_tenant_contact_uuid_fkey FOREIGN KEY (contact_uuid) REFERENCES auth_user(uuid) ON DELETE SET NULL;
ALTER TABLE auth_tenant ADD CONSTRAINT auth_tenant_parent_uuid_fkey FOREIGN KEY (parent_uuid) REFERENCES auth_tenant(uuid);
ALTER TABLE auth_user ADD CONSTRAINT auth_user_tenant_uuid_fkey FOREIGN KEY (tenant_uuid) REFERENCES auth_tenant(uuid) ON DELETE CASCADE;
CREATE TABLE auth_token (uuid varchar(38) PRIMARY KEY DEFAULT uuid_generate_v4(), auth_id text NOT NULL, issued_t integer, expire_t integer);
CREATE TABLE auth_acl (id serial PRIMARY KEY, value text NOT NULL, token_uuid varchar(38) REFERENCES auth_token(uuid) ON DELETE CASCADE);

-- asterisk schema proper (xivo-dao), with the tenant <-> endpoint_sip cycle
CREATE TABLE tenant (uuid varchar(36) PRIMARY KEY DEFAULT uuid_generate_v4(), global_sip_template_uuid uuid);
CREATE TABLE endpoint_sip (uuid uuid PRIMARY KEY DEFAULT uuid_generate_v4(), label text, name text NOT NULL,
    tenant_uuid varchar(36) NOT NULL REFERENCES tenant(uuid) ON DELETE CASCADE, template boolean DEFAULT false);
ALTER TABLE tenant ADD CONSTRAINT tenant_global_sip_template_uuid_fkey FOREIGN KEY (global_sip_template_uuid) REFERENCES endpoint_sip(uuid) ON DELETE SET NULL;
CREATE TABLE context (id serial PRIMARY KEY, name varchar(79) NOT NULL UNIQUE, displayname varchar(128),
    contexttype varchar(40) NOT NULL DEFAULT 'internal', tenant_uuid varchar(36) NOT NULL REFERENCES tenant(uuid) ON DELETE CASCADE,
    commented integer NOT NULL DEFAULT 0, description text NOT NULL DEFAULT '');
CREATE TABLE voicemail (
    uniqueid serial PRIMARY KEY,
    context varchar(79) NOT NULL REFERENCES context(name) ON DELETE CASCADE,
    mailbox varchar(40) NOT NULL, password varchar(80), fullname varchar(80) NOT NULL DEFAULT '',
    email varchar(80), pager varchar(80), language varchar(20), tz varchar(80), attach integer,
    deletevoicemail integer NOT NULL DEFAULT 0, maxmsg integer, skipcheckpass integer NOT NULL DEFAULT 0,
    options varchar[][] NOT NULL DEFAULT '{}', commented integer NOT NULL DEFAULT 0,
    accesstype voicemail_accesstype NOT NULL DEFAULT 'personal',
    UNIQUE (mailbox, context)
);
CREATE TABLE func_key_template (id serial PRIMARY KEY, tenant_uuid varchar(36) NOT NULL REFERENCES tenant(uuid) ON DELETE CASCADE,
    name varchar(128), private boolean NOT NULL DEFAULT false);
CREATE TABLE userfeatures (
    id serial PRIMARY KEY,
    uuid varchar(38) NOT NULL UNIQUE,
    firstname varchar(128) NOT NULL DEFAULT '', lastname varchar(128) NOT NULL DEFAULT '',
    email varchar(254) UNIQUE, voicemailid integer REFERENCES voicemail(uniqueid),
    agentid integer, pictureid integer,
    tenant_uuid varchar(36) NOT NULL REFERENCES tenant(uuid) ON DELETE CASCADE,
    callerid varchar(160), ringseconds integer NOT NULL DEFAULT 30, simultcalls integer NOT NULL DEFAULT 5,
    enablehint integer NOT NULL DEFAULT 1, enablevoicemail integer NOT NULL DEFAULT 0,
    enablexfer integer NOT NULL DEFAULT 0, incallfilter integer NOT NULL DEFAULT 0,
    enablednd integer NOT NULL DEFAULT 0,
    enableunc integer NOT NULL DEFAULT 0, destunc varchar(128) NOT NULL DEFAULT '',
    enablerna integer NOT NULL DEFAULT 0, destrna varchar(128) NOT NULL DEFAULT '',
    enablebusy integer NOT NULL DEFAULT 0, destbusy varchar(128) NOT NULL DEFAULT '',
    musiconhold varchar(128) NOT NULL DEFAULT '', outcallerid varchar(80) NOT NULL DEFAULT '',
    mobilephonenumber varchar(128) NOT NULL DEFAULT '', bsfilter generic_bsfilter NOT NULL DEFAULT 'no',
    language varchar(20), timezone varchar(128),
    commented integer NOT NULL DEFAULT 0,
    func_key_template_id integer REFERENCES func_key_template(id) ON DELETE SET NULL,
    func_key_private_template_id integer NOT NULL UNIQUE REFERENCES func_key_template(id),
    subscription_type integer NOT NULL DEFAULT 0,
    created_at timestamp DEFAULT (now() at time zone 'utc'),
    userfield varchar(128) NOT NULL DEFAULT '', description text NOT NULL DEFAULT ''
);
CREATE TABLE linefeatures (
    id serial PRIMARY KEY, device varchar(32), configregistrar varchar(128), name varchar(128) UNIQUE,
    number varchar(40), context varchar(79) NOT NULL REFERENCES context(name) ON DELETE CASCADE,
    provisioningid integer NOT NULL, num integer DEFAULT 1, ipfrom varchar(15),
    commented integer NOT NULL DEFAULT 0, description text,
    endpoint_sip_uuid uuid REFERENCES endpoint_sip(uuid) ON DELETE SET NULL
);
CREATE TABLE user_line (user_id integer REFERENCES userfeatures(id) ON DELETE CASCADE,
    line_id integer REFERENCES linefeatures(id) ON DELETE CASCADE, main_user boolean NOT NULL DEFAULT true,
    main_line boolean NOT NULL DEFAULT true, PRIMARY KEY (user_id, line_id));
CREATE TABLE extensions (
    id serial PRIMARY KEY, commented integer NOT NULL DEFAULT 0,
    context varchar(79) NOT NULL DEFAULT '' REFERENCES context(name) ON DELETE CASCADE,
    exten varchar(40) NOT NULL DEFAULT '', type extenumbers_type NOT NULL, typeval varchar(255) NOT NULL DEFAULT '',
    UNIQUE (exten, context)
);
CREATE TABLE queuefeatures (id serial PRIMARY KEY, name varchar(128) NOT NULL UNIQUE, displayname varchar(128) NOT NULL,
    tenant_uuid varchar(36) NOT NULL REFERENCES tenant(uuid) ON DELETE CASCADE);

-- log tables: purged, never replicated
CREATE TABLE cel (
    id serial PRIMARY KEY, eventtype text NOT NULL, eventtime timestamptz NOT NULL, userdeftype text NOT NULL DEFAULT '',
    cid_name text NOT NULL DEFAULT '', cid_num text NOT NULL DEFAULT '', cid_ani text NOT NULL DEFAULT '',
    cid_rdnis text NOT NULL DEFAULT '', cid_dnid text NOT NULL DEFAULT '', exten text NOT NULL DEFAULT '',
    context text NOT NULL DEFAULT '', channame text NOT NULL DEFAULT '', appname text NOT NULL DEFAULT '',
    appdata text NOT NULL DEFAULT '', amaflags integer NOT NULL DEFAULT 0, accountcode text NOT NULL DEFAULT '',
    peeraccount text NOT NULL DEFAULT '', uniqueid text NOT NULL DEFAULT '', linkedid text NOT NULL DEFAULT '',
    userfield text NOT NULL DEFAULT '', peer text NOT NULL DEFAULT '', extra text, call_log_id integer
);
CREATE INDEX cel__idx__eventtime ON cel (eventtime);
CREATE INDEX cel__idx__linkedid ON cel (linkedid);
CREATE INDEX cel__idx__uniqueid ON cel (uniqueid);
CREATE INDEX cel__idx__call_log_id ON cel (call_log_id);
CREATE TABLE queue_log (
    time timestamptz, callid varchar(80), queuename varchar(256), agent text, event varchar(20),
    data1 text, data2 text, data3 text, data4 text, data5 text, id serial PRIMARY KEY
);
CREATE INDEX queue_log__idx_time ON queue_log (time);
CREATE INDEX queue_log__idx_callid ON queue_log (callid);
CREATE TABLE stat_agent (id serial PRIMARY KEY, name varchar(128) NOT NULL, tenant_uuid varchar(36) NOT NULL,
    agent_id integer, deleted boolean NOT NULL DEFAULT false);
CREATE TABLE stat_queue (id serial PRIMARY KEY, name varchar(128) NOT NULL, tenant_uuid varchar(36) NOT NULL,
    queue_id integer, deleted boolean NOT NULL DEFAULT false);
CREATE TABLE stat_agent_periodic (
    id serial PRIMARY KEY, time timestamptz NOT NULL,
    login_time interval NOT NULL DEFAULT '0', pause_time interval NOT NULL DEFAULT '0', wrapup_time interval NOT NULL DEFAULT '0',
    stat_agent_id integer REFERENCES stat_agent(id), stat_queue_id integer REFERENCES stat_queue(id)
);
CREATE INDEX stat_agent_periodic__idx__time ON stat_agent_periodic (time);
CREATE TABLE stat_call_on_queue (
    id serial PRIMARY KEY, callid varchar(32) NOT NULL, time timestamptz NOT NULL,
    ringtime integer NOT NULL DEFAULT 0, talktime integer NOT NULL DEFAULT 0, waittime integer NOT NULL DEFAULT 0,
    status call_exit_type NOT NULL, stat_queue_id integer REFERENCES stat_queue(id), stat_agent_id integer REFERENCES stat_agent(id)
);
CREATE INDEX stat_call_on_queue__idx_callid ON stat_call_on_queue (callid);
CREATE TABLE stat_queue_periodic (
    id serial PRIMARY KEY, time timestamptz NOT NULL,
    answered integer NOT NULL DEFAULT 0, abandoned integer NOT NULL DEFAULT 0, total integer NOT NULL DEFAULT 0,
    "full" integer NOT NULL DEFAULT 0, closed integer NOT NULL DEFAULT 0, joinempty integer NOT NULL DEFAULT 0,
    leaveempty integer NOT NULL DEFAULT 0, divert_ca_ratio integer NOT NULL DEFAULT 0,
    divert_waittime integer NOT NULL DEFAULT 0, timeout integer NOT NULL DEFAULT 0,
    stat_queue_id integer REFERENCES stat_queue(id)
);
CREATE TABLE stat_switchboard_queue (
    id serial PRIMARY KEY, time timestamp NOT NULL, end_type stat_switchboard_endtype NOT NULL,
    wait_time double precision NOT NULL, queue_id integer NOT NULL REFERENCES queuefeatures(id) ON DELETE CASCADE
);
CREATE INDEX stat_switchboard_queue__idx__time ON stat_switchboard_queue (time);
CREATE TABLE call_logd_tenant (uuid uuid PRIMARY KEY);
CREATE TABLE call_logd_call_log (
    id serial PRIMARY KEY, date timestamptz NOT NULL, date_answer timestamptz, date_end timestamptz,
    tenant_uuid uuid NOT NULL REFERENCES call_logd_tenant(uuid) ON DELETE CASCADE,
    source_name varchar(255), source_exten varchar(255), destination_name varchar(255), destination_exten varchar(255),
    direction varchar(255) CHECK (direction IN ('inbound','internal','outbound')), user_field varchar(255),
    conversation_id varchar(255)
);
CREATE TABLE call_logd_call_log_participant (
    uuid uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    call_log_id integer REFERENCES call_logd_call_log(id) ON DELETE CASCADE,
    user_uuid uuid NOT NULL, line_id integer, role call_logd_call_log_participant_role NOT NULL,
    tags varchar(128)[] NOT NULL DEFAULT '{}', answered boolean NOT NULL DEFAULT false
);
CREATE INDEX call_logd_call_log_participant__idx__call_log_id ON call_logd_call_log_participant (call_log_id);

-- node-local configuration: never replicated, kept by restore
CREATE TABLE dhcp (id serial PRIMARY KEY, active integer NOT NULL DEFAULT 0, pool_start varchar(64) NOT NULL DEFAULT '',
    pool_end varchar(64) NOT NULL DEFAULT '', network_interfaces varchar(255) NOT NULL DEFAULT '');
CREATE TABLE netiface (
    id serial PRIMARY KEY, ifname varchar(64) NOT NULL DEFAULT '' UNIQUE, hwtypeid integer NOT NULL DEFAULT 65534,
    networktype netiface_networktype NOT NULL, type netiface_type NOT NULL, family netiface_family NOT NULL,
    method netiface_method, address varchar(39), netmask varchar(39), broadcast varchar(15), gateway varchar(39),
    mtu integer, vlanrawdevice varchar(64), vlanid integer, options text NOT NULL DEFAULT '',
    disable integer NOT NULL DEFAULT 0, dcreate integer NOT NULL DEFAULT 0, description text
);
CREATE TABLE resolvconf (id serial PRIMARY KEY, hostname varchar(63) NOT NULL DEFAULT 'xivo',
    domain varchar(255) NOT NULL DEFAULT '' UNIQUE, nameserver1 varchar(255), nameserver2 varchar(255),
    nameserver3 varchar(255), search varchar(255), description text);
CREATE TABLE mail (id serial PRIMARY KEY, mydomain varchar(255) NOT NULL DEFAULT '0',
    origin varchar(255) NOT NULL DEFAULT 'xivo-clients.proformatique.com' UNIQUE, relayhost varchar(255),
    fallback_relayhost varchar(255), canonical text NOT NULL DEFAULT '');
CREATE TABLE session (sessid varchar(32) PRIMARY KEY, start integer NOT NULL, expire integer NOT NULL,
    identifier varchar(255) NOT NULL, data text NOT NULL);
"""


def populate_sql(users: int = 20, log_rows: int = 200, node_uuid: str | None = None,
                 wazo_version: str = WAZO_VERSION, days_span: int = 800) -> str:
    """Data for the schema: ``users`` users with line, extension and voicemail; ``log_rows`` rows per log table
    spread over ``days_span`` days back from now (so purges have rows of many ages)."""
    node_uuid = node_uuid or "00000000-0000-4000-8000-000000000001"
    return f"""
SET session_replication_role = replica;
INSERT INTO infos VALUES ('{node_uuid}', '{wazo_version}', true, 'Europe/Paris', true);
INSERT INTO auth_tenant (uuid, name, contact_uuid, parent_uuid, slug)
    VALUES ('11111111-1111-4111-8111-111111111111', 'master', '22222222-2222-4222-8222-222222222222',
            '11111111-1111-4111-8111-111111111111', 'master');
INSERT INTO auth_user (uuid, username, firstname, tenant_uuid, purpose)
    VALUES ('22222222-2222-4222-8222-222222222222', 'root', 'Root', '11111111-1111-4111-8111-111111111111', 'internal');
INSERT INTO auth_user (uuid, username, firstname, tenant_uuid, purpose)
    SELECT uuid_generate_v4(), 'user' || g, 'User' || g, '11111111-1111-4111-8111-111111111111', 'user'
    FROM generate_series(1, {users}) g;
INSERT INTO auth_token (auth_id, issued_t, expire_t) SELECT 'tok' || g, g, g + 3600 FROM generate_series(1, 5) g;
INSERT INTO auth_acl (value, token_uuid) SELECT 'confd.#', uuid FROM auth_token;
INSERT INTO tenant (uuid) VALUES ('11111111-1111-4111-8111-111111111111');
INSERT INTO endpoint_sip (uuid, label, name, tenant_uuid, template)
    VALUES ('33333333-3333-4333-8333-333333333333', 'global', 'global', '11111111-1111-4111-8111-111111111111', true);
UPDATE tenant SET global_sip_template_uuid = '33333333-3333-4333-8333-333333333333';
INSERT INTO context (name, displayname, tenant_uuid) VALUES ('default', 'Default', '11111111-1111-4111-8111-111111111111');
INSERT INTO func_key_template (tenant_uuid, name, private) SELECT '11111111-1111-4111-8111-111111111111', 'fk' || g, true
    FROM generate_series(1, {users}) g;
INSERT INTO voicemail (context, mailbox, password, fullname, email)
    SELECT 'default', (1000 + g)::text, '1234', 'User ' || g, 'user' || g || '@example.com' FROM generate_series(1, {users}) g;
INSERT INTO userfeatures (uuid, firstname, lastname, email, voicemailid, tenant_uuid, callerid, func_key_private_template_id,
                          enablednd, enableunc, destunc, description)
    SELECT uuid_generate_v4(), 'User', 'N' || g, 'user' || g || '@example.com', g, '11111111-1111-4111-8111-111111111111',
           '"User ' || g || '" <' || (1000 + g) || '>', g, (g % 7 = 0)::int, (g % 11 = 0)::int,
           CASE WHEN g % 11 = 0 THEN '0600000' || g ELSE '' END, repeat('d', 40)
    FROM generate_series(1, {users}) g;
INSERT INTO endpoint_sip (label, name, tenant_uuid) SELECT 'line' || g, 'sip' || g, '11111111-1111-4111-8111-111111111111'
    FROM generate_series(1, {users}) g;
INSERT INTO linefeatures (name, number, context, provisioningid, endpoint_sip_uuid)
    SELECT e.name, (1000 + row_number() OVER (ORDER BY e.name))::text, 'default', 100000 + (row_number() OVER ()), e.uuid
    FROM endpoint_sip e WHERE NOT e.template;
INSERT INTO user_line (user_id, line_id) SELECT g, g FROM generate_series(1, {users}) g;
INSERT INTO extensions (context, exten, type, typeval)
    SELECT 'default', (1000 + g)::text, 'user', g::text FROM generate_series(1, {users}) g;
INSERT INTO queuefeatures (name, displayname, tenant_uuid) VALUES ('q1', 'Queue 1', '11111111-1111-4111-8111-111111111111');
INSERT INTO stat_agent (name, tenant_uuid, agent_id) VALUES ('Agent/1', '11111111-1111-4111-8111-111111111111', 1);
INSERT INTO stat_queue (name, tenant_uuid, queue_id) VALUES ('q1', '11111111-1111-4111-8111-111111111111', 1);
INSERT INTO cel (eventtype, eventtime, uniqueid, linkedid, channame)
    SELECT 'CHAN_START', now() - (g * interval '{days_span} days' / {max(log_rows, 1)}), 'u' || g, 'l' || (g / 3), 'PJSIP/x-' || g
    FROM generate_series(1, {log_rows}) g;
INSERT INTO queue_log (time, callid, queuename, agent, event)
    SELECT now() - (g * interval '{days_span} days' / {max(log_rows, 1)}), 'c' || g, 'q1', 'Agent/1', 'ENTERQUEUE'
    FROM generate_series(1, {log_rows}) g;
INSERT INTO stat_agent_periodic (time, stat_agent_id, stat_queue_id)
    SELECT now() - (g * interval '{days_span} days' / {max(log_rows, 1)}), 1, 1 FROM generate_series(1, {log_rows}) g;
INSERT INTO stat_call_on_queue (callid, time, status, stat_queue_id, stat_agent_id)
    SELECT 'c' || g, now() - (g * interval '{days_span} days' / {max(log_rows, 1)}), 'answered', 1, 1
    FROM generate_series(1, {log_rows}) g;
INSERT INTO stat_queue_periodic (time, answered, stat_queue_id)
    SELECT now() - (g * interval '{days_span} days' / {max(log_rows, 1)}), g % 5, 1 FROM generate_series(1, {log_rows}) g;
INSERT INTO stat_switchboard_queue (time, end_type, wait_time, queue_id)
    SELECT localtimestamp - (g * interval '{days_span} days' / {max(log_rows, 1)}), 'completed', 1.5, 1
    FROM generate_series(1, {log_rows}) g;
INSERT INTO call_logd_tenant VALUES ('11111111-1111-4111-8111-111111111111');
INSERT INTO call_logd_call_log (date, tenant_uuid, source_name, direction)
    SELECT now() - (g * interval '{days_span} days' / {max(log_rows, 1)}), '11111111-1111-4111-8111-111111111111', 'src' || g, 'internal'
    FROM generate_series(1, {log_rows}) g;
INSERT INTO call_logd_call_log_participant (call_log_id, user_uuid, role)
    SELECT id, '22222222-2222-4222-8222-222222222222', 'source' FROM call_logd_call_log;
INSERT INTO dhcp (active, pool_start, pool_end) VALUES (1, '10.0.0.100', '10.0.0.200');
INSERT INTO netiface (ifname, networktype, type, family, method, address, netmask, gateway)
    VALUES ('eth0', 'voip', 'iface', 'inet', 'static', '192.0.2.10', '255.255.255.0', '192.0.2.1');
INSERT INTO resolvconf (hostname, domain, nameserver1) VALUES ('wazo', 'example.com', '192.0.2.53');
INSERT INTO mail (mydomain, origin) VALUES ('example.com', 'wazo.example.com');
INSERT INTO session VALUES ('s1', 1, 2, 'root', '{{}}');
SET session_replication_role = DEFAULT;
"""


def _psql(dsn: str, sql: str) -> str:
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
                         input=sql, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout


def create_schema(dsn: str) -> None:
    _psql(dsn, SCHEMA_SQL)


def populate(dsn: str, **kwargs) -> None:
    _psql(dsn, populate_sql(**kwargs))


def create_wazo_database(dsn: str, **kwargs) -> None:
    """Schema plus data in one call (``dsn`` names an existing, empty database)."""
    create_schema(dsn)
    populate(dsn, **kwargs)


async def acreate_schema(conn) -> None:
    await conn.execute(SCHEMA_SQL)


async def apopulate(conn, **kwargs) -> None:
    await conn.execute(populate_sql(**kwargs))
