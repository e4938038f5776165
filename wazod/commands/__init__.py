"""Command-line commands, one module per area, each with ``register(subparsers, common)``.

A command's handler takes ``(args, loaded)`` and returns an exit code; it may
raise ``WazodError`` (its exit code and message are used). Job commands go
through ``run_job_command`` so they take the same lock and emit the same events
as the daemon's scheduled runs.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from wazod.errors import ExitCode

if TYPE_CHECKING:
    from wazod.jobs import JobResult

COMMAND_MODULES = [
    "wazod.commands.daemon",      # run, status, config check / defaults
    "wazod.commands.ha",          # check-master, services
    "wazod.commands.replication", # replicate, sync
    "wazod.commands.backup",      # backup, backup verify, restore
    "wazod.commands.purge",       # purge
    "wazod.commands.berofos",     # berofos
    "wazod.commands.events",      # events
    "wazod.commands.maintenance", # maintenance
    "wazod.commands.demo",        # demo
]
# The command names each module registers (a test keeps this equal to what they register): a command
# line naming one of them builds only that module's parsers, not all of them (`wazod --help` builds all).
COMMAND_NAMES = {
    "run": "wazod.commands.daemon", "status": "wazod.commands.daemon", "config": "wazod.commands.daemon",
    "check-master": "wazod.commands.ha", "copy-back": "wazod.commands.ha", "services": "wazod.commands.ha",
    "replicate": "wazod.commands.replication", "sync": "wazod.commands.replication",
    "backup": "wazod.commands.backup", "restore": "wazod.commands.backup",
    "purge": "wazod.commands.purge", "berofos": "wazod.commands.berofos", "events": "wazod.commands.events",
    "maintenance": "wazod.commands.maintenance", "demo": "wazod.commands.demo",
}


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _readable(key: str, value: Any) -> str:
    """A result value for a person: sizes with units, digests shortened, nested values inline."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, (int, float)) and ("bytes" in key or key in ("size", "free")):
        from wazod.backup.sets import human

        return human(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and key in ("sha256", "sha1", "md5") and len(value) > 16:
        return value[:12] + "…"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_readable(str(k), v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        shown = [_readable(key, v) for v in value[:5]]
        more = f" … ({len(value) - 5} more)" if len(value) > 5 else ""
        return (", ".join(shown) + more) if shown else "none"
    return str(value)


def print_result(result: JobResult, as_json: bool) -> None:
    """The job's result on stdout: JSON with ``--json``; at a terminal, for a person; else key: value lines."""
    if as_json:
        print_json(result.to_dict())
        return
    head = f"{result.job}: {result.status}" + (" (dry run)" if result.dry_run else "")
    print(f"{head} in {result.duration:.2f} s")
    if result.error:
        print(f"  error: {result.error}")
    tty = sys.stdout.isatty()
    for key, value in result.data.items():
        if tty:
            value = _readable(key, value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"  {key}: {value}")


def run_job_command(args, loaded, job: str, **options: Any) -> int:
    """Run a job from the CLI exactly as the daemon would (lock, record, event)."""
    import asyncio

    from wazod.events import open_emitter
    from wazod.jobs import JOBS, check_role, run_job

    config = loaded.config
    check_role(JOBS[job], config.role)
    emitter = open_emitter(config)
    try:
        result = asyncio.run(run_job(job, config, emitter, **options))
    finally:
        emitter.store.close()
    print_result(result, getattr(args, "json", False))
    return ExitCode.OK if result.ok else ExitCode.FAILED
