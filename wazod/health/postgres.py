"""PostgreSQL on this node reachable and answering a query.

Both nodes run PostgreSQL (the master serves Wazo, the slave receives the
replication), so the check applies whatever the role.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from wazod.health.levels import CRITICAL, OK, CheckResult
from wazod.secrets import mask_text


async def check_postgres(section) -> CheckResult:
    t0 = time.monotonic()
    try:
        conn = await asyncpg.connect(section.dsn, timeout=section.timeout)
        try:
            row = await asyncio.wait_for(
                conn.fetchrow("SELECT 1 AS one, pg_is_in_recovery() AS recovery, current_setting('server_version') AS v"),
                section.timeout,
            )
        finally:
            await conn.close(timeout=section.timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        error = mask_text(str(e) or type(e).__name__)
        return CheckResult(CRITICAL, f"PostgreSQL not answering: {error}", {"error": error, "dsn": mask_text(section.dsn)})
    elapsed = time.monotonic() - t0
    return CheckResult(OK, f"PostgreSQL {row['v']} answering", {
        "dsn": mask_text(section.dsn), "response_seconds": round(elapsed, 4),
        "in_recovery": row["recovery"], "version": row["v"],
    })
