"""``wazod``: the command line.

Every command accepts ``--config PATH`` (default /etc/wazod/config.yml or
$WAZOD_CONFIG) anywhere on the line. Exit codes are those of the contract:
0 ok, 1 failed, 2 bad usage or configuration, 3 lock held, 4 wrong role.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import os
import sys

from wazod import DEFAULT_CONFIG_PATH, __version__
from wazod.commands import COMMAND_MODULES, COMMAND_NAMES
from wazod.errors import ConfigError, ExitCode, WazodError

# Only argparse and the command modules' registrations run before a command is
# chosen: each command imports what it needs (pydantic, asyncpg, aiohttp...)
# when it runs, so `wazod --help` and a quick `wazod replicate` start fast.


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2 too; keep the message short
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"wazod: error: {message}\n")


def _named_command(argv: list[str]) -> str | None:
    """The command ``argv`` names when nothing before it but ``--config`` could change what argparse does
    (``-h``, ``--version``...); else None."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("--config="):
            return None if word.startswith("-") else word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; given ``argv`` naming a command, only that command's module is registered
    (its parsers are the same; the others are not built: 5 to 10 ms of every command's start)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help=f"configuration file (default {DEFAULT_CONFIG_PATH} or $WAZOD_CONFIG)")
    parser = _Parser(prog="wazod", description="Supervisor of a Wazo IPBX node and HA pair.", parents=[common])
    parser.add_argument("--version", action="version", version=f"wazod {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = COMMAND_MODULES
    command = _named_command(argv) if argv is not None else None
    if command in COMMAND_NAMES:
        modules = [COMMAND_NAMES[command]]
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(sub, common)
    return parser


def _leave_the_heap_to_the_os_at_exit() -> None:
    """A command's process exits without the interpreter's last garbage collections (30 to 50 ms of a
    `wazod replicate` that found nothing to do, more than the run itself).

    At exit the interpreter collects every reference cycle left, and the libraries leave hundreds of
    thousands of objects in cycles (pydantic's schemas, classes, typing's caches); the OS frees them all
    at once anyway. ``gc.freeze()`` as the last exit handler puts them out of the collector's reach.
    What is not collected is only what was still in a cycle at exit: objects reached from modules are
    still released (their ``__del__`` runs), exit handlers (logging's flush) run before, and the
    interpreter flushes stdout and stderr itself. The daemon (``run``) is left as it was.
    """
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process (tests)
    atexit.register(gc.freeze)  # its place among the exit handlers does not matter: it only moves objects


BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader closed the pipe


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) != "run":
        _leave_the_heap_to_the_os_at_exit()
    explicit = getattr(args, "config", None) or os.environ.get("WAZOD_CONFIG")
    config_path = explicit or DEFAULT_CONFIG_PATH
    needs_config = getattr(args, "needs_config", True)
    try:
        if needs_config:
            from wazod.config import load_config
        # a command that names the sections it reads (``config_sections``) has only those validated
        loaded = (load_config(config_path, must_exist=bool(explicit), sections=getattr(args, "config_sections", None))
                  if needs_config else None)
    except ConfigError as e:
        print(f"wazod: configuration error:\n{e}", file=sys.stderr)
        return ExitCode.USAGE
    if getattr(args, "command", None) != "run":
        from wazod.logsetup import configure_logging

        # CLI commands print results on stdout; their logs go to stderr. At a terminal the command's own
        # readable result says what happened: only warnings and errors are logged there, readably.
        level = loaded.config.logging.level if loaded else "info"
        if sys.stderr.isatty() and sys.stdout.isatty() and level in ("debug", "info"):
            level = "warning" if level == "info" else level
        configure_logging(level, stream=sys.stderr)
    try:
        return int(args.handler(args, loaded))
    except BrokenPipeError:
        # the reader went away (``wazod status --json | head``): stop quietly, as a Unix tool killed by
        # SIGPIPE would, with its exit code; stdout goes to /dev/null so the final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except WazodError as e:
        print(f"wazod: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print("wazod: interrupted", file=sys.stderr)
        return ExitCode.FAILED


if __name__ == "__main__":
    raise SystemExit(main())
