"""Indexes and keys of the emptied tables: dropped before the load, built once after it.

Inserting 20,000 rows into a table maintains every index row by row (random
keys such as UUIDs make that the most expensive part of a load); building
the index afterwards sorts once. Everything happens in the slave's
replication transaction: a rollback brings the original indexes and keys
back untouched, and other sessions wait on the table lock TRUNCATE already
holds.

What is deferred, on tables emptied by TRUNCATE only:

* foreign keys between two such tables (user_line -> userfeatures,
  auth_user -> auth_tenant): dropped, and added back with their own
  ``pg_get_constraintdef`` after the indexes, which validates them in one
  join per key instead of keeping the referenced indexes live during the
  load. Keys with a comment, a parent (partitions, inheritance) or anything
  depending on them stay in place;
* plain indexes: valid, nothing depending on them, nothing a rebuild would
  lose (tablespace, comment, clustering, replica identity);
* PRIMARY KEY and UNIQUE constraints whose index carries the constraint's
  name, when every foreign key relying on them is deferred too: dropped with
  ``ALTER TABLE ... DROP CONSTRAINT`` and added back with their own
  ``pg_get_constraintdef``.

After the rebuild each index definition, and each foreign key's definition
and referenced index, is compared with the original; any difference fails
the run (rolled back) and names the object, and
``replication.rebuild_indexes: false`` turns the whole optimisation off.

A foreign key the master's rows do not satisfy (possible only when the
master itself holds rows its keys would refuse, e.g. a key created NOT VALID
there) cannot be added back: ``rebuild_indexes`` raises
:class:`ForeignKeyNotSatisfied`, and the caller loads again with the keys in
place, as Wazo's replica-role load would have accepted those rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from wazod.replication.catalog import quote_ident

_PLAIN_SQL = """
SELECT t.relname AS table_name, ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = 'public' AND t.relname = ANY($1::text[]) AND NOT t.relispartition
  AND i.indisvalid AND i.indisready AND NOT i.indisreplident AND NOT i.indisclustered
  AND ic.reltablespace = 0
  AND obj_description(i.indexrelid, 'pg_class') IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
ORDER BY ic.relname
"""

# Foreign keys whose two tables are both emptied by the TRUNCATE (the RI triggers depend on the key
# internally: they go and come back with it).
_FOREIGN_KEYS_SQL = """
SELECT co.oid, r.relname AS table_name, co.conname AS name, pg_get_constraintdef(co.oid) AS definition,
       ic.relname AS index_name
FROM pg_constraint co
JOIN pg_class r ON r.oid = co.conrelid
JOIN pg_namespace rn ON rn.oid = r.relnamespace
JOIN pg_class t ON t.oid = co.confrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_class ic ON ic.oid = co.conindid
WHERE co.contype = 'f' AND co.conparentid = 0 AND rn.nspname = 'public' AND tn.nspname = 'public'
  AND r.relname = ANY($1::text[]) AND t.relname = ANY($1::text[]) AND r.relkind = 'r' AND t.relkind = 'r'
  AND NOT r.relispartition AND NOT t.relispartition AND co.conislocal AND co.coninhcount = 0
  AND obj_description(co.oid, 'pg_constraint') IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = co.oid
                    AND d.classid <> 'pg_trigger'::regclass)
ORDER BY r.relname, co.conname
"""

# $2: the foreign keys deferred with them (a constraint still relied on by another key stays). Its own
# index depends on the constraint (internally): that dependency is the one allowed.
_CONSTRAINTS_SQL = """
SELECT t.relname AS table_name, co.conname AS name, pg_get_constraintdef(co.oid) AS definition,
       pg_get_indexdef(co.conindid) AS index_definition
FROM pg_constraint co
JOIN pg_class t ON t.oid = co.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class ic ON ic.oid = co.conindid
JOIN pg_index i ON i.indexrelid = co.conindid
WHERE n.nspname = 'public' AND t.relname = ANY($1::text[]) AND co.contype IN ('p', 'u')
  AND NOT t.relispartition AND co.conparentid = 0 AND co.conislocal AND co.coninhcount = 0
  AND ic.relname = co.conname AND ic.reltablespace = 0
  AND i.indisvalid AND NOT i.indisreplident AND NOT i.indisclustered
  AND obj_description(co.oid, 'pg_constraint') IS NULL
  AND obj_description(co.conindid, 'pg_class') IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f
                  WHERE f.contype = 'f' AND f.conindid = co.conindid AND f.oid <> ALL($2::oid[]))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = co.oid
                    AND NOT (d.classid = 'pg_class'::regclass AND d.objid = co.conindid))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = co.conindid
                    AND NOT (d.classid = 'pg_constraint'::regclass AND d.objid = ANY($2::oid[])))
ORDER BY t.relname, co.conname
"""

_FOREIGN_KEYS_CHECK_SQL = """
SELECT r.relname AS table_name, co.conname AS name, pg_get_constraintdef(co.oid) AS definition,
       ic.relname AS index_name
