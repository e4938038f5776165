"""What the two databases hold: tables, columns, sequences, foreign keys, Wazo version.

Replication copies "every table of schema public except the excluded ones"
(Wazo's rule). Before anything is written, both catalogs are read and
compared: a difference in tables, columns or column types, in the replicated
sequences, or in ``infos.wazo_version`` stops the run with a message that
names each difference, so an administrator who upgraded only one node knows
exactly what to do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# Types whose binary COPY representation embeds type OIDs that differ between
# clusters (arrays of user types, composites, domains): copied as text.
_TABLES_SQL = """
SELECT c.relname AS table_name, a.attnum AS position, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS column_type,
       a.attgenerated <> '' AS generated,
       (t.typtype IN ('c', 'd') OR (t.typcategory = 'A' AND t.typelem >= 16384)) AS needs_text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = 'public' AND c.relkind = 'r'
ORDER BY c.relname, a.attnum
"""

_SEQUENCES_SQL = """
SELECT s.relname AS sequence_name, min(tc.relname) AS owner_table
FROM pg_class s
JOIN pg_namespace n ON n.oid = s.relnamespace
LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class tc ON tc.oid = d.refobjid
WHERE n.nspname = 'public' AND s.relkind = 'S'
GROUP BY s.relname
ORDER BY s.relname
"""

# Every foreign key pointing at a table of schema public, from any schema.
_FKEYS_SQL = """
SELECT rn.nspname || '.' || r.relname AS referencing, t.relname AS referenced
FROM pg_constraint co
JOIN pg_class r ON r.oid = co.conrelid
JOIN pg_namespace rn ON rn.oid = r.relnamespace
JOIN pg_class t ON t.oid = co.confrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE co.contype = 'f' AND tn.nspname = 'public'
"""

# pg_attribute rather than information_schema.columns: planning that view costs a fresh session
# (each run opens new ones) about 4 ms more, on both sides
_VERSION_SQL = """
SELECT EXISTS (
    SELECT 1 FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname = 'infos' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND a.attname = 'wazo_version' AND a.attnum > 0 AND NOT a.attisdropped)
"""


@dataclass
class Column:
    name: str
    type: str
    generated: bool = False
    needs_text: bool = False


@dataclass
class Table:
    name: str
    columns: list[Column] = field(default_factory=list)

    @property
    def copy_columns(self) -> list[str]:
        """Columns COPY can write (generated columns are computed by the slave)."""
        return [c.name for c in self.columns if not c.generated]

    @property
    def copy_format(self) -> str:
        return "text" if any(c.needs_text for c in self.columns if not c.generated) else "binary"


@dataclass
class Catalog:
    tables: dict[str, Table]
    sequences: dict[str, str | None]  # sequence -> owning table (None: standalone)
    referenced_by: dict[str, set[str]]  # public table -> {"schema.table" referencing it}
    wazo_version: str | None


_CATALOG_SQL = f"""
SELECT (SELECT coalesce(json_agg(t ORDER BY t.table_name, t.position), '[]') FROM ({_TABLES_SQL}) t) AS tables,
       (SELECT coalesce(json_agg(s ORDER BY s.sequence_name), '[]') FROM ({_SEQUENCES_SQL}) s) AS sequences,
       (SELECT coalesce(json_agg(f), '[]') FROM ({_FKEYS_SQL}) f) AS fkeys,
       ({_VERSION_SQL}) AS has_version
