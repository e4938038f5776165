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


async def inspect_table(conn, table: str, column: str) -> TablePlan | None:
    """The plan for ``table``, None when the table does not exist; TableError when it cannot be purged."""
    oid = await conn.fetchval("SELECT to_regclass($1)::oid", quote_ident(table))
    if oid is None:
        return None
    col = await conn.fetchrow(
        "SELECT attnum, format_type(atttypid, NULL) AS type FROM pg_attribute "
        "WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
        oid, column,
    )
    if col is None:
        raise TableError(f"column {column} does not exist in table {table} (purge.tables names it as the time column)")
    if col["type"] not in (TIMESTAMPTZ, TIMESTAMP):
        raise TableError(f"{table}.{column} is of type {col['type']}; the time column must be a timestamp")
    indexed = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = ic.relam WHERE i.indrelid = $1 AND i.indkey[0] = $2 "
        "AND am.amname = 'btree' AND i.indpred IS NULL AND i.indisvalid)",
        oid, col["attnum"],
    )
    pk_cols = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, NULL) AS type FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = $1 AND i.indisprimary",
        oid,
    )
    pk = pk_cols[0]["attname"] if len(pk_cols) == 1 and pk_cols[0]["type"] in _INTEGER_TYPES else None
    tid_range = int(await conn.fetchval("SELECT current_setting('server_version_num')")) >= 140000
    if not indexed and pk is None and not tid_range:
        raise TableError(
            f"{table} has no index on {column} and no integer primary key: it cannot be purged in batches "
            f"without reading the whole table for each one (create an index on {table}({column}))"
        )
    columns = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        oid,
    )
    children = []
    for child in await conn.fetch(
        "SELECT c.conrelid AS oid, c.conrelid::regclass::text AS child, a.attname AS fk, pa.attname AS pk "
        "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1] "
        "WHERE c.confrelid = $1 AND c.contype = 'f' AND c.confdeltype = 'c' AND cardinality(c.conkey) = 1 "
        "AND c.conrelid <> c.confrelid ORDER BY 2",
        oid,
    ):
        child_columns = await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", child["oid"])
        children.append(CascadeChild(child["child"], child["fk"], child["pk"],
                                     tuple(r["attname"] for r in child_columns)))
    return TablePlan(
        table=table, oid=oid, column=column, naive=col["type"] == TIMESTAMP,
        indexed=bool(indexed), pk=pk, tid_range=tid_range,
        columns=tuple(r["attname"] for r in columns), cascades=tuple(children),
    )