FROM pg_constraint co
JOIN pg_class r ON r.oid = co.conrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
JOIN pg_class ic ON ic.oid = co.conindid
WHERE co.contype = 'f' AND n.nspname = 'public' AND co.conname = ANY($1::text[])
"""


class IndexRebuildMismatch(Exception):
    """A rebuilt index or key differs from the original (the run fails and rolls back)."""


class ForeignKeyNotSatisfied(Exception):
    """The loaded rows break a deferred foreign key: load again with the keys in place."""


@dataclass
class ForeignKey:
    table: str
    name: str
    definition: str
    index: str  # the referenced PRIMARY KEY / UNIQUE index the key relies on


@dataclass
class Deferred:
    plain: list[tuple[str, str, str]] = field(default_factory=list)  # (table, index, CREATE INDEX ...)
    constraints: list[tuple[str, str, str, str]] = field(default_factory=list)  # (table, name, def, indexdef)
    foreign_keys: list[ForeignKey] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.plain) + len(self.constraints) + len(self.foreign_keys)


def _by_table(items) -> list[str]:
    """One ``ALTER TABLE`` per table, its sub-commands joined (``items``: (table, sub-command))."""
    tables: dict[str, list[str]] = {}
    for table, command in items:
        tables.setdefault(table, []).append(command)
    return [f"ALTER TABLE public.{quote_ident(t)} " + ", ".join(cmds) for t, cmds in tables.items()]


async def defer_indexes(slave, emptied: set[str], *, foreign_keys: bool = True) -> Deferred:
    """Drop what can be rebuilt identically after the load; returns what to rebuild."""
    deferred = Deferred()
    if not emptied:
        return deferred
    tables = sorted(emptied)
    fk_oids: list[int] = []
    if foreign_keys:
        rows = await slave.fetch(_FOREIGN_KEYS_SQL, tables)
        fk_oids = [r["oid"] for r in rows]
        deferred.foreign_keys = [ForeignKey(r["table_name"], r["name"], r["definition"], r["index_name"])
                                 for r in rows]
    deferred.plain = [(r["table_name"], r["name"], r["definition"]) for r in await slave.fetch(_PLAIN_SQL, tables)]
    deferred.constraints = [(r["table_name"], r["name"], r["definition"], r["index_definition"])
                            for r in await slave.fetch(_CONSTRAINTS_SQL, tables, fk_oids)]
    statements = _by_table([(fk.table, f"DROP CONSTRAINT {quote_ident(fk.name)}")
                            for fk in deferred.foreign_keys])
    statements += _by_table([(c[0], f"DROP CONSTRAINT {quote_ident(c[1])}") for c in deferred.constraints])
    if deferred.plain:
        statements.append("DROP INDEX " + ", ".join(f"public.{quote_ident(n)}" for _t, n, _d in deferred.plain))
    if statements:
        await slave.execute(";\n".join(statements))  # one round trip
    return deferred


async def build_table_indexes(slave, deferred: Deferred, table: str) -> None:
    """Build the deferred indexes and PRIMARY KEY / UNIQUE constraints of one loaded table.

    Called as soon as the table is loaded, while the master's next tables
    are still being read: the slave's work goes on without a pause.
    """
    statements = [definition for t, _name, definition in deferred.plain if t == table]
    statements += _by_table([(t, f"ADD CONSTRAINT {quote_ident(name)} {definition}")
                             for t, name, definition, _ in deferred.constraints if t == table])
    if statements:
        # the definitions come from pg_get_indexdef / pg_get_constraintdef on this very server
        await slave.execute("SET LOCAL maintenance_work_mem = '256MB';\n" + ";\n".join(statements))


async def finish_rebuild(slave, deferred: Deferred) -> None:
    """Once every table is loaded and indexed: check the rebuilt constraints, add the foreign keys back."""
    if deferred.constraints:
        names = [name for _t, name, _d, _i in deferred.constraints]
        rows = await slave.fetch(
            "SELECT ic.relname AS name, pg_get_indexdef(ic.oid) AS definition FROM pg_class ic "
            "JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE n.nspname = 'public' AND ic.relname = ANY($1)",
            names)
        now = {r["name"]: r["definition"] for r in rows}
        for _table, name, _definition, before in deferred.constraints:
            if now.get(name) != before:
                raise IndexRebuildMismatch(
                    f"index {name} would be rebuilt as {now.get(name)!r} instead of {before!r}; nothing was "
                    "written; set replication.rebuild_indexes: false to load with the indexes in place")
    if deferred.foreign_keys:
        await _add_foreign_keys(slave, deferred.foreign_keys)


async def _add_foreign_keys(slave, keys: list[ForeignKey]) -> None:
    statements = _by_table([(fk.table, f"ADD CONSTRAINT {quote_ident(fk.name)} {fk.definition}") for fk in keys])
    try:
        await slave.execute(";\n".join(statements))
    except asyncpg.ForeignKeyViolationError as e:
        raise ForeignKeyNotSatisfied(f"{e}" + (f" ({e.detail})" if getattr(e, "detail", None) else "")) from None
    rows = await slave.fetch(_FOREIGN_KEYS_CHECK_SQL, [fk.name for fk in keys])
    now = {(r["table_name"], r["name"]): (r["definition"], r["index_name"]) for r in rows}  # names are per table
    for fk in keys:
        if now.get((fk.table, fk.name)) != (fk.definition, fk.index):
            raise IndexRebuildMismatch(
                f"foreign key {fk.name} of {fk.table} would be added back as {now.get((fk.table, fk.name))!r} "
                "instead of "
                f"{(fk.definition, fk.index)!r}; nothing was written; set replication.rebuild_indexes: false "
                "to load with the indexes in place")
