"""What each entry point loads: a command imports what it needs when it runs, nothing more.

Why tested: `wazod --help`, a quick `wazod replicate` and a probing slave paid
for aiohttp, prometheus_client, pysnmp and MQTT whether they used them or not
(0.45 to 0.68 s before any work; 74 to 93 MB for a slave). A top-level import
added anywhere brings that back silently, so the tests name the libraries each
path must not load (behaviour, not timing; the timings are in bench/startup).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"pydantic", "aiohttp", "asyncpg", "structlog", "prometheus_client", "aiomqtt", "pysnmp",
         "cryptography", "apscheduler", "aio_pika", "psutil", "icmplib", "yaml"}


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"],
                         capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_help_loads_no_library_of_any_command():
    loaded = loaded_after("import wazod.cli\nwazod.cli.build_parser()")
    assert not loaded & HEAVY, f"`wazod --help` imports {sorted(loaded & HEAVY)}"


def test_help_really_prints_every_command():
    out = subprocess.run([sys.executable, "-m", "wazod", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("run", "status", "replicate", "sync", "backup", "restore", "purge", "berofos", "events",
                    "maintenance", "services", "check-master"):
        assert command in out.stdout


def test_replicate_path_loads_only_the_database_and_config_libraries(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(f"node: {{name: x, state_dir: {tmp_path / 'state'}, wazo_dir: {tmp_path / 'no'}}}\n"
                      f"ha: {{node_type: disabled, ha_conf: {tmp_path / 'ha.conf'}}}\n")
    loaded = loaded_after(
        "import wazod.cli\nfrom wazod.config import load_config\n"
        f"load_config({str(config)!r})\nimport wazod.events, wazod.jobs, wazod.replication")
    assert {"pydantic", "asyncpg"} <= loaded  # the path does load what it needs
    unexpected = loaded & (HEAVY - {"pydantic", "asyncpg", "structlog", "yaml"})
    assert not unexpected, f"the replicate path imports {sorted(unexpected)}"


@pytest.mark.parametrize("module", ["wazod.bus.publisher", "wazod.bus.snmp", "wazod.bus.wazo",
                                    "wazod.health.certificates", "wazod.berofos", "wazod.maintenance",
                                    "wazod.maintenance.daemon", "wazod.endpoint.server", "wazod.ha.monitor"])
def test_a_part_imports_its_library_only_when_it_has_work(module):
    """A slave without a broker, trap targets, certificate file or /metrics scrape does not carry their libraries."""
    loaded = loaded_after(f"import {module}")
    unexpected = loaded & {"aiomqtt", "pysnmp", "aio_pika", "cryptography", "prometheus_client"}
    assert not unexpected, sorted(unexpected)


def test_a_probing_slave_daemon_loads_only_what_it_uses(tmp_path):
    """The real daemon as a slave probing a master, with no broker, trap target, certificate or scrape."""
    import os
    import signal
    import time

    config = tmp_path / "config.yml"
    config.write_text(
        f"node: {{name: s, state_dir: {tmp_path / 'state'}, wazo_dir: {tmp_path / 'no-xivo'}, stop_timeout: 10}}\n"
        f"ha: {{node_type: slave, remote_address: 127.0.0.1, ha_conf: {tmp_path / 'ha.conf'},\n"
        f"     services: {{backend: command, start: [[/bin/true]], stop: [[/bin/true]], status: [/bin/false]}}}}\n"
        f"health: {{certificate: {{files: [{tmp_path / 'none.crt'}]}}}}\n"
        f"berofos: {{config: {tmp_path / 'bnfos.conf'}}}\n"
        "status: {listen: '127.0.0.1:0'}\n".replace("127.0.0.1:0", f"127.0.0.1:{_free_port()}"))
    probe = tmp_path / "modules.json"
    code = (f"import atexit, json, sys\n"
            f"atexit.register(lambda: open({str(probe)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
            f"sys.argv = ['wazod', 'run', '--config', {str(config)!r}]\n"
            "from wazod.cli import main\nraise SystemExit(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        state = tmp_path / "state" / "status.json"
        while time.monotonic() < deadline and not (state.exists() and '"ha_state"' in state.read_text()
                                                   and "starting" not in state.read_text()):
            time.sleep(0.2)
        assert state.exists(), "the daemon never saved its state"
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    loaded = {m.split(".")[0] for m in json.loads(probe.read_text())}
    assert {"icmplib", "apscheduler", "aiohttp"} <= loaded  # probing, scheduling and the endpoint do run
    unexpected = loaded & {"aiomqtt", "pysnmp", "aio_pika", "cryptography", "prometheus_client"}
    assert not unexpected, f"a probing slave loaded {sorted(unexpected)}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
