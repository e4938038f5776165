"""What the purge needs to know about one table before touching it.

The catalog tells whether the table exists in this Wazo version (a missing
table is skipped, not an error), the type of its time column (timestamptz is
compared with ``now()``, timestamp without time zone with ``localtimestamp``,
as wazo-purge-db does), and how batches can find their rows without scanning
the whole table each time: through a btree index on the time column when
there is one (few rows to delete), or by walking the table's heap in block
ranges (many rows to delete, or no index: one sequential pass over the whole
purge, like the single DELETE's sequential scan), or, on PostgreSQL before 14
(no TID range scans), by walking the integer primary key in ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TIMESTAMPTZ = "timestamp with time zone"
TIMESTAMP = "timestamp without time zone"
_INTEGER_TYPES = {"integer", "bigint", "smallint"}


class TableError(Exception):
    """This table cannot be purged as configured (the message says why)."""


def quote_ident(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


Walk = Literal["time index", "heap blocks", "primary key"]


@dataclass(frozen=True)
class CascadeChild:
    """A table whose rows go with ours by ON DELETE CASCADE (archived with them)."""

    table: str  # as regclass prints it: quoted when needed
    fk: str
    parent_key: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TablePlan:
    table: str
    oid: int
    column: str
    naive: bool  # timestamp without time zone: compared with local time
    indexed: bool  # a btree index leads with the time column
    pk: str | None  # single integer primary key, if any
    tid_range: bool  # the server has TID range scans (PostgreSQL 14+)
    columns: tuple[str, ...]
    cascades: tuple[CascadeChild, ...] = ()

    @property
    def qtable(self) -> str:
        return quote_ident(self.table)

    @property
    def qcolumn(self) -> str:
        return quote_ident(self.column)

    @property
    def qpk(self) -> str:
        assert self.pk is not None
        return quote_ident(self.pk)


_FACTS_SQL = """
SELECT t.oid,
       c.attnum, format_type(c.atttypid, NULL) AS type,
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
               WHERE i.indrelid = t.oid AND i.indkey[0] = c.attnum AND am.amname = 'btree'
                 AND i.indpred IS NULL AND i.indisvalid) AS indexed,
       ARRAY(SELECT a.attname || ' ' || format_type(a.atttypid, NULL) FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = t.oid AND i.indisprimary) AS pk,
       ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = t.oid AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum)::text[] AS columns,
       current_setting('server_version_num')::int AS version
FROM (SELECT to_regclass($1)::oid AS oid) t
LEFT JOIN pg_attribute c ON c.attrelid = t.oid AND c.attname = $2 AND c.attnum > 0 AND NOT c.attisdropped
"""


async def inspect_table(conn, table: str, column: str) -> TablePlan | None:
    """The plan for ``table``, None when the table does not exist; TableError when it cannot be purged."""
    facts = await conn.fetchrow(_FACTS_SQL, quote_ident(table), column)
    oid = facts["oid"]
    if oid is None:
        return None
    if facts["attnum"] is None:
        raise TableError(f"column {column} does not exist in table {table} (purge.tables names it as the time column)")
    if facts["type"] not in (TIMESTAMPTZ, TIMESTAMP):
        raise TableError(f"{table}.{column} is of type {facts['type']}; the time column must be a timestamp")
    indexed = facts["indexed"]
    pk_cols = [entry.split(" ", 1) for entry in facts["pk"]]
    pk = pk_cols[0][0] if len(pk_cols) == 1 and pk_cols[0][1] in _INTEGER_TYPES else None
    tid_range = facts["version"] >= 140000
    if not indexed and pk is None and not tid_range:
        raise TableError(
            f"{table} has no index on {column} and no integer primary key: it cannot be purged in batches "
            f"without reading the whole table for each one (create an index on {table}({column}))"
        )
    children = tuple(
        CascadeChild(r["child"], r["fk"], r["pk"], tuple(r["columns"]))
        for r in await conn.fetch(
            "SELECT c.conrelid::regclass::text AS child, a.attname AS fk, pa.attname AS pk, "
            "ARRAY(SELECT x.attname FROM pg_attribute x WHERE x.attrelid = c.conrelid AND x.attnum > 0 "
            "AND NOT x.attisdropped ORDER BY x.attnum)::text[] AS columns "
            "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1] "
            "WHERE c.confrelid = $1 AND c.contype = 'f' AND c.confdeltype = 'c' AND cardinality(c.conkey) = 1 "
            "AND c.conrelid <> c.confrelid ORDER BY 1",
            oid,
        )
    )
    return TablePlan(
        table=table, oid=oid, column=column, naive=facts["type"] == TIMESTAMP,
        indexed=bool(indexed), pk=pk, tid_range=tid_range,
        columns=tuple(facts["columns"]), cascades=children,
    )
