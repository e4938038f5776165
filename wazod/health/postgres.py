"""PostgreSQL on this node reachable and answering a query.

Both nodes run PostgreSQL (the master serves Wazo, the slave receives the
replication), so the check applies whatever the role. A server that answers
but refuses the check's credentials or database is up: that is a warning
about the check's DSN, not a critical outage.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from wazod import dsn as dsnlib
from wazod import pgconnect
from wazod.errors import ConfigError
from wazod.health.levels import CRITICAL, OK, WARNING, CheckResult
from wazod.secrets import mask_text

# SQLSTATE classes meaning "the server is up and refused us": 28 authorization, 3D unknown database
REFUSED_CLASSES = ("28", "3D")


async def check_postgres(section) -> CheckResult:
    t0 = time.monotonic()
    # never the DSN itself in a health value (served to the peer, unauthenticated on loopback): where it points
    dsn = dsnlib.describe(section.dsn)
    try:
        conn = await pgconnect.connect(section.dsn, os_user=section.db_os_user,
                                       setting="health.postgresql.db_os_user",
                                       dsn_setting="health.postgresql.dsn", timeout=section.timeout)
        try:
            row = await asyncio.wait_for(
                conn.fetchrow("SELECT pg_is_in_recovery() AS recovery, current_setting('server_version') AS v"),
                section.timeout,
            )
        finally:
            await conn.close(timeout=section.timeout)
    except ConfigError as e:
        return CheckResult(WARNING, f"cannot run the check: {e}", {"error": str(e), "database": dsn})
    except asyncpg.PostgresError as e:
        error = mask_text(str(e) or type(e).__name__)
        values = {"error": error, "sqlstate": e.sqlstate, "database": dsn}
        if (e.sqlstate or "").startswith(REFUSED_CLASSES):
            return CheckResult(WARNING, f"PostgreSQL answers but refused the check: {error} "
                                        "(see health.postgresql.dsn)", values)
        return CheckResult(CRITICAL, f"PostgreSQL not answering: {error}", values)
    except (TimeoutError, OSError, asyncpg.InterfaceError) as e:
        error = mask_text(str(e) or type(e).__name__)
        return CheckResult(CRITICAL, f"PostgreSQL not answering: {error}", {"error": error, "database": dsn})
    elapsed = time.monotonic() - t0
    return CheckResult(OK, f"PostgreSQL {row['v']} answering", {
        "database": dsn, "response_seconds": round(elapsed, 4), "in_recovery": row["recovery"], "version": row["v"],
    })
