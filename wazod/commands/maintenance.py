"""``wazod maintenance on [--for DURATION] [--reason TEXT] | off | status [--json]``.

The command writes this node's state file itself, so it works with the daemon
down (the running daemon notices the file change at once), emits
``maintenance_started`` / ``maintenance_ended``, then tells the peer through
the peer's status endpoint. A peer that cannot be reached is not a failure:
the command says so on stderr, exits 0, and the local daemon keeps trying to
tell the peer every ``maintenance.peer_retry_interval`` seconds.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from wazod.commands import print_json
from wazod.errors import ExitCode, WazodError

if TYPE_CHECKING:
    from wazod.maintenance.peer import PeerAnswer
    from wazod.maintenance.state import MaintenanceState


def register(sub, common) -> None:
    p = sub.add_parser("maintenance", parents=[common],
                       help="hold HA actions, replication and sync on this node and its peer (upgrades, repairs)")
    msub = p.add_subparsers(dest="maintenance_action", metavar="ACTION")
    msub.required = True

    on = msub.add_parser("on", parents=[common], help="switch maintenance on (ends by itself after --for)")
    on.add_argument("--for", dest="duration", metavar="DURATION",
                    help="how long: seconds (3600) or 90m, 2h, 1h30m (default maintenance.default_duration)")
    on.add_argument("--reason", help="why, shown in wazod status on both nodes")
    on.add_argument("--local", action="store_true", help="this node only: do not tell the peer")
    on.add_argument("--json", action="store_true", help="print the result as JSON")
    on.set_defaults(handler=_on)

    off = msub.add_parser("off", parents=[common], help="switch maintenance off; HA decides afresh")
    off.add_argument("--local", action="store_true", help="this node only: do not tell the peer")
    off.add_argument("--json", action="store_true", help="print the result as JSON")
    off.set_defaults(handler=_off)

    st = msub.add_parser("status", parents=[common], help="whether maintenance is on, who set it, why, until when")
    st.add_argument("--peer", action="store_true", help="also ask the peer's status endpoint for its view")
    st.add_argument("--json", action="store_true", help="print the state as JSON")
    st.set_defaults(handler=_status)


def current_user() -> str:
    """Who typed the command: the sudo caller when there is one, else the effective user."""
    import pwd

    sudo = os.environ.get("SUDO_USER")
    if sudo:
        return sudo
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _state(config) -> MaintenanceState:
    from wazod.maintenance.state import MaintenanceState

    return MaintenanceState(config.node.state_dir, config.node_name)


def _will_tell(args, config) -> bool:
    from wazod.maintenance.peer import peer_base_url  # aiohttp: only when the peer is told or asked

    return not args.local and config.maintenance.tell_peer and peer_base_url(config) is not None


def _tell(config, state: MaintenanceState, record: dict, mark: bool = True) -> PeerAnswer:
    import asyncio

    from wazod.maintenance.peer import request_for, tell_peer

    answer = asyncio.run(tell_peer(config, request_for(record)))
    if mark and record.get("rev"):
        try:
            state.mark_peer_told(record["rev"], answer.ok)
        except WazodError:
            pass  # the daemon holds the lock this instant; it retries telling the peer itself
    return answer


def _open_emitter(config):
    import sqlite3

    from wazod.events import open_emitter

    try:
        return open_emitter(config)
    except (OSError, sqlite3.Error) as e:
        raise _unwritable(config, e) from None


def _unwritable(config, e: Exception) -> WazodError:
    where = getattr(e, "filename", None) or config.node.state_dir
    return WazodError(f"cannot write the maintenance state in {where}: {getattr(e, 'strerror', None) or e} "
                      "(run it as the user the daemon runs as, usually root)")


def _on(args, loaded) -> int:
    from wazod.maintenance.duration import format_duration, parse_duration
    from wazod.maintenance.state import clean_reason

    config = loaded.config
    section = config.maintenance
    duration = parse_duration(args.duration) if args.duration else section.default_duration
    if duration > section.max_duration:
        raise WazodError(f"--for {args.duration}: longer than maintenance.max_duration "
                         f"({format_duration(section.max_duration)})", ExitCode.USAGE)
    reason = clean_reason(args.reason)
    tell = _will_tell(args, config)
    state = _state(config)
    emitter = _open_emitter(config)
    try:
        record, _ = state.switch_on(duration=duration, reason=reason, user=current_user(), node=config.node_name,
                                    emitter=emitter, peer_told=False if tell else None)
    except OSError as e:
        raise _unwritable(config, e) from None
    finally:
        emitter.store.close()
    answer = _tell(config, state, record) if tell else None
    return _report(args, config, record, answer, f"maintenance on for {format_duration(duration)}")


def _off(args, loaded) -> int:
    config = loaded.config
    tell = _will_tell(args, config)
    state = _state(config)
    emitter = _open_emitter(config)
    try:
        record, changed = state.switch_off(user=current_user(), node=config.node_name, emitter=emitter,
                                           peer_told=False if tell else None)
    except OSError as e:
        raise _unwritable(config, e) from None
    finally:
        emitter.store.close()
    if not changed:
        record = {**record, "active": False, "ended_by": f"{current_user()}@{config.node_name}"}
    # told even when it was not on here: the operator wants the pair out of maintenance
    answer = _tell(config, state, record, mark=changed) if tell else None
    return _report(args, config, record, answer, "maintenance off" if changed else "maintenance was not on")


def _save_for_status(config, record: dict) -> None:
    """With the daemon down, ``wazod status`` answers from status.json: put the change there too.
    (A running daemon publishes it itself within ``maintenance.watch_interval``; writing its file
    behind its back could undo a newer write of its own.)"""
    from wazod.maintenance.state import status_view
    from wazod.state import StateStore
    from wazod.status_view import daemon_running

    if not daemon_running(config.node.state_dir):
        StateStore(config.node.state_dir).update("status", maintenance=status_view(record))


def _report(args, config, record: dict, answer: PeerAnswer | None, head: str) -> int:
    from wazod.maintenance.state import status_view

    _save_for_status(config, record)
    if args.json:
        doc = {"node": config.node_name, "maintenance": status_view(record)}
        doc["peer"] = None if answer is None else {"told": answer.ok, "url": answer.url, "detail": answer.detail,
                                                   "changed": answer.changed}
        print_json(doc)
    else:
        view = status_view(record)
        if view["active"]:
            why = f": {view['reason']}" if view.get("reason") else ""
            print(f"{head}, until {view['until']}, set by {view['set_by']}{why}")
            print("  HA takes no action (no takeover, failback, berofos change or service move); "
                  "scheduled replication and sync are held")
        else:
            print(f"{head}; HA decides afresh from new probe rounds")
        if answer is None:
            if args.local or not config.maintenance.tell_peer:
                print("  peer not told (this node only)")
            else:
                print("  no peer to tell (HA disabled or no remote address)")
        elif answer.ok:
            print(f"  peer told ({answer.url})" + ("" if answer.changed else ": it was already in that state"))
    if answer is not None and not answer.ok:
        retry = config.maintenance.peer_retry_interval
        print(f"wazod: warning: the peer could not be told ({answer.url}): {answer.detail}; "
              f"set on this node only (a running daemon retries every {retry:g} s)", file=sys.stderr)
    return ExitCode.OK


def _status(args, loaded) -> int:
    import asyncio

    from wazod.maintenance.state import is_active, status_view

    config = loaded.config
    record = _state(config).read()
    view = status_view(record)
    now = time.time()
    if view["active"]:
        view["remaining_s"] = round(record["until_ts"] - now, 1)
    elif record.get("active") and not is_active(record, now):
        view["expired_unrecorded"] = True  # the daemon records the end (and its event) at its next look
    if args.peer:
        from wazod.maintenance.peer import ask_peer

    peer = asyncio.run(ask_peer(config)) if args.peer else None
    if args.json:
        doc = {"node": config.node_name, "maintenance": view}
        if peer is not None:
            doc["peer"] = {"reached": peer.ok, "url": peer.url, "detail": peer.detail, "maintenance": peer.record}
        print_json(doc)
        return ExitCode.OK
    _print_view(config.node_name, view)
    if peer is not None:
        if peer.ok and isinstance(peer.record, dict):
            _print_view(f"the peer ({peer.url})", {"active": False, **peer.record})
        else:
            print(f"wazod: warning: the peer's view is unknown ({peer.url}): {peer.detail}", file=sys.stderr)
    return ExitCode.OK


def _print_view(where: str, view: dict) -> None:
    from wazod.maintenance.duration import format_duration

    if view["active"]:
        why = f"\n  reason: {view['reason']}" if view.get("reason") else ""
        origin = " (asked by the peer)" if view.get("origin") == "peer" else ""
        left = f" (in {format_duration(view['remaining_s'])})" if "remaining_s" in view else ""
        print(f"maintenance ON on {where}{origin}\n  set by {view['set_by']} at {view['since']}\n"
              f"  until {view['until']}{left}{why}")
        if view.get("peer_told") is False:
            print("  the peer has not been told yet")
    else:
        print(f"maintenance off on {where}")
        last = view.get("last")
        if last:
            by = f" by {last['ended_by']}" if last.get("ended_by") else ""
            print(f"  last: set by {last['set_by']} at {last['since']}, ended {last['ended_at']}{by} "
                  f"({last['cause']})")
