"""``wazod backup [data|db|all]``, ``wazod backup verify [DIR] [--deep]``, ``wazod restore``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time

from wazod.commands import print_json, run_job_command
from wazod.errors import ExitCode, WazodError


def _generation(text: str) -> int:
    """``--generation N``: 0 (the newest set), 1, 2... (argparse turns the error into exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (the newest set) or a positive number, not {text!r}")
    return value


def register(sub, common) -> None:
    p = sub.add_parser("backup", parents=[common],
                       help="a backup now (data.tgz, db.tgz), or 'verify' the newest set",
                       description="wazod backup [data|db|all]  |  wazod backup verify [DIR] [--deep]")
    p.add_argument("what", nargs="?", default="all", choices=["data", "db", "all", "verify"],
                   help="what to back up (default all), or verify")
    p.add_argument("dir", nargs="?", default=None, help="verify: the backup directory (default backup.dir)")
    p.add_argument("--deep", action="store_true", help="verify: also restore the dump into a scratch database "
                                                       "and compare row counts")
    p.add_argument("--generation", type=_generation, default=0, metavar="N",
                   help="verify: the set N generations back (data.tgz.N); default 0, the newest")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_backup)

    p = sub.add_parser("restore", parents=[common], help="restore a backup (the guide's procedure, automated)")
    p.add_argument("--data", metavar="FILE", help="data.tgz to restore (default: backup.dir's, when no file is named)")
    p.add_argument("--db", metavar="FILE", help="db.tgz to restore (default: backup.dir's, when no file is named)")
    p.add_argument("--keep-network", dest="keep_network", action="store_true", default=True,
                   help="keep this node's network files and tables dhcp, netiface, resolvconf (default)")
    p.add_argument("--no-keep-network", dest="keep_network", action="store_false",
                   help="restore the network settings of the backup too")
    p.add_argument("--dry-run", action="store_true", help="check the backup and print the steps, change nothing")
    p.add_argument("--force", action="store_true",
                   help="restore a backup of another Wazo version or architecture; drop a stale asterisk_previous")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_restore)


@contextlib.contextmanager
def _sigterm_cancels():
    """SIGTERM ends a CLI backup or restore like Ctrl-C: asyncio cancels the run, which cleans up.

    Without it the process would die on the spot: tar and pigz orphaned, a
    restore stopped between the rename and the rollback.
    """
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    # A command started in the background by a shell, cron or nohup inherits SIGINT ignored: then
    # asyncio would not turn it into a cancellation and the SIGTERM above would do nothing at all.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


class _Bar:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and not (total and done >= total):
            return
        self.last = now
        from wazod.backup.sets import human

        if total:
            frac = min(done / total, 1.0) if total else 0.0
            width = 30
            fill = int(frac * width)
            line = f"{phase:<10} [{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}% {human(done)} / {human(total)}"
        else:
            line = f"{phase:<10} ..."
        sys.stderr.write("\r" + line.ljust(78))
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


def _backup(args, loaded) -> int:
    if args.what == "verify":
        return _verify(args, loaded)
    if args.dir is not None or args.deep or args.generation:
        raise WazodError("DIR, --deep and --generation go with 'wazod backup verify'", ExitCode.USAGE)
    bar = _Bar() if sys.stderr.isatty() and not args.json else None
    try:
        with _sigterm_cancels():
            return run_job_command(args, loaded, "backup", what=args.what, progress=bar)
    finally:
        if bar:
            bar.close()


def _verify(args, loaded) -> int:
    import asyncio

    from wazod.backup import sets, verify
    from wazod.locks import OperationLock

    config = loaded.config
    with OperationLock(config.state_dir, "backup"), _sigterm_cancels():  # no rotation while checking
        if args.dir is None:
            sets.finish_interrupted(config.backup.dir)  # a set a crash left half-installed is completed first
        report = asyncio.run(verify(config, args.dir, deep=args.deep, generation=args.generation))
    if args.json:
        print_json(report)
    else:
        print(f"backup set in {report['dir']}" + (f" (generation {args.generation})" if args.generation else "")
              + f": {'OK' if report['ok'] else 'FAILED'}")
        for a in report["archives"]:
            print(f"  {a['archive']}: {'ok' if a['ok'] else 'FAILED'}")
            for c in a["checks"]:
                print(f"    - {c}")
            for p in a["problems"]:
                print(f"    ! {p}")
        if "deep" in report:
            d = report["deep"]
            print(f"  deep (restore into a scratch database): {'ok' if d['ok'] else 'FAILED'}"
                  + (f", {d.get('tables')} tables, {d.get('rows')} rows" if d.get("tables") else ""))
            for p in d["problems"]:
                print(f"    ! {p}")
    return ExitCode.OK if report["ok"] else ExitCode.FAILED


def _restore(args, loaded) -> int:
    import asyncio

    from wazod.backup.restore import default_files, restore
    from wazod.events import open_emitter

    config = loaded.config
    data, db = default_files(config, args.data, args.db)
    def say(text):
        return (print(text, file=sys.stderr if args.json else sys.stdout, flush=True))
    with _sigterm_cancels():  # restore() holds every job's and HA's lock for its duration (LockHeld: exit 3)
        report = asyncio.run(restore(config, data_file=data, db_file=db, keep_network=args.keep_network,
                                     dry_run=args.dry_run, force=args.force, say=say))
    if not args.dry_run:
        emitter = open_emitter(config)
        try:
            payload = {"data_file": data, "db_file": db, "keep_network": args.keep_network,
                       "rolled_back": report.rolled_back, "warnings": report.warnings}
            if report.ok:
                emitter.emit("restore_completed", payload)
            else:
                emitter.emit("restore_failed", {**payload, "stopped_at": report.stopped_at, "error": report.error})
        finally:
            emitter.store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        for w in report.warnings:
            print(f"warning: {w}")
        if report.ok:
            print("restore dry run: the backup is readable; nothing was changed" if args.dry_run
                  else "restore completed")
        else:
            extra = (" (database rolled back)" if report.rolled_back
                     else f" (rollback failed: {report.rollback_error})" if report.rollback_error else "")
            print(f"restore stopped at step {report.stopped_at}: {report.error}{extra}", file=sys.stderr)
    return ExitCode.OK if report.ok else ExitCode.FAILED