"""


async def read_catalog(conn) -> Catalog:
    """The catalog in one round trip (the slave is across the network)."""
    row = await conn.fetchrow(_CATALOG_SQL)
    tables: dict[str, Table] = {}
    for r in json.loads(row["tables"]):
        table = tables.setdefault(r["table_name"], Table(r["table_name"]))
        table.columns.append(Column(r["column_name"], r["column_type"], r["generated"], r["needs_text"]))
    sequences = {r["sequence_name"]: r["owner_table"] for r in json.loads(row["sequences"])}
    referenced_by: dict[str, set[str]] = {}
    for r in json.loads(row["fkeys"]):
        referenced_by.setdefault(r["referenced"], set()).add(r["referencing"])
    version = None
    if row["has_version"]:
        version = await conn.fetchval("SELECT wazo_version FROM public.infos LIMIT 1")
    return Catalog(tables, sequences, referenced_by, version)


def replicated_tables(catalog: Catalog, exclude: list[str]) -> list[str]:
    excluded = set(exclude)
    return sorted(t for t in catalog.tables if t not in excluded)


def replicated_sequences(catalog: Catalog, exclude: list[str]) -> list[str]:
    """Sequences of schema public minus those of excluded tables.

    A sequence belongs to an excluded table when the table owns it (serial or
    identity column) or, as in Wazo's script, when it is named
    ``<table>_id_seq``.
    """
    excluded = set(exclude)
    named = {f"{t}_id_seq" for t in excluded}
    return sorted(s for s, owner in catalog.sequences.items() if owner not in excluded and s not in named)


def schema_differences(master: Catalog, slave: Catalog, exclude: list[str]) -> list[str]:
    """Human-readable differences that make a replication unsafe (empty: compatible)."""
    diffs: list[str] = []
    if master.wazo_version != slave.wazo_version:
        diffs.append(f"infos.wazo_version is {master.wazo_version!r} on the master and "
                     f"{slave.wazo_version!r} on the slave")
    m_tables, s_tables = set(replicated_tables(master, exclude)), set(replicated_tables(slave, exclude))
    for name in sorted(m_tables - s_tables):
        diffs.append(f"table {name} exists only on the master")
    for name in sorted(s_tables - m_tables):
        diffs.append(f"table {name} exists only on the slave")
    for name in sorted(m_tables & s_tables):
        m_cols = {c.name: c for c in master.tables[name].columns}
        s_cols = {c.name: c for c in slave.tables[name].columns}
        for col in [c for c in m_cols if c not in s_cols]:
            diffs.append(f"table {name}: column {col} ({m_cols[col].type}) exists only on the master")
        for col in [c for c in s_cols if c not in m_cols]:
            diffs.append(f"table {name}: column {col} ({s_cols[col].type}) exists only on the slave")
        for col in [c for c in m_cols if c in s_cols]:
            m, s = m_cols[col], s_cols[col]
            if (m.type, m.generated) != (s.type, s.generated):
                m_t = m.type + (" generated" if m.generated else "")
                s_t = s.type + (" generated" if s.generated else "")
                diffs.append(f"table {name}: column {col} is {m_t} on the master and {s_t} on the slave")
    m_seqs, s_seqs = set(replicated_sequences(master, exclude)), set(replicated_sequences(slave, exclude))
    for name in sorted(m_seqs - s_seqs):
        diffs.append(f"sequence {name} exists only on the master")
    for name in sorted(s_seqs - m_seqs):
        diffs.append(f"sequence {name} exists only on the slave")
    return diffs


def fingerprint(catalog: Catalog, exclude: list[str]) -> str:
    """A digest of what is replicated (tables, columns, types, sequences, exclusions)."""
    doc = {
        "tables": {t: [[c.name, c.type, c.generated] for c in catalog.tables[t].columns]
                   for t in replicated_tables(catalog, exclude)},
        "sequences": replicated_sequences(catalog, exclude),
        "exclude": sorted(set(exclude)),
        "wazo_version": catalog.wazo_version,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def truncatable(tables: set[str], catalog: Catalog) -> set[str]:
    """The largest subset of ``tables`` that one TRUNCATE may empty.

    TRUNCATE refuses a table referenced by a foreign key from a table outside
    the statement, and CASCADE would empty that other table (an excluded one,
    e.g. stat_switchboard_queue -> queuefeatures): such tables are emptied
    with DELETE instead, which under ``session_replication_role = replica``
    touches no other table.
    """
    keep = set(tables)
    while True:
        drop = {t for t in keep
                if any(ref.split(".", 1)[0] != "public" or ref.split(".", 1)[1] not in keep
                       for ref in catalog.referenced_by.get(t, ()))}
        if not drop:
            return keep
        keep -= drop


def with_referencing(tables: set[str], catalog: Catalog, replicated: set[str]) -> set[str]:
    """``tables`` plus every replicated table referencing one of them, transitively.

    Copying a referencing table too (user_line when userfeatures changed) is
    cheaper than the alternative: a table still referenced from outside the
    TRUNCATE must be emptied row by row and reloaded with its indexes live.
    """
    out = set(tables)
    while True:
        more = {ref.split(".", 1)[1] for t in out for ref in catalog.referenced_by.get(t, ())
                if ref.startswith("public.") and ref.split(".", 1)[1] in replicated} - out
        if not more:
            return out
        out |= more


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
