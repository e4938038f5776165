"""``wazod replicate [--dry-run] [--force] [--json]`` and ``wazod sync [--init] [--dry-run] [--json]``."""

from __future__ import annotations

from wazod.commands import print_json, run_job_command
from wazod.errors import ExitCode, WrongRole


def register(sub, common) -> None:
    p = sub.add_parser("replicate", parents=[common], help="master to slave database replication, now")
    p.add_argument("--dry-run", action="store_true", help="show the tables and rows that would be copied")
    p.add_argument("--force", action="store_true", help="copy every table even when nothing changed")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    # what a run reads of the configuration (node, ha and logging are always read): the other sections'
    # models are not even built (`wazod config check` and `wazod run` validate them)
    p.set_defaults(handler=_replicate, config_sections=("replication",))

    p = sub.add_parser("sync", parents=[common], help="master to slave file sync, now")
    p.add_argument("--init", action="store_true",
                   help="create the ssh key, install it on the other node and record its host key")
    p.add_argument("--dry-run", action="store_true", help="show what would be transferred")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_sync)


def _replicate(args, loaded) -> int:
    return run_job_command(args, loaded, "replication", dry_run=args.dry_run, force=args.force)


def _sync(args, loaded) -> int:
    import asyncio

    if not args.init:
        return run_job_command(args, loaded, "sync", dry_run=args.dry_run)
    config = loaded.config
    # --init also runs on the slave: its key on the master is what copy-back on failback uses.
    if config.role not in ("master", "slave"):
        raise WrongRole(f"sync --init needs a master or slave node; this node is {config.role}")
    from wazod.sync import init_keys

    result = asyncio.run(init_keys(config))
    if args.json:
        print_json(result.to_dict())
    else:
        for line in result.messages:
            print(line)
        if result.error:
            print(f"error: {result.error}")
    return ExitCode.OK if result.ok else ExitCode.FAILED
