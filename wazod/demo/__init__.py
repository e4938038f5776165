"""``wazod demo``: the whole story of a Wazo HA pair on one machine, in about a minute.

Two PostgreSQL clusters with a small Wazo-like database, two real wazod
daemons (master and slave), stand-in telephony services (a real process that
answers SIP OPTIONS), a berofos simulator and, when installed, a mosquitto
broker. The narration is the event stream itself: every line is an event a
subscriber of the bus would see (or, without a broker, read from the nodes'
outboxes). The demo exits 0 when every step happened, 1 naming the steps
that did not, and cleans everything up, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wazod.demo.lab import PY, Host, Lab, LabError, make_keypair, start_mosquitto, start_sshd, wait_port
from wazod.lab import wazo_schema

MASTER_UUID = "aaaaaaaa-0000-4000-8000-00000000000a"
SLAVE_UUID = "bbbbbbbb-0000-4000-8000-00000000000b"
DEMO_HA = {"failback_hold": 5.0}  # shorter than production so the story fits in a minute
SHOWN_KEYS = ("mode", "device", "tables", "rows", "files", "bytes", "copied_back", "copy_back", "duration",
              "detection_seconds", "error", "reason", "skipped_paths", "state", "services")


@dataclass
class Step:
    name: str
    ok: bool | None = None
    detail: str = ""


@dataclass
class Story:
    t0: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    new_event: asyncio.Event = field(default_factory=asyncio.Event)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        print(f"  {self.elapsed():6.1f}s  {text}", flush=True)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def add_event(self, ev: dict[str, Any]) -> None:
        ev = dict(ev)
        ev["_seen"] = time.monotonic()
        self.events.append(ev)
        data = ev.get("data") or {}
        shown = {k: data[k] for k in SHOWN_KEYS if k in data}
        if not shown and data:
            shown = dict(list(data.items())[:3])
        detail = " ".join(f"{k}={_short(v)}" for k, v in shown.items())
        print(f"  {self.elapsed():6.1f}s  \033[36m{ev['node']:<11}\033[0m {ev['name']:<24} {detail}"
              if sys.stdout.isatty() else
              f"  {self.elapsed():6.1f}s  {ev['node']:<11} {ev['name']:<24} {detail}", flush=True)
        self.new_event.set()

    async def wait_event(self, node: str, name: str, after: float = 0.0, timeout: float = 60.0,
                         where=None) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev["node"] == node and ev["name"] == name and ev["_seen"] >= after and (where is None or where(ev)):
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.new_event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.new_event.wait(), min(remaining, 0.5))

    def step(self, name: str, ok: bool, detail: str = "") -> bool:
        self.steps.append(Step(name, ok, detail))
        if not ok:
            self.say(f"STEP FAILED: {name}" + (f" ({detail})" if detail else ""))
        return ok


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class Node:
    """One wazod node of the demo: its tree, database, sshd, config and daemon."""

    def __init__(self, lab: Lab, host: Host, role: str):
        self.lab = lab
        self.host = host
        self.role = role
        self.dir = lab.root / role
        self.tree = self.dir / "root"  # the node's "/" for sync, backup and copy-back
        self.state_dir = self.dir / "state"
        self.config_path = self.dir / "config.yml"
        self.daemon: subprocess.Popen | None = None
        self.pg_port = 0
        self.ssh_port = 0
        self.host_key = ""
        self.dir.mkdir()
        self.tree.mkdir()

    @property
    def name(self) -> str:
        return self.host.name

    def dsn(self, host: str | None = None) -> str:
        return f"postgresql://postgres@{host or self.host.addr}:{self.pg_port}/asterisk"

    def wazod(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.lab.run([PY, "-m", "wazod", *args, "--config", str(self.config_path)], host=self.host,
                            check=False, timeout=timeout)

    def start_daemon(self) -> None:
        self.daemon = self.lab.spawn([PY, "-m", "wazod", "run", "--config", str(self.config_path)], host=self.host,
                                     log=f"{self.role}-daemon.log")

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.lab.stop_proc(self.daemon, timeout=30)
            self.daemon = None


def _sip_argv(host: Host, port: int, pidfile: Path, *extra: str) -> list[str]:
    return [PY, "-m", "wazod.lab.sip_standin", "--host", host.addr, "--port", str(port), "--pidfile", str(pidfile), *extra]


def write_configs(lab: Lab, master: Node, slave: Node, *, sip_port: int, status_port: int, mqtt_port: int | None,
                  key: Path, sim_port: int, known_hosts: dict[str, Path]) -> None:
    for node, peer in ((master, slave), (slave, master)):
        pidfile = node.dir / "asterisk.pid"
        lab.track_pidfile(pidfile)  # the stand-in detaches: stopped by its pid file when the lab closes
        services = {
            "backend": "command",
            "start": [_sip_argv(node.host, sip_port, pidfile, "--daemon")],
            "stop": [_sip_argv(node.host, sip_port, pidfile, "--stop")],
            "status": _sip_argv(node.host, sip_port, pidfile, "--status"),
            "step_timeout": 20.0, "retries": 2,
        }
        broker = None
        if mqtt_port:
            broker = lab.broker_addr
        cfg: dict[str, Any] = {
            "node": {"name": node.name, "state_dir": str(node.state_dir),
                     "uuid_file": str(node.tree / "etc/profile.d/xivo_uuid.sh"), "stop_timeout": 20.0},
            "ha": {"node_type": node.role, "remote_address": peer.host.addr, "ha_conf": str(node.dir / "ha.conf"),
                   "marker_dir": None, "sip_port": sip_port, "services": services, **DEMO_HA},
            # the story runs replication and sync by hand, as the hourly schedule would
            "replication": {"source_dsn": node.dsn(), "continuous": False,
                            "target_dsn": f"postgresql://postgres@{{remote_address}}:{peer.pg_port}/asterisk"},
            "sync": {"ssh_key": str(key), "ssh_port": peer.ssh_port, "continuous": False, "remote_user": _user(),
                     "remote_root": str(peer.tree), "local_root": str(node.tree),
                     "known_hosts": str(known_hosts[node.role])},
            "backup": {"dir": str(node.dir / "backups"), "root": str(node.tree), "dsn": node.dsn()},
            "purge": {"dsn": node.dsn()},
            "berofos": {"config": str(lab.root / "bnfos.conf"), "drift_interval": 3.0},
            "bus": {"mqtt": {"host": broker, "port": mqtt_port or 1883, "topic_prefix": "wazod"}},
            "status": {"listen": f"{node.host.addr}:{status_port}"},
        }
        node.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def populate_tree(node: Node, uuid: str) -> None:
    t = node.tree
    (t / "etc/profile.d").mkdir(parents=True)
    (t / "etc/profile.d/xivo_uuid.sh").write_text(f"export XIVO_UUID={uuid}\n")
    if node.role == "master":
        files = {
            "etc/asterisk/extensions_extra.d/demo-ivr.conf": "[demo-ivr]\nexten = s,1,Answer()\n",
            "etc/xivo/asterisk/xivo_globals.conf": "[globals]\nDEMO=1\n",
            "var/lib/asterisk/moh/default/jazz.wav": "RIFF" + "m" * 4000,
            "var/lib/wazo/sounds/tenants/t1/playback/welcome.wav": "RIFF" + "w" * 2000,
            "var/lib/wazo/sounds/tenants/t1/monitor/call-1.wav": "RIFF" + "r" * 1000,  # never synced
            "etc/asterisk/pjsip.conf": "[global]\n",
            "etc/hostname": "pbx-master\n",
            "var/spool/asterisk/voicemail/default/1002/INBOX/msg0000.txt": "[message]\ncallerid=1003\n",
        }
    else:
        files = {"etc/hostname": "pbx-slave\n", "etc/asterisk/extensions_extra.d/stale.conf": "; removed on master\n"}
    for rel, text in files.items():
        p = t / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


async def narrate_outboxes(story: Story, nodes: list[Node], stop: asyncio.Event) -> None:
    """Without a broker: read each node's durable outbox, in order, as a subscriber would."""
    from wazod.events import EventStore

    cursors = {n.name: 0 for n in nodes}
    stores: dict[str, EventStore] = {}
    while not stop.is_set():
        for n in nodes:
            db = n.state_dir / "events.sqlite3"
            if n.name not in stores and db.exists():
                stores[n.name] = EventStore(db)
            store = stores.get(n.name)
            if store is None:
                continue
            for ev in store.after(cursors[n.name]):
                cursors[n.name] = ev["seq"]
                story.add_event(ev)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    for store in stores.values():
        store.close()


