"""``wazod check-master`` and ``wazod services start|stop``.

check-master is Wazo's ``xivo-check-master-status`` without the acting: one
probe round against the peer, each probe printed with its round-trip time,
and the verdict the daemon would draw from it. ``services`` is the old
``xivo-manage-slave-services``: the same sequences the daemon runs, under the
same ``services`` lock, with the same events.
"""

from __future__ import annotations

import sys

from wazod.commands import print_json
from wazod.errors import ExitCode, WazodError


def register(sub, common) -> None:
    p = sub.add_parser("check-master", parents=[common],
                       help="one probe round against the master (the peer on a master), printed per probe")
    p.add_argument("--json", action="store_true", help="print the round as JSON")
    p.add_argument("--address", help="probe this address instead of ha.remote_address")
    p.set_defaults(handler=_check_master)

    p = sub.add_parser("copy-back", parents=[common],
                       help="on the slave: copy the files changed during an outage back to the master "
                            "(what a failback does; run it when the failback's copy-back failed)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_copy_back)

    p = sub.add_parser("services", parents=[common], help="start or stop the telephony services of this node")
    p.add_argument("action", choices=["start", "stop", "status"], help="start | stop | status")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_services)


def _check_master(args, loaded) -> int:
    import asyncio

    from wazod.ha.probes import Prober

    cfg = loaded.config
    ha = cfg.ha
    address = args.address or ha.remote_address
    if not address:
        raise WazodError(f"no peer to probe: ha.remote_address is not set (nor in {ha.ha_conf}); "
                         "give --address", ExitCode.USAGE)
    role = cfg.role
    probes = ha.slave_probes if role == "master" else ha.probes
    witnesses = ha.witnesses if role != "master" else []
    async def one_round():
        # one round judges at once (budget 0); the daemon lets a late SIP answer count for ha.sip_timeout s
        prober = Prober(ha, address, probes, witnesses=witnesses, sip_budget=0.0)
        try:
            return await prober.round()
        finally:
            prober.close()

    rnd = asyncio.run(one_round())
    doc = {"peer": address, "role": role, "policy": ha.policy, **rnd.summary(),
           "duration_ms": round((rnd.ended - rnd.started) * 1000, 1)}
    if args.json:
        print_json(doc)
    else:
        print(f"peer {address} ({'slave' if role == 'master' else 'master'}), policy {ha.policy}")
        for r in rnd.results + rnd.witnesses:
            rtt = f"{r.rtt * 1000:8.2f} ms" if r.rtt is not None else "        -  "
            state = "ok" if r.ok else ("FAILED (host answered)" if r.reachable else
                                       ("no answer yet" if r.pending else "FAILED"))
            print(f"  {r.probe:<10} {r.target:<28} {rtt}  {state}  {r.detail}".rstrip())
        verdict = "UP" if rnd.good else f"DOWN ({rnd.reason})"
        print(f"verdict: {verdict} in {doc['duration_ms']} ms (one round; the daemon needs "
              f"{ha.fall} bad rounds to declare it down)")
        if rnd.witnesses and not rnd.witness_ok:
            print("warning: no witness reachable: this node would consider itself isolated")
    return ExitCode.OK if rnd.good else ExitCode.FAILED


def _copy_back(args, loaded) -> int:
    import asyncio

    from wazod.errors import WrongRole
    from wazod.ha.advice import COPY_BACK_STATE
    from wazod.state import StateStore
    from wazod.sync import copy_back

    cfg = loaded.config
    if cfg.role != "slave":
        raise WrongRole(f"copy-back runs on the slave (this node is {cfg.role}): it copies the slave's files "
                        "to the master")
    res = asyncio.run(copy_back(cfg, timeout=cfg.ha.copy_back_timeout))
    if res.ok:
        StateStore(cfg.node.state_dir).write(COPY_BACK_STATE, {})  # the status line goes away
    doc = {"ok": res.ok, "files": res.files, "bytes": res.bytes, "error": res.error}
    if args.json:
        print_json(doc)
    elif res.ok:
        print(f"copy-back ok: {res.files} file(s), {res.bytes} byte(s) copied to {cfg.ha.remote_address}")
    else:
        print(f"copy-back FAILED: {res.error}", file=sys.stderr)
    return ExitCode.OK if res.ok else ExitCode.FAILED


def _services(args, loaded) -> int:
    import asyncio

    from wazod.errors import LockHeld
    from wazod.events import open_emitter
    from wazod.ha import services as svc

    cfg = loaded.config
    ha = cfg.ha
    if args.action == "status":
        state = asyncio.run(svc.status(ha.services))
        if args.json:
            print_json({"services": state, "backend": ha.services.backend})
        else:
            print(f"services: {state} ({ha.services.backend} backend)")
        return ExitCode.OK if state == "running" else ExitCode.FAILED

    emitter = open_emitter(cfg)

    name = "ha_takeover" if args.action == "start" else "ha_failback"
    mode = 0 if args.action == "start" else 1

    async def berofos():
        try:
            from wazod.berofos import apply_mode

        except ImportError:
            return "not available"
        results = await apply_mode(cfg, mode, emitter)
        return [{"name": r.name, "ok": r.ok, "mode": r.mode, "error": r.error} for r in results]

    async def run():
        async with svc.services_lock(cfg.node.state_dir, wait=0):
            emitter.emit(f"{name}_started", {"manual": True})
            if args.action == "start":  # lines to this node at Wazo's point of the start sequence
                return await svc.run_action(ha.services, "start", hook=berofos)
            switched = await berofos()  # as Wazo's stop did: lines back to the master
            report = await svc.run_action(ha.services, "stop")
            report.hook_result = switched
            return report

    try:
        try:
            report = asyncio.run(run())
        except LockHeld as e:
            raise WazodError(f"{e}: a takeover, failback or another 'wazod services' is running",
                             ExitCode.LOCKED) from None
        data = {"manual": True, "duration": round(report.duration, 3), "steps": report.to_dict()["steps"],
                "skipped": report.skipped, "berofos": report.hook_result}
        if report.ok:
            emitter.emit(f"{name}_completed", data)
        else:
            emitter.emit(f"{name}_failed", {**data, "failed_step": report.failed_step, "error": report.error})
    finally:
        emitter.store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"services {args.action}: {'ok' if report.ok else 'FAILED'} in {report.duration:.2f} s"
              + (" (already running: steps skipped)" if report.skipped else ""))
        for s in report.steps:
            mark = "skipped" if s.skipped else ("ok" if s.ok else "FAILED")
            print(f"  {s.step:<36} {mark:<8} {s.duration:6.2f} s" + (f"  {s.error}" if s.error else "")
                  + (f"  ({s.note})" if s.note else ""))
    if not report.ok:
        print(f"wazod: services {args.action} failed at step '{report.failed_step}': {report.error}", file=sys.stderr)
    return ExitCode.OK if report.ok else ExitCode.FAILED
