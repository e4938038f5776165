"""``wazod run``, ``wazod status``, ``wazod config check|defaults``."""

from __future__ import annotations

import json
import sys

from wazod.commands import print_json
from wazod.errors import ExitCode

# ``wazod status --check``: the daemon is not running (systemctl status's "unit not active" code).
# The contract keeps plain ``wazod status`` at 0 whenever it could answer, so scripts that read
# its output are not broken; scripts that need the answer in the exit code ask for it.
DAEMON_NOT_RUNNING = 3


def register(sub, common) -> None:
    p = sub.add_parser("run", parents=[common], help="the daemon, in the foreground (systemd runs this)")
    p.set_defaults(handler=_run)

    p = sub.add_parser("status", parents=[common], help="role, HA state, peer, berofos, jobs, health")
    p.add_argument("--json", action="store_true", help="the contract's JSON document")
    p.add_argument("--check", action="store_true",
                   help=f"exit {DAEMON_NOT_RUNNING} when the daemon is not running, as 'systemctl status' does "
                        "(without it, status exits 0 whenever it could answer)")
    p.set_defaults(handler=_status)

    p = sub.add_parser("config", parents=[common], help="validate or show the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("check", parents=[common], help="validate and print the effective config, secrets masked")
    c.add_argument("--json", action="store_true")
    c.add_argument("--changed", action="store_true",
                   help="only the values that differ from the defaults, with the file (and line) that set each")
    c.set_defaults(handler=_config_check)
    c = csub.add_parser("defaults", parents=[common], help="print the documented default configuration")
    c.set_defaults(handler=_config_defaults, needs_config=False)


def _run(args, loaded) -> int:
    from wazod.supervisor import run_daemon

    return run_daemon(loaded)


def _status(args, loaded) -> int:
    from wazod.status_view import collect_status, render_status

    doc = collect_status(loaded.config)
    if args.json:
        print_json(doc)
    else:
        sys.stdout.write(render_status(doc, color=sys.stdout.isatty()))
    if args.check and doc.get("daemon") != "running":
        return DAEMON_NOT_RUNNING
    return ExitCode.OK


def _config_check(args, loaded) -> int:
    if args.changed:
        return _config_changed(args, loaded)
    effective = loaded.config.masked()
    if args.json:
        print_json({"ok": True, "files": [str(p) for p in loaded.files], "config": effective})
    else:
        print("configuration OK; files read (highest priority first):")
        for p in loaded.files:
            print(f"  {p}{'' if p.exists() else ' (absent)'}")
        import yaml

        print(yaml.safe_dump(json.loads(json.dumps(effective)), sort_keys=False), end="")
    return ExitCode.OK


def _config_changed(args, loaded) -> int:
    """``config check --changed``: the few lines an administrator set, not the ~400 of the whole config."""
    from wazod.config import Config
    from wazod.config.explain import changed

    defaults = Config().model_dump(mode="json")
    rows = changed(loaded, defaults)
    if args.json:
        print_json({"ok": True, "files": [str(p) for p in loaded.files], "changed": rows})
        return ExitCode.OK
    print("configuration OK; files read (highest priority first):")
    for p in loaded.files:
        print(f"  {p}{'' if p.exists() else ' (absent)'}")
    print(f"{len(rows)} value{'' if len(rows) == 1 else 's'} differ{'s' if len(rows) == 1 else ''} "
          "from the defaults:" if rows else "every value is the default")
    width = max((len(r["key"]) for r in rows), default=0)
    for r in rows:
        where = r["file"] + (f":{r['line']}" if r.get("line") else "") if r["file"] else "(derived)"
        value = json.dumps(r["value"], default=str)
        print(f"  {r['key']:<{width}}  {value}  (default {json.dumps(r['default'], default=str)}; {where})")
    return ExitCode.OK


def _config_defaults(args, loaded) -> int:
    from wazod.config.defaults import render_default_config

    sys.stdout.write(render_default_config())
    return ExitCode.OK