async def narrate_bus(story: Story, host: str, port: int, stop: asyncio.Event, ready: asyncio.Event) -> None:
    """With a broker: subscribe to every node's events, exactly as `wazod events --follow` does."""
    import aiomqtt

    async with aiomqtt.Client(host, port, identifier=f"wazod-demo-{os.getpid()}") as client:
        await client.subscribe("wazod/+/events/#", qos=1)
        ready.set()
        async for message in client.messages:
            with contextlib.suppress(ValueError, KeyError):
                story.add_event(json.loads(message.payload))
            if stop.is_set():
                break


def read_sim_mode(lab: Lab, host: str, port: int) -> int | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/_sim/state", timeout=3) as r:  # noqa: S310 (local simulator)
            return int(json.loads(r.read())["mode"])
    except Exception:
        return None


async def run_story(lab: Lab, story: Story) -> None:
    print(f"wazod demo: a Wazo HA pair on this machine ({'two network namespaces' if lab.netns_mode else 'loopback'})")
    print(f"  lab directory: {lab.root}\n")
    master = Node(lab, lab.master, "master")
    slave = Node(lab, lab.slave, "slave")
    nodes = [master, slave]

    story.say("setting up: two PostgreSQL clusters, sshd on each node, berofos simulator, broker")
    master.pg_port = lab.start_postgres(master.host, "master")
    slave.pg_port = lab.start_postgres(slave.host, "slave")
    for node, uuid, users in ((master, MASTER_UUID, 200), (slave, SLAVE_UUID, 20)):
        lab.run(["psql", "-X", "-q", "-d", node.dsn().rsplit("/", 1)[0] + "/postgres", "-c", "CREATE DATABASE asterisk"],
                host=node.host)
        lab.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", node.dsn(), "-f", "-"], host=node.host,
                input=wazo_schema.SCHEMA_SQL + wazo_schema.populate_sql(users=users, log_rows=500, node_uuid=uuid))
        populate_tree(node, uuid)
    key = make_keypair(lab.root / "demo_key")
    known_hosts = {}
    for node in nodes:
        node.ssh_port, node.host_key = start_sshd(lab, node.host, node.role, Path(str(key) + ".pub"))
    for node, peer in ((master, slave), (slave, master)):
        kh = node.dir / "known_hosts"
        target = peer.host.addr if peer.ssh_port == 22 else f"[{peer.host.addr}]:{peer.ssh_port}"
        kh.write_text(f"{target} {peer.host_key}\n")
        known_hosts[node.role] = kh
    sim_host = lab.broker_addr
    sim_port = 8080 if lab.netns_mode else lab_free_port(sim_host)
    sim_env = dict(os.environ, BNFOS_SIM_LOGIN="admin:demo-secret")
    lab.spawn([PY, "-m", "wazod.berofos.simulator", "--host", sim_host, "--port", str(sim_port), "--digest",
               "--mode", "1"], log="berofos-sim.log", env=sim_env)
    wait_port(sim_host, sim_port)
    (lab.root / "bnfos.conf").write_text(f"[fos1]\nmac = 00:19:32:00:12:1D\nhost = {sim_host}:{sim_port}\n"
                                         "login = admin:demo-secret\n")
    mqtt_port = start_mosquitto(lab, [lab.broker_addr])
    sip_port = 5060 if lab.netns_mode else lab_free_port(master.host.addr)
    status_port = 9599 if lab.netns_mode else lab_free_port(master.host.addr)
    write_configs(lab, master, slave, sip_port=sip_port, status_port=status_port, mqtt_port=mqtt_port, key=key,
                  sim_port=sim_port, known_hosts=known_hosts)

    stop = asyncio.Event()
    if mqtt_port:
        ready = asyncio.Event()
        narrator = asyncio.create_task(narrate_bus(story, lab.broker_addr, mqtt_port, stop, ready))
        await asyncio.wait_for(ready.wait(), 15)
        story.say(f"events below come from the MQTT bus (mosquitto on {lab.broker_addr}:{mqtt_port})")
    else:
        narrator = asyncio.create_task(narrate_outboxes(story, nodes, stop))
        story.say("events below come from the nodes' outboxes (mosquitto is not installed)")

    try:
        await _story_steps(lab, story, master, slave, sim_host, sim_port)
    finally:
        stop.set()
        await asyncio.sleep(0.3)
        narrator.cancel()
        with contextlib.suppress(BaseException):
            await narrator
        for node in nodes:
            node.stop_daemon()


