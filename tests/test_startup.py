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
from pathlib import Path

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


def test_help_loads_no_event_loop_nor_the_modules_of_a_command():
    """The command modules' registrations import only argparse's needs: asyncio (about 30 ms), the berofos
    and maintenance modules, sqlite3, uuid are imported by the command that runs."""
    loaded = loaded_after("import wazod.cli\nwazod.cli.build_parser()")
    assert not loaded & {"asyncio", "sqlite3", "uuid"}, sorted(loaded & {"asyncio", "sqlite3", "uuid"})
    modules = json.loads(subprocess.run(
        [sys.executable, "-c", "import wazod.cli, sys, json\nwazod.cli.build_parser()\n"
                               "print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert not [m for m in modules if m.startswith(("wazod.berofos", "wazod.maintenance"))]


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


# --- `wazod replicate` validates the sections it uses, and only those ------------------------------
# Building the pydantic models of every section (backup, bus, health, snmp...) cost `wazod replicate`
# about 30 ms before its first connection for settings it never reads. The command now validates
# node, ha, logging and replication (plus the top-level keys); `wazod run` and `config check` still
# validate everything.

SECTIONS_REPLICATE_SKIPS = ["backup", "berofos", "bus", "health", "maintenance", "purge", "snmp", "status", "sync"]


def _replicate_config(tmp_path, extra: str = "", **replace: str) -> Path:
    """A master's config whose DSNs name a port nothing listens on: the run fails at its first connection (exit 1).
    ``replace``: a section's value in place of the valid one."""
    port = _free_port()
    dsn = f"postgresql://u@127.0.0.1:{port}/asterisk"
    sections = {
        "node": f"{{name: x, state_dir: {tmp_path / 'state'}, wazo_dir: {tmp_path / 'no-xivo'}}}",
        "ha": f"{{node_type: master, remote_address: 127.0.0.1, ha_conf: {tmp_path / 'ha.conf'}}}",
        "replication": f"{{source_dsn: '{dsn}', target_dsn: '{dsn}', db_os_user: null}}",
    }
    sections.update(replace)
    config = tmp_path / "config.yml"
    config.write_text("".join(f"{name}: {value}\n" for name, value in sections.items()) + extra)
    return config


def _wazod(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wazod", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_replicate_builds_only_the_config_sections_it_uses(tmp_path):
    config = _replicate_config(tmp_path)
    probe = tmp_path / "modules.json"
    events = tmp_path / "events.json"
    code = (f"import atexit, json, sys\n"
            "seen = []\n"  # what the process did, in order: processes started, connections made
            "sys.addaudithook(lambda event, args: seen.append([event, str(args[0])[:80]])"
            " if event in ('subprocess.Popen', 'os.posix_spawn', 'os.exec', 'socket.connect') else None)\n"
            f"atexit.register(lambda: open({str(probe)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
            f"atexit.register(lambda: open({str(events)!r}, 'w').write(json.dumps(seen)))\n"
            f"sys.argv = ['wazod', 'replicate', '--config', {str(config)!r}]\n"
            "from wazod.cli import main\nraise SystemExit(main())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "cannot connect to the master database" in out.stdout, out.stdout  # it got as far as connecting
    seen = json.loads(events.read_text())
    first_connect = next(i for i, (event, _) in enumerate(seen) if event == "socket.connect")
    # e.g. ctypes.util.find_library("pq") ran `ldconfig -p` (about 10 ms) to find libpq before the connection
    assert not seen[:first_connect], f"processes started before the first connection: {seen[:first_connect]}"
    loaded = set(json.loads(probe.read_text()))
    assert {"wazod.config.sections.replication", "wazod.config.sections.ha", "asyncpg"} <= loaded
    built = sorted(s for s in SECTIONS_REPLICATE_SKIPS if f"wazod.config.sections.{s}" in loaded)
    assert not built, f"`wazod replicate` built the config models of {built}"
    assert "wazod.config.model" not in loaded, "`wazod replicate` built the whole configuration model"
    assert "importlib.metadata" not in loaded, "pydantic looked for plugins (every installed distribution read)"


def _imports_before_first_connection(tmp_path, config) -> list[str]:
    """The modules a `wazod replicate` imported before its first connection (the audit hook's record)."""
    record = tmp_path / "before-connect.json"
    code = ("import json, sys\n"
            "seen, done = [], []\n"
            "def hook(event, args):\n"
            "    if event == 'socket.connect' and not done:\n"
            "        done.append(1)\n"
            f"        open({str(record)!r}, 'w').write(json.dumps(seen))\n"
            "    elif event == 'import' and not done:\n"
            "        seen.append(args[0])\n"
            "sys.addaudithook(hook)\n"
            f"sys.argv = ['wazod', 'replicate', '--config', {str(config)!r}]\n"
            "from wazod.cli import main\nraise SystemExit(main())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "cannot connect to the master database" in out.stdout, out.stdout
    return json.loads(record.read_text())


def test_replicate_run_again_on_the_same_files_validates_nothing_before_its_first_connection(tmp_path):
    """The configuration validated by the first run is taken from the cache by the next one: no pydantic
    (70 ms to import, 20 ms to build the four models) and no YAML parser before the command connects."""
    config = _replicate_config(tmp_path)
    first = _imports_before_first_connection(tmp_path, config)
    assert "pydantic" in first and "yaml" in first  # the first run validates the files
    again = _imports_before_first_connection(tmp_path, config)
    heavy = sorted({m.split(".")[0] for m in again} & {"pydantic", "pydantic_core", "yaml", "typing_extensions"})
    assert not heavy, f"the second run imported {heavy} before connecting"


def test_replicate_after_config_check_validates_nothing_before_its_first_connection(tmp_path):
    """`wazod config check` (what an administrator runs after editing the files) validates everything and
    leaves the sections replicate reads: the next `wazod replicate` connects without pydantic or YAML."""
    config = _replicate_config(tmp_path)
    assert _wazod(config, "config", "check").returncode == 0
    first = _imports_before_first_connection(tmp_path, config)
    heavy = sorted({m.split(".")[0] for m in first} & {"pydantic", "pydantic_core", "yaml"})
    assert not heavy, f"replicate imported {heavy} before connecting"


@pytest.mark.parametrize("extra, key", [
    ("replicaton: {}\n", "replicaton: unknown key (did you mean replication?)"),
    ("node: {state_dirr: /tmp}\n", "node.state_dirr: unknown key (did you mean node.state_dir?)"),
    ("logging: {level: loud}\n", "logging.level:"),
])
def test_replicate_reports_errors_in_the_keys_it_reads_as_config_check_does(tmp_path, extra, key):
    name, _, value = extra.partition(": ")
    config = (_replicate_config(tmp_path, **{name: value.strip()}) if name in ("node", "ha", "replication")
              else _replicate_config(tmp_path, extra))
    replicate, check = _wazod(config, "replicate"), _wazod(config, "config", "check")
    assert replicate.returncode == check.returncode == 2
    assert key in replicate.stderr
    assert f"{config}:" in replicate.stderr  # the file (and line) that holds it
    assert replicate.stderr == check.stderr  # word for word what the whole validation says


@pytest.mark.parametrize("section, value, key", [
    ("replication", "{source_dsn: 'mysql://x/y'}", "replication.source_dsn"),
    ("ha", "{node_type: boss}", "ha.node_type"),
    ("ha", "5", "ha:"),
])
def test_replicate_reports_an_invalid_value_of_its_sections(tmp_path, section, value, key):
    config = _replicate_config(tmp_path, **{section: value})
    replicate, check = _wazod(config, "replicate"), _wazod(config, "config", "check")
    assert replicate.returncode == 2, replicate.stderr
    assert key in replicate.stderr
    assert replicate.stderr == check.stderr


def test_a_section_replicate_does_not_read_is_checked_by_config_check_and_when_read(tmp_path):
    """Not validated by `replicate` (it never reads it), still by `config check`, `run`, and on first access."""
    from wazod.config import load_config
    from wazod.errors import ConfigError

    config = _replicate_config(tmp_path, "backup: {keep: -1}\n")
    assert _wazod(config, "config", "check").returncode == 2
    assert _wazod(config, "replicate").returncode == 1  # ran, and failed at the (refused) connection
    loaded = load_config(config, sections=("replication",))
    assert loaded.config.replication.source_dsn.startswith("postgresql://")
    with pytest.raises(ConfigError, match=r"backup\.keep"):
        loaded.config.backup  # noqa: B018 - the read is the point


def test_the_sections_a_command_may_name_are_the_whole_models_sections():
    from wazod.config import SECTIONS, Config, section_model

    assert list(SECTIONS) == list(Config.model_fields)  # same keys, same order (so errors come in that order)
    for name, field in Config.model_fields.items():
        assert section_model(name) is field.annotation


def test_a_command_leaves_its_heap_to_the_os_at_exit(tmp_path):
    """`wazod replicate` exits without the interpreter's final collection of every cycle the libraries left
    (gc.freeze() at exit: 30 to 50 ms of a run that finds nothing to do); what it printed is all there."""
    config = _replicate_config(tmp_path)
    code = ("import atexit, gc, sys\n"  # registered before main(): runs after wazod's exit handlers
            "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, file=sys.stderr))\n"
            f"sys.argv = ['wazod', 'replicate', '--config', {str(config)!r}]\n"
            "from wazod.cli import main\nraise SystemExit(main())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "frozen at exit: True" in out.stderr
    assert out.stdout.startswith("replication: failed") and "cannot connect to the master database" in out.stdout


def _subcommands(parser) -> dict:
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_a_command_line_builds_only_its_commands_parsers_and_they_are_the_same():
    """`wazod replicate` registers only wazod.commands.replication; each command's parser, help and
    usage are then exactly those of the whole command line (COMMAND_NAMES kept equal to the registrations)."""
    from wazod.cli import build_parser
    from wazod.commands import COMMAND_NAMES

    whole = _subcommands(build_parser())
    assert set(whole) == set(COMMAND_NAMES)
    for name, full in whole.items():
        for argv in ([name], ["--config", "/x", name, "--json"], ["--config=/x", name]):
            alone = _subcommands(build_parser(argv))
            assert set(alone) == {n for n, m in COMMAND_NAMES.items() if m == COMMAND_NAMES[name]}, argv
            assert alone[name].format_help() == full.format_help()
    for argv in (["-h", "replicate"], ["--version"], ["nope"], []):
        assert set(_subcommands(build_parser(argv))) == set(COMMAND_NAMES)
    loaded = json.loads(subprocess.run(
        [sys.executable, "-c", "import sys, json, wazod.cli\nwazod.cli.build_parser(['replicate'])\n"
                               "print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert [m for m in loaded if m.startswith("wazod.commands.")] == ["wazod.commands.replication"]
