"""``wazod events``: watch the events, from the bus or from this node's outbox.

Without ``--follow`` it prints the newest events kept in the local outbox
(``--last N``) and exits. With ``--follow`` it subscribes to the broker
(every node of the bus, or ``--node``) and prints events as they arrive; with
no broker configured, or with ``--local``, it follows this node's outbox
instead. One readable line per event, or JSON lines with ``--json`` (the
exact bus message). A hole in a node's ``seq`` is reported on stderr, so a
subscriber knows it missed something; repeats (QoS 1 is at least once) are
shown once. A hole in *this* node's events (a broker restart while following)
is filled from the local outbox, which holds every event this node emitted:
the missing events are printed, in order, before the one that revealed the
hole, and stderr says so.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from wazod.errors import ExitCode, WazodError

VALUE_WIDTH = 80


def register(sub, common) -> None:
    p = sub.add_parser("events", parents=[common], help="print events from the bus as they arrive")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing events as they arrive")
    p.add_argument("--json", action="store_true", help="one JSON object per line (the bus message)")
    p.add_argument("--node", metavar="N", help="only events of node N")
    p.add_argument("--name", metavar="PATTERN", help="only events whose name matches PATTERN (shell-style: ha_*)")
    p.add_argument("--local", action="store_true", help="read this node's outbox, not the broker")
    p.add_argument("--last", type=int, default=20, metavar="N",
                   help="without --follow: how many of the newest stored events to print (default 20)")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after printing N events")
    p.set_defaults(handler=_events)


# -- rendering -------------------------------------------------------------------

def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def render_line(event: dict[str, Any]) -> str:
    """``date HH:MM:SS ZONE node #seq name key=value ...`` in local time with its zone, secrets masked."""
    import datetime as dt

    from wazod.secrets import mask

    try:
        when = dt.datetime.fromisoformat(str(event.get("timestamp"))).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    except ValueError:
        when = str(event.get("timestamp"))
    data = mask(event.get("data") or {})
    parts = [f"{k}={_short(v)}" for k, v in data.items()] if isinstance(data, dict) else [_short(data)]
    return " ".join([when, str(event.get("node")), f"#{event.get('seq')}", str(event.get("name")), *parts])


class SeqTracker:
    """Per node (and installation), the last seq seen: names holes, filters repeats."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}

    def check(self, event: dict[str, Any]) -> tuple[bool, str | None]:
        """(show it?, a note for stderr or None)."""
        key = (str(event.get("node")), str(event.get("origin_uuid")))
        seq = event.get("seq")
        if not isinstance(seq, int):
            return True, None
        last = self.last.get(key)
        if last is not None and seq <= last:
            if seq == 1:  # the node's event store was reset: start over
                self.last[key] = seq
                return True, f"{key[0]}: seq restarted at 1"
            return False, None  # a repeat: QoS 1 delivers at least once
        self.last[key] = seq
        if last is not None and seq > last + 1:
            missing = seq - last - 1
            span = f"{last + 1}" if missing == 1 else f"{last + 1}..{seq - 1}"
            return True, f"gap: {key[0]} missed seq {span} ({missing} event{'s' if missing > 1 else ''})"
        return True, None


class Printer:
    def __init__(self, args, filler=None) -> None:
        self.as_json = args.json
        self.node = args.node
        self.pattern = args.name
        self.remaining = args.count
        self.tracker = SeqTracker()
        # filler(event, first_seq, last_seq) -> [(event, raw)]: this node's missed events, from its outbox
        self.filler = filler

    def _fill(self, event: dict[str, Any]) -> bool:
        """Print this node's events missed before ``event`` (from the outbox); False once --count is reached."""
        key = (str(event.get("node")), str(event.get("origin_uuid")))
        last, seq = self.tracker.last.get(key), event.get("seq")
        if self.filler is None or last is None or not isinstance(seq, int) or seq <= last + 1:
            return True
        found = self.filler(event, last + 1, seq - 1)
        if found and self.pattern is None:
            print(f"wazod events: {key[0]} seq {last + 1}..{seq - 1} not received from the bus: "
                  f"{len(found)} filled from the local outbox", file=sys.stderr, flush=True)
        for missed, raw in found:
            if self.wants(missed):
                show, _ = self.tracker.check(missed)
                if show and not self._print(missed, raw):
                    return False
        return True

    def _print(self, event: dict[str, Any], raw: str | None) -> bool:
        print(raw if (self.as_json and raw) else (json.dumps(event) if self.as_json else render_line(event)),
              flush=True)
        if self.remaining is not None:
            self.remaining -= 1
            return self.remaining > 0
        return True

    def wants(self, event: dict[str, Any]) -> bool:
        import fnmatch

        if self.node and event.get("node") != self.node:
            return False
        return not (self.pattern and not fnmatch.fnmatchcase(str(event.get("name")), self.pattern))

    def feed(self, event: dict[str, Any], raw: str | None = None) -> bool:
        """Print one event if it passes the filters; False once --count is reached."""
        if not self.wants(event):
            return True
        if not self._fill(event):
            return False
        show, note = self.tracker.check(event)
        if note and (self.pattern is None or not note.startswith("gap")):  # --name makes holes normal
            print(f"wazod events: {note}", file=sys.stderr, flush=True)
        if not show:
            return True
        return self._print(event, raw)