def lab_free_port(host: str) -> int:
    from wazod.demo.lab import free_port

    return free_port(host)


async def _story_steps(lab: Lab, story: Story, master: Node, slave: Node, sim_host: str, sim_port: int) -> None:
    # the master's Asterisk runs from the start (the master holds the services)
    lab.run(_sip_argv(master.host, _cfg(master)["ha"]["sip_port"], master.dir / "asterisk.pid", "--daemon"),
            host=master.host)
    master.start_daemon()
    slave.start_daemon()
    t = time.monotonic()
    ok = bool(await story.wait_event(master.name, "daemon_started", t - 30, 30)) and \
        bool(await story.wait_event(slave.name, "daemon_started", t - 30, 30))
    if not story.step("both daemons started", ok):
        return

    # 1. replication and file sync, as the hourly schedule would run them
    story.say("master: replicating the database to the slave (wazod replicate)")
    t = time.monotonic()
    out = await asyncio.to_thread(master.wazod, "replicate")
    ev = await story.wait_event(master.name, "replication_completed", t, 30)
    story.step("database replicated", out.returncode == 0 and ev is not None, out.stderr.strip()[-300:])
    if ev:
        story.marks["rows"] = (ev.get("data") or {}).get("rows")
    story.say("master: syncing files to the slave (wazod sync)")
    t = time.monotonic()
    out = await asyncio.to_thread(master.wazod, "sync")
    ev = await story.wait_event(master.name, "sync_completed", t, 30)
    synced = (slave.tree / "etc/asterisk/extensions_extra.d/demo-ivr.conf").exists()
    story.step("files synced", out.returncode == 0 and ev is not None and synced, out.stderr.strip()[-300:])

    # 2. a backup: a fresh node has none, so each daemon takes its first one right after start
    story.say("master: first backup of a fresh node (taken by the daemon at start, as no backup exists)")
    ev = await story.wait_event(master.name, "backup_completed", 0.0, 60)
    detail = ""
    if ev is None:  # not seen: take one by hand, exactly as the schedule would
        out = await asyncio.to_thread(master.wazod, "backup")
        ev = await story.wait_event(master.name, "backup_completed", 0.0, 10)
        detail = out.stderr.strip()[-300:]
    story.step("backup taken", ev is not None and (master.dir / "backups/db.tgz").exists(), detail)

    # 3. the master fails
    standby = await _wait_status(slave, "standby", 30)
    story.step("slave on standby", standby)
    story.say("*** the master fails: " + ("cut off from the network (nftables drops everything)" if lab.netns_mode
                                         else "its Asterisk and daemon are stopped"))
    story.mark("failure")
    fail_t = time.monotonic()
    if lab.netns_mode:
        lab.cut_off(master.host)
    else:  # Asterisk dies first (that is the failure the slave must see), then the daemon goes too
        lab.run(_sip_argv(master.host, _cfg(master)["ha"]["sip_port"], master.dir / "asterisk.pid", "--stop"),
                host=master.host, check=False)
        master.stop_daemon()
    down = await story.wait_event(slave.name, "ha_master_down", fail_t, 30)
    story.step("slave detected the failure", down is not None)
    if down:
        story.marks["detected"] = down["_seen"]
    done = await story.wait_event(slave.name, "ha_takeover_completed", fail_t, 60)
    story.step("slave took over", done is not None)
    if done:
        story.marks["taken_over"] = done["_seen"]
    mode = read_sim_mode(lab, sim_host, sim_port)
    story.step("berofos lines on the slave (mode 0)", mode == 0, f"mode {mode}")
    story.step("slave services running", _standin_running(lab, slave))

    # 4. a voicemail is left on the slave during the outage
    vm = slave.tree / "var/spool/asterisk/voicemail/default/1001/INBOX/msg0000.txt"
    vm.parent.mkdir(parents=True, exist_ok=True)
    vm.write_text("[message]\ncallerid=\"Alice\" <1003>\norigdate=during the outage\n")
    (vm.parent / "msg0000.wav").write_bytes(b"RIFF" + os.urandom(8000))
    story.say("a caller leaves a voicemail on the slave (voicemail/default/1001/INBOX/msg0000)")

    # 5. the master comes back
    await asyncio.sleep(1.0)
    story.say("*** the master comes back")
    back_t = time.monotonic()
    story.mark("back")
    if lab.netns_mode:
        lab.reconnect(master.host)
    else:
        lab.run(_sip_argv(master.host, _cfg(master)["ha"]["sip_port"], master.dir / "asterisk.pid", "--daemon"),
                host=master.host)
        master.start_daemon()
    up = await story.wait_event(slave.name, "ha_master_up", back_t, 40)
    story.step("slave saw the master back", up is not None)
    fb = await story.wait_event(slave.name, "ha_failback_completed", back_t, 90)
    story.step("slave gave the services back", fb is not None)
    if fb:
        story.marks["failed_back"] = fb["_seen"]
        data = fb.get("data") or {}
        story.marks["copied_back"] = data.get("copied_back", data.get("copy_back", {}))
    copied = (master.tree / "var/spool/asterisk/voicemail/default/1001/INBOX/msg0000.wav").exists()
    story.step("voicemail copied back to the master", copied)
    mode = read_sim_mode(lab, sim_host, sim_port)
    story.step("berofos lines back on the master (mode 1)", mode == 1, f"mode {mode}")
    story.step("slave services stopped", not _standin_running(lab, slave))
    await asyncio.sleep(0.5)


