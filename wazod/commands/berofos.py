"""``wazod berofos master|slave|status [-f fosN] [--json]``: the old ``xivo-berofos``, verified.

``master`` puts the ISDN lines on the master (mode 1), ``slave`` on the slave
(mode 0); both take the ``berofos`` lock (exit 3 if a switch is running),
verify every device by reading its mode back, emit the same events as the
daemon, and exit 1 if any device failed. ``status`` reads every device and
warns about setup values that differ from what Wazo's procedure sets. It works
on any node, whatever its HA role. Passwords are never printed.
"""

from __future__ import annotations

from pathlib import Path

from wazod.commands import print_json
from wazod.errors import ExitCode


def register(sub, common) -> None:
    p = sub.add_parser("berofos", parents=[common], help="set or read the relay mode of the berofos switches")
    bsub = p.add_subparsers(dest="berofos_command", metavar="ACTION")
    bsub.required = True
    for action, helptext in (
        ("master", "ISDN lines on the master (relay mode 1, A to B)"),
        ("slave", "ISDN lines on the slave (relay mode 0, A to D)"),
        ("status", "mode, default mode, watchdog and scenario of each device, with setup warnings"),
    ):
        a = bsub.add_parser(action, parents=[common], help=helptext)
        a.add_argument("-f", "--fos", dest="fos", action="append", metavar="fosN",
                       help="only this device of bnfos.conf (repeatable; default: all)")
        a.add_argument("--json", action="store_true", help="print the result as JSON")
        a.set_defaults(handler=_status if action == "status" else _set,
                       berofos_mode=action if action in ("master", "slave") else None)


def _devices_or_none(args, config):
    """The selected devices; None (after saying so) when this site has no berofos. Errors exit 2.

    An explicitly configured ``berofos.config`` that does not exist is an error (exit 2).
    """
    from wazod.berofos.conf import NOT_CONFIGURED, configured_devices, select_devices

    path = config.berofos.config
    devices = configured_devices(config.berofos)  # BnfosConfError: exit 2 with file:line
    if not devices:
        why = "does not exist" if not Path(path).exists() else "lists no device"
        msg = f"{NOT_CONFIGURED}: {path} {why}"
        if args.json:
            print_json({"ok": True, "devices": [], "note": msg})
        else:
            print(msg)
        return None
    return select_devices(devices, args.fos, path)


def _set(args, loaded) -> int:
    import asyncio

    from wazod.berofos.protocol import MODE_MASTER, MODE_SLAVE
    from wazod.berofos.switch import LINES_ON, apply_mode  # aiohttp: only when a device is driven
    from wazod.events import open_emitter
    from wazod.locks import OperationLock

    config = loaded.config
    mode = {"master": MODE_MASTER, "slave": MODE_SLAVE}[args.berofos_mode]
    devices = _devices_or_none(args, config)
    if devices is None:
        return ExitCode.OK
    with OperationLock(config.state_dir, "berofos"):  # LockHeld: exit 3
        emitter = open_emitter(config)
        try:
            results = asyncio.run(apply_mode(config, mode, emitter, devices=[d.name for d in devices],
                                             reason="manual", lock=False))
        finally:
            emitter.store.close()
    ok = all(r.ok for r in results)
    if args.json:
        print_json({"ok": ok, "mode": mode, "devices": [r.to_dict() for r in results]})
    else:
        for r in results:
            if r.ok:
                was = "" if r.previous is None else (" (unchanged)" if not r.changed else f" (was {r.previous})")
                print(f"{r.name} {r.host}: mode {r.mode}, lines on the {LINES_ON[r.mode]}{was}")
            else:
                now = f"; it reports mode {r.mode}" if r.mode is not None else ""
                error = (r.error or "").removeprefix(f"{r.name} ({r.host}): ")
                print(f"{r.name} {r.host}: FAILED after {r.attempts} attempt(s): {error}{now}")
    return ExitCode.OK if ok else ExitCode.FAILED


def _status(args, loaded) -> int:
    import asyncio

    from wazod.berofos.switch import read_status

    config = loaded.config
    devices = _devices_or_none(args, config)
    if devices is None:
        return ExitCode.OK
    statuses = asyncio.run(read_status(config, [d.name for d in devices]))
    ok = all(s.ok for s in statuses)
    if args.json:
        print_json({"ok": ok, "devices": [s.to_dict() for s in statuses]})
    else:
        for s in statuses:
            if not s.ok:
                error = (s.error or "").removeprefix(f"{s.name} ({s.host}): ")
                print(f"{s.name} {s.host}: UNREADABLE: {error}")
                continue
            print(f"{s.name} {s.host}: mode {s.mode} (lines on the {s.lines_on}), modedef {s.modedef}, "
                  f"wdog {s.wdog}, wdogdef {s.wdogdef}, scenario {s.scenario}")
            for w in s.warnings:
                print(f"  warning: {w}")
    return ExitCode.OK if ok else ExitCode.FAILED
