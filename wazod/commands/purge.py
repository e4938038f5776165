"""``wazod purge [-d DAYS] [--dry-run] [--json]``: the old ``xivo-purge-db -d N``, now.

Runs the same job as the nightly schedule (same lock, record and event). SIGTERM
lets the running batch end, then stops: rows deleted so far stay deleted (and
archived), the others stay, and the run is recorded as failed ("interrupted").
"""

from __future__ import annotations

import argparse
import signal

from wazod.commands import run_job_command
from wazod.errors import ExitCode


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"days to keep must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"days to keep must be 0 or more, got {value}")
    return value


def register(sub, common) -> None:
    p = sub.add_parser("purge", parents=[common], help="purge old log rows now (the old xivo-purge-db -d N)")
    p.add_argument("-d", "--days-to-keep", "--days_to_keep", dest="days", type=_days, default=None, metavar="DAYS",
                   help="days of rows kept, replacing purge.days_to_keep (per-table settings still win); "
                        "0 deletes every row")
    p.add_argument("--dry-run", action="store_true", help="print the rows each table would lose; delete nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_purge)


async def _purge_until_sigterm(config, **options):
    """wazod.purge.run, cancelled by SIGTERM as the daemon's jobs are (the batch in progress ends first)."""
    import asyncio

    from wazod.purge import run

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run(config, **options)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _purge(args, loaded) -> int:
    import asyncio

    try:
        return run_job_command(args, loaded, "purge", entry=_purge_until_sigterm, days=args.days,
                               dry_run=args.dry_run)
    except asyncio.CancelledError:
        print("wazod: purge interrupted by SIGTERM after its current batch; rows deleted so far are committed "
              "(and archived), the rest is left for the next run")
        return ExitCode.FAILED