def _cfg(node: Node) -> dict:
    return yaml.safe_load(node.config_path.read_text())


def _standin_running(lab: Lab, node: Node) -> bool:
    out = lab.run(_sip_argv(node.host, _cfg(node)["ha"]["sip_port"], node.dir / "asterisk.pid", "--status"),
                  host=node.host, check=False)
    return out.returncode == 0


async def _wait_status(node: Node, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            doc = json.loads((node.state_dir / "status.json").read_text())
            if doc.get("ha_state") == state:
                return True
        await asyncio.sleep(0.2)
    return False


def summary(story: Story) -> str:
    m = story.marks

    def span(a: str, b: str) -> str:
        return f"{m[b] - m[a]:.1f} s" if a in m and b in m else "-"

    copied = m.get("copied_back")
    files = copied.get("files") if isinstance(copied, dict) else copied
    rows = [
        ("detection time (failure -> master down)", span("failure", "detected")),
        ("takeover time (failure -> services on the slave)", span("failure", "taken_over")),
        ("failback time (master back -> services given back)", span("back", "failed_back")),
        ("rows replicated", str(m.get("rows", "-"))),
        ("files copied back", str(files if files is not None else "-")),
    ]
    width = max(len(r[0]) for r in rows)
    lines = ["", "summary", "-" * (width + 14)]
    lines += [f"{label:<{width}}  {value:>10}" for label, value in rows]
    ok = sum(1 for s in story.steps if s.ok)
    lines += ["-" * (width + 14), f"steps: {ok} of {len(story.steps)} happened"]
    failed = [s for s in story.steps if not s.ok]
    for s in failed:
        lines.append(f"  did not happen: {s.name}" + (f" ({s.detail})" if s.detail else ""))
    return "\n".join(lines) + "\n"


def run_demo(force_loopback: bool = False, keep: bool = False) -> int:
    story = Story()
    lab: Lab | None = None
    interrupted = False

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        lab = Lab.create(force_loopback=force_loopback)
        asyncio.run(run_story(lab, story))
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: cleaning up", flush=True)
    except LabError as e:
        story.step("lab set up", False, str(e))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if lab is not None:
            if keep:
                kept = shutil.copytree(lab.root, f"{lab.root}-kept", symlinks=True,
                                       ignore=shutil.ignore_patterns("pg-*", "pgsock-*", "*.sock"))
                print(f"configs, logs and trees kept in {kept}")
            lab.close()
    sys.stdout.write(summary(story))
    if interrupted:
        return 1
    return 0 if story.steps and all(s.ok for s in story.steps) else 1
