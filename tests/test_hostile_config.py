"""Hostile or mistaken configuration (issue 15): values that reach argv, files that are not
files, bytes that are not UTF-8, YAML that expands, values of the wrong kind. Each case goes
through the real ``wazod`` command line: exit 2 naming the key or file, nothing run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wazod.config import load_config
from wazod.errors import ConfigError


def run_cli(*args, env=None, timeout=60, stdin=subprocess.DEVNULL):
    return subprocess.run([sys.executable, "-m", "wazod", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=stdin)


def write_config(base: Path, text: str, **conf_d: str) -> Path:
    (base / "conf.d").mkdir(parents=True, exist_ok=True)
    for name, body in conf_d.items():
        (base / "conf.d" / name).write_text(body)
    path = base / "config.yml"
    path.write_text(textwrap.dedent(text))
    return path


# --- item 3: values reaching ssh / ssh-keyscan argv -------------------------------------------

def test_ha_conf_remote_address_option_is_refused_before_ssh_keyscan(tmp_path):
    """``remote_address: "-f/etc/shadow"`` made ``sync --init`` print /etc/shadow through ssh-keyscan."""
    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_text(json.dumps({"node_type": "master", "remote_address": "-f/etc/shadow"}))
    path = write_config(tmp_path, f"""
        node: {{state_dir: {tmp_path / 'state'}}}
        ha: {{ha_conf: {ha_conf}}}
        sync: {{ssh_key: {tmp_path / 'key'}, known_hosts: {tmp_path / 'kh'}}}
    """)
    out = run_cli("sync", "--init", "--config", str(path))
    assert out.returncode == 2, out
    assert "remote_address" in out.stderr and str(ha_conf) in out.stderr
    assert "node_type" not in out.stderr
    assert "root:" not in out.stdout + out.stderr
    assert not (tmp_path / "key").exists()


def test_remote_user_option_is_refused_and_nothing_runs(tmp_path, sshd):
    """``remote_user: "-oProxyCommand=touch..."`` ran a command as root through ssh."""
    pwned = tmp_path / "pwned"
    path = write_config(tmp_path, f"""
        node: {{state_dir: {tmp_path / 'state'}}}
        ha: {{node_type: master, remote_address: {sshd.host}}}
        sync: {{ssh_key: {sshd.client_key}, ssh_port: {sshd.port}, known_hosts: {tmp_path / 'kh'},
                remote_user: "-oProxyCommand=touch${{IFS}}{pwned}", connect_timeout: 5}}
    """)
    out = run_cli("sync", "--init", "--config", str(path))
    assert out.returncode == 2, out
    assert "sync.remote_user" in out.stderr
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize("key,value", [
    ("remote_address", "-oProxyCommand=x"), ("remote_address", "root@host"), ("remote_address", "a b"),
    ("witnesses", ["-f/etc/shadow"]),
])
def test_addresses_in_config_are_ip_or_host_names(tmp_path, key, value):
    path = write_config(tmp_path, "ha: " + json.dumps({"node_type": "slave", key: value}) + "\n")
    with pytest.raises(ConfigError, match=f"ha.{key}"):
        load_config(path)


@pytest.mark.parametrize("value", ["10.0.0.2", "fe80::1", "pbx-2.example.org", "wazo2"])
def test_good_addresses_still_load(tmp_path, value):
    path = write_config(tmp_path, "ha: " + json.dumps({"node_type": "slave", "remote_address": value}) + "\n")
    assert load_config(path).config.ha.remote_address == value


def test_wrong_typed_remote_address_in_ha_conf_names_remote_address(tmp_path):
    """Item 13: it was reported as a node_type error."""
    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_text(json.dumps({"node_type": "slave", "remote_address": ["10.0.0.1"]}))
    path = write_config(tmp_path, f"ha: {{ha_conf: {ha_conf}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "remote_address" in str(err.value) and "node_type" not in str(err.value)


# --- items 4, 5, 11: files that are not what they seem ------------------------------------------

def _limited_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a runaway read fails instead of filling the node


def run_cli_bounded(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "wazod", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=_limited_memory)


def test_non_utf8_conf_d_file_is_a_config_error(tmp_path):
    path = write_config(tmp_path, "purge: {days_to_keep: 3}\n")
    (tmp_path / "conf.d" / "50-latin1.yml").write_bytes(b"# caf\xe9\nnode: {name: x}\n")
    out = run_cli("config", "check", "--config", str(path))
    assert out.returncode == 2, out
    assert "50-latin1.yml:1" in out.stderr and "UTF-8" in out.stderr and "Traceback" not in out.stderr


def test_non_utf8_ha_conf_is_a_config_error(tmp_path):
    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_bytes(b'{"node_type": "slave", "remote_address": "10.0.0.\xff"}')
    path = write_config(tmp_path, f"ha: {{ha_conf: {ha_conf}}}\n")
    out = run_cli("config", "check", "--config", str(path))
    assert out.returncode == 2, out
    assert str(ha_conf) in out.stderr and "UTF-8" in out.stderr


def test_fifo_and_device_in_conf_d_are_refused_without_reading(tmp_path):
    path = write_config(tmp_path, "purge: {days_to_keep: 3}\n")
    os.mkfifo(tmp_path / "conf.d" / "95-x.yml")
    out = run_cli_bounded("config", "check", "--config", str(path))
    assert out.returncode == 2, out
    assert "95-x.yml" in out.stderr and "not a regular file" in out.stderr
    os.unlink(tmp_path / "conf.d" / "95-x.yml")
    os.symlink("/dev/zero", tmp_path / "conf.d" / "96-zero.yml")
    out = run_cli_bounded("config", "check", "--config", str(path))
    assert out.returncode == 2, out
    assert "96-zero.yml" in out.stderr and "not a regular file" in out.stderr


def test_oversized_file_is_refused(tmp_path):
    path = write_config(tmp_path, "purge: {days_to_keep: 3}\n", **{"50-big.yml": "#" * (2 << 20) + "\n"})
    with pytest.raises(ConfigError, match="50-big.yml: larger than"):
        load_config(path)


def test_yaml_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
        f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))
    bomb += "purge: {days_to_keep: *i}\n"
    path = write_config(tmp_path, "node: {name: n}\n", **{"50-bomb.yml": bomb})
    assert len(bomb) < 700
    out = run_cli_bounded("config", "check", "--config", str(path))
    assert out.returncode == 2, out
    assert "50-bomb.yml:2" in out.stderr and "aliases" in out.stderr
    assert len(out.stderr) < 1000


def test_duplicate_key_is_refused(tmp_path):
    path = write_config(tmp_path, "purge:\n  days_to_keep: 3\n  days_to_keep: 300\n")
    with pytest.raises(ConfigError, match=r"config.yml:3: invalid YAML: duplicate key 'days_to_keep'"):
        load_config(path)


def test_long_wrong_value_is_shortened_in_the_error(tmp_path):
    path = write_config(tmp_path, "purge: {days_to_keep: '%s'}\n" % ("9" * 5000))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "purge.days_to_keep" in str(err.value) and len(str(err.value)) < 400


def test_explicitly_named_config_file_must_exist(tmp_path):
    missing = tmp_path / "confg.yml"
    out = run_cli("config", "check", "--config", str(missing))
    assert out.returncode == 2 and str(missing) in out.stderr, out
    out = run_cli("config", "check", env=dict(os.environ, WAZOD_CONFIG=str(missing)))
    assert out.returncode == 2 and str(missing) in out.stderr, out


def test_running_daemon_keeps_its_config_on_non_utf8_ha_conf_and_fifo(tmp_path):
    """A broken ha.conf (automatic reload) and a FIFO (SIGHUP) made the running daemon exit or hang."""
    from harness.util import wait_for
    from test_daemon import BASE, Daemon

    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_text(json.dumps({"node_type": "disabled", "remote_address": "192.0.2.1"}))
    d = Daemon(tmp_path, BASE.replace("ha: {node_type: disabled, ha_conf: /nonexistent/ha.conf}",
                                      f"ha: {{ha_conf: {ha_conf}}}"))
    try:
        assert d.wait_notify("READY=1")
        ha_conf.write_bytes(b'{"node_type": "disabled", "remote_address": "192.0.2.\xe9"}')
        os.utime(ha_conf, (os.stat(ha_conf).st_atime, os.stat(ha_conf).st_mtime + 5))
        assert wait_for(lambda: d.events("config_reloaded"), timeout=15)
        ev = d.events("config_reloaded")[-1]["data"]
        assert ev["ok"] is False and "UTF-8" in ev["error"] and ev["reason"] == "ha.conf changed"
        os.mkfifo(d.config.parent / "conf.d" / "95-x.yml")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(d.events("config_reloaded")) >= 2, timeout=15)
        ev = d.events("config_reloaded")[-1]["data"]
        assert ev["ok"] is False and "not a regular file" in ev["error"] and ev["reason"] == "SIGHUP"
        assert d.proc.poll() is None
        assert d.wait_notify("READY=1")
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.sock.close()


# --- item 14: values of the wrong kind ----------------------------------------------------------

@pytest.mark.parametrize("yaml_text,key", [
    ("ha: {fall: true}", "ha.fall"),
    ("ha: {probe_interval: .inf}", "ha.probe_interval"),
    ("ha: {probe_interval: .nan}", "ha.probe_interval"),
    ("ha: {tcp_ports: [true], probes: [tcp]}", "ha.tcp_ports"),
    ("node: {stop_timeout: -5}", "node.stop_timeout"),
    ("purge: {dsn: 'not a dsn'}", "purge.dsn"),
    ("replication: {target_dsn: 'postgresql://postgres@{remote_address}:99999/asterisk'}", "replication.target_dsn"),
    ("backup: {dsn: 'mysql://root@localhost/asterisk'}", "backup.dsn"),
])
def test_wrong_kinds_are_config_errors_at_load(tmp_path, yaml_text, key):
    path = write_config(tmp_path, yaml_text + "\n")
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path)


def test_malformed_dsn_is_exit_2_before_any_connection(tmp_path):
    path = write_config(tmp_path, f"node: {{state_dir: {tmp_path / 'state'}}}\npurge: {{dsn: 'host=db port'}}\n")
    out = run_cli("purge", "--dry-run", "--config", str(path))
    assert out.returncode == 2, out
    assert "purge.dsn" in out.stderr


@pytest.mark.parametrize("yaml_text", [
    "purge: {dsn: \"host=/var/run/postgresql dbname=asterisk password='a b'\"}",
    "replication: {target_dsn: 'postgresql://postgres@{remote_address}/asterisk'}",
    "ha: {fall: 2, probe_interval: 1}",
])
def test_right_kinds_still_load(tmp_path, yaml_text):
    load_config(write_config(tmp_path, yaml_text + "\n"))


def test_backup_verify_negative_generation_is_a_usage_error(tmp_path):
    path = write_config(tmp_path, f"backup: {{dir: {tmp_path / 'b'}}}\n")
    out = run_cli("backup", "verify", "--generation", "-1", "--config", str(path))
    assert out.returncode == 2 and "--generation" in out.stderr, out
