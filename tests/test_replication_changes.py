"""The change test's pure decisions, value by value: when a recorded state may be trusted, when a side
counts as unchanged without reading its rows, which tables changed.

The database tests (test_replication.py) show these decisions in action; these pin the edges the
mutation run (bench/mutation) found no test holding: a record from another database, from a
cluster whose identifier could not be read, from too long ago, or over another set of tables.
"""

from __future__ import annotations

from wazod.replication.changes import (
    MAX_RECORD_AGE_XIDS,
    Position,
    SideCheck,
    SideState,
    changed_tables,
    record_problem,
)

SYSID, OID = "7301234567890123456", 16384
TABLES = ["extensions", "userfeatures"]


def recorded(**kw) -> SideState:
    base = {"system_identifier": SYSID, "database_oid": OID, "snapshot": "1000:1010:1003",
            "counts": {"extensions": 5, "userfeatures": 60}, "lsn": "0/3000148"}
    return SideState(**{**base, **kw})


def check(**kw) -> SideCheck:
    base = {"identity": (SYSID, OID), "snapshot": "1200:1200:", "xmax": 1200,
            "counts": {"extensions": 5, "userfeatures": 60}, "changed": {}, "lsn": "0/3000148"}
    return SideCheck(**{**base, **kw})


def test_same_position_only_for_the_same_database_and_a_known_identity():
    assert Position((SYSID, OID), "0/3000148").same_as(recorded())
    assert not Position((SYSID, OID), "0/3000150").same_as(recorded())
    assert not Position((SYSID, OID + 1), "0/3000148").same_as(recorded())  # another database
    assert not Position(("7301234567890123457", OID), "0/3000148").same_as(recorded())  # another cluster
    assert not Position((None, OID), "0/3000148").same_as(recorded(system_identifier=None))  # unknown cluster
    assert not Position((SYSID, OID), "0/3000148").same_as(recorded(lsn=None))
    assert not Position((SYSID, OID), "0/3000148").same_as(None)


def test_unchanged_since_needs_the_same_database_position_and_tables():
    assert check().unchanged_since(recorded(), TABLES)
    assert not check(lsn="0/3000150").unchanged_since(recorded(), TABLES)
    assert not check(identity=(SYSID, OID + 1)).unchanged_since(recorded(), TABLES)
    assert not check(identity=("7301234567890123455", OID)).unchanged_since(recorded(), TABLES)
    assert not check(identity=(None, OID)).unchanged_since(recorded(system_identifier=None), TABLES)
    assert not check().unchanged_since(recorded(lsn=None), TABLES)
    # a table now replicated that the record never counted (or one no longer replicated)
    assert not check().unchanged_since(recorded(), [*TABLES, "voicemail"])
    assert not check().unchanged_since(recorded(), TABLES[:1])
    assert not check().unchanged_since(None, TABLES)


def test_a_record_is_trusted_only_from_this_database_forward_and_not_too_old():
    assert record_problem(recorded(), check()) is None
    assert record_problem(None, check()) == "no previous replication recorded"
    assert "system identifier" in record_problem(recorded(), check(identity=(None, OID)))
    assert "not the one" in record_problem(recorded(), check(identity=(SYSID, OID + 1)))
    assert "not the one" in record_problem(recorded(), check(identity=("7301234567890123455", OID)))
    # the server's next xid behind the recorded snapshot's: a cluster restored from a file copy
    assert "back in time" in record_problem(recorded(), check(xmax=1009))
    assert record_problem(recorded(), check(xmax=1010)) is None
    # the age is counted from the recorded snapshot's xmin (1000), not its xmax (1010)
    limit = 1000 + MAX_RECORD_AGE_XIDS
    assert record_problem(recorded(), check(xmax=limit - 1)) is None
    assert "too many transactions" in record_problem(recorded(), check(xmax=limit))
    assert "too many transactions" in record_problem(recorded(), check(xmax=limit + 5))


def test_the_age_limit_is_two_to_the_thirty():
    # exact below 2^30 (see the module docstring); a record 2^29 + 1 transactions old is still good
    assert MAX_RECORD_AGE_XIDS == 1 << 30
    assert record_problem(recorded(), check(xmax=1000 + (1 << 29) + 1)) is None


def test_changed_tables_rows_unseen_or_counts_moved_either_way():
    rec = recorded(counts={"extensions": 5, "userfeatures": 60, "voicemail": 3})
    same = {"extensions": 5, "userfeatures": 60, "voicemail": 3}
    assert changed_tables(rec, check(counts=same)) == set()
    assert changed_tables(rec, check(counts=same, changed={"voicemail": 1})) == {"voicemail"}
    assert changed_tables(rec, check(counts={**same, "extensions": 4})) == {"extensions"}  # a delete
    assert changed_tables(rec, check(counts={**same, "userfeatures": 61})) == {"userfeatures"}  # more rows
    assert changed_tables(rec, check(counts={**same, "queue": 0})) == {"queue"}  # never counted before
