"""Indexes of the emptied tables: dropped before the load, built once after it.

Inserting 20,000 rows into a table maintains every index row by row (random
keys such as UUIDs make that the most expensive part of a load); building
the index afterwards sorts once. Everything happens in the slave's
replication transaction: a rollback brings the original indexes back
untouched, and other sessions wait on the table lock TRUNCATE already holds.

What is deferred, on tables emptied by TRUNCATE only:

* plain indexes: valid, nothing depending on them, nothing a rebuild would
  lose (tablespace, comment, clustering, replica identity);
* PRIMARY KEY and UNIQUE constraints that no foreign key relies on and whose
  index carries the constraint's name: dropped with ``ALTER TABLE ... DROP
  CONSTRAINT`` and added back with their own ``pg_get_constraintdef``. After
  the rebuild each index definition is compared with the original one; any
  difference fails the run (rolled back) and names the index, and
  ``replication.rebuild_indexes: false`` turns the whole optimisation off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wazod.replication.catalog import quote_ident

_PLAIN_SQL = """
SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = 'public' AND t.relname = ANY($1::text[])
  AND i.indisvalid AND i.indisready AND NOT i.indisreplident AND NOT i.indisclustered
  AND ic.reltablespace = 0
  AND obj_description(i.indexrelid, 'pg_class') IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid)
ORDER BY ic.relname
"""

_CONSTRAINTS_SQL = """
SELECT t.relname AS table_name, co.conname AS name, pg_get_constraintdef(co.oid) AS definition,
       pg_get_indexdef(co.conindid) AS index_definition
FROM pg_constraint co
JOIN pg_class t ON t.oid = co.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class ic ON ic.oid = co.conindid
JOIN pg_index i ON i.indexrelid = co.conindid
WHERE n.nspname = 'public' AND t.relname = ANY($1::text[]) AND co.contype IN ('p', 'u')
  AND ic.relname = co.conname AND ic.reltablespace = 0
  AND i.indisvalid AND NOT i.indisreplident AND NOT i.indisclustered
  AND obj_description(co.oid, 'pg_constraint') IS NULL
  AND obj_description(co.conindid, 'pg_class') IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = co.conindid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = co.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = co.conindid)
ORDER BY t.relname, co.conname
"""


class IndexRebuildMismatch(Exception):
    """A rebuilt index differs from the original (the run fails and rolls back)."""


@dataclass
class Deferred:
    plain: list[tuple[str, str]] = field(default_factory=list)  # (index, CREATE INDEX ...)
    constraints: list[tuple[str, str, str, str]] = field(default_factory=list)  # (table, name, def, indexdef)

    def __len__(self) -> int:
        return len(self.plain) + len(self.constraints)


async def defer_indexes(slave, emptied: set[str]) -> Deferred:
    deferred = Deferred()
    if not emptied:
        return deferred
    tables = sorted(emptied)
    deferred.plain = [(r["name"], r["definition"]) for r in await slave.fetch(_PLAIN_SQL, tables)]
    deferred.constraints = [(r["table_name"], r["name"], r["definition"], r["index_definition"])
                            for r in await slave.fetch(_CONSTRAINTS_SQL, tables)]
    statements = []
    if deferred.plain:
        statements.append("DROP INDEX " + ", ".join(f"public.{quote_ident(n)}" for n, _ in deferred.plain))
    for table in sorted({c[0] for c in deferred.constraints}):
        drops = [f"DROP CONSTRAINT {quote_ident(c[1])}" for c in deferred.constraints if c[0] == table]
        statements.append(f"ALTER TABLE public.{quote_ident(table)} " + ", ".join(drops))
    if statements:
        await slave.execute(";\n".join(statements))  # one round trip
    return deferred


async def rebuild_indexes(slave, deferred: Deferred) -> None:
    if not deferred:
        return
    statements = ["SET LOCAL maintenance_work_mem = '256MB'"]
    statements += [definition for _name, definition in deferred.plain]
    statements += [f"ALTER TABLE public.{quote_ident(table)} ADD CONSTRAINT {quote_ident(name)} {definition}"
                   for table, name, definition, _ in deferred.constraints]
    # the definitions come from pg_get_indexdef / pg_get_constraintdef on this very server
    await slave.execute(";\n".join(statements))
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