# -- sources ---------------------------------------------------------------------

def _open_local(config):
    from wazod.bus.outbox import OutboxReader, store_path

    try:
        return OutboxReader(store_path(config.state_dir), "cli", readonly=True)
    except FileNotFoundError as e:
        raise WazodError(str(e), ExitCode.FAILED) from None


def _print_stored(reader, printer: Printer, events) -> bool:
    for stored in events:
        try:
            event = json.loads(stored.body)
        except ValueError:
            continue
        if not printer.feed(event, stored.body):
            return False
    return True


async def _follow_local(config, printer: Printer) -> None:
    import asyncio

    reader = _open_local(config)
    try:
        seq = reader.last_seq()  # before saying we follow: anything after this is printed
        print(f"wazod events: following the outbox of {config.node_name} ({reader.path})",
              file=sys.stderr, flush=True)
        while True:
            batch = reader.after(seq)
            if batch:
                seq = batch[-1].seq
                if not _print_stored(reader, printer, batch):
                    return
                continue
            await asyncio.sleep(0.3)
    finally:
        reader.close()


def outbox_filler(config):
    """``filler`` for Printer: this node's events ``first..last`` from its outbox (same installation only)."""

    def fill(event: dict[str, Any], first: int, last: int) -> list[tuple[dict[str, Any], str]]:
        if event.get("node") != config.node_name:
            return []
        try:
            reader = _open_local(config)
        except WazodError:
            return []
        try:
            found = []
            for stored in reader.after(first - 1, limit=last - first + 1):
                if stored.seq > last:
                    break
                try:
                    missed = json.loads(stored.body)
                except ValueError:
                    continue
                if missed.get("origin_uuid") == event.get("origin_uuid"):
                    found.append((missed, stored.body))
            return found
        finally:
            reader.close()

    return fill


async def _follow_broker(config, printer: Printer) -> None:
    import asyncio
    import uuid

    import aiomqtt

    from wazod.bus.publisher import backoff_delay, read_password, tls_context, topic_part

    mqtt = config.bus.mqtt
    node_level = topic_part(printer.node) if printer.node else "+"
    topic = f"{mqtt.topic_prefix}/{node_level}/events/#"
    attempt = 0
    while True:
        try:
            async with aiomqtt.Client(
                mqtt.host, mqtt.port, identifier=f"wazod-events-{uuid.uuid4().hex[:12]}",
                username=mqtt.username,
                password=read_password(mqtt.password_file) if mqtt.password_file else None,
                keepalive=mqtt.keepalive, timeout=mqtt.timeout, tls_context=tls_context(mqtt),
            ) as client:
                await client.subscribe(topic, qos=1)
                print(f"wazod events: following {topic} on {mqtt.host}:{mqtt.port}", file=sys.stderr, flush=True)
                attempt = 0
                async for message in client.messages:
                    raw = bytes(message.payload).decode("utf-8", "replace")
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        print(f"wazod events: not JSON on {message.topic}: {raw[:80]!r}", file=sys.stderr)
                        continue
                    if isinstance(event, dict) and not printer.feed(event, raw):
                        return
        except (aiomqtt.MqttError, OSError, ConnectionError) as e:
            delay = backoff_delay(attempt, 0.5, 10.0)
            if attempt == 0:
                print(f"wazod events: broker {mqtt.host}:{mqtt.port} unreachable ({e}); retrying",
                      file=sys.stderr, flush=True)
            attempt += 1
            await asyncio.sleep(delay)


def _events(args, loaded) -> int:
    import asyncio

    config = loaded.config
    if args.count is not None and args.count < 1:
        raise WazodError("--count must be at least 1", ExitCode.USAGE)
    if args.last < 0:
        raise WazodError("--last must be 0 or more", ExitCode.USAGE)
    printer = Printer(args)
    if not args.follow:
        reader = _open_local(config)
        try:
            _print_stored(reader, printer, reader.last(args.last))
        finally:
            reader.close()
        return ExitCode.OK
    source = _follow_local if (args.local or config.bus.mqtt.host is None) else _follow_broker
    if source is _follow_broker:
        printer.filler = outbox_filler(config)
    try:
        asyncio.run(source(config, printer))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `wazod events -f | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.OK
