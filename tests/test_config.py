"""The configuration rules, table by table: Wazo's hierarchy, then wazod's stricter errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wazod.config import load_config
from wazod.config.defaults import render_default_config
from wazod.config.hierarchy import read_hierarchy
from wazod.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write_tree(base: Path, files: dict[str, str]) -> Path:
    """Write config.yml and conf.d/* under base; returns the config.yml path."""
    (base / "conf.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        p = base / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return base / "config.yml"


# (files, expected key path -> value) for the precedence and merge rules
PRECEDENCE_CASES = {
    "conf.d beats config.yml": (
        {"config.yml": "purge: {days_to_keep: 10}", "conf.d/50.yml": "purge: {days_to_keep: 20}"},
        ("purge", "days_to_keep"), 20,
    ),
    "first conf.d file wins": (
        {"conf.d/10-b.yml": "purge: {days_to_keep: 10}", "conf.d/20-c.yml": "purge: {days_to_keep: 20}"},
        ("purge", "days_to_keep"), 10,
    ),
    "code-point order: uppercase before lowercase": (
        {"conf.d/a-lower.yml": "purge: {days_to_keep: 1}", "conf.d/Z-upper.yml": "purge: {days_to_keep: 2}"},
        ("purge", "days_to_keep"), 2,
    ),
    "digits before letters": (
        {"conf.d/a.yml": "purge: {days_to_keep: 1}", "conf.d/9.yml": "purge: {days_to_keep: 9}"},
        ("purge", "days_to_keep"), 9,
    ),
    "dicts deep-merged (conf.d key)": (
        {"config.yml": "purge: {days_to_keep: 5, dsn: 'postgresql:///x'}", "conf.d/1.yml": "purge: {days_to_keep: 7}"},
        ("purge", "days_to_keep"), 7,
    ),
    "dicts deep-merged (config.yml key kept)": (
        {"config.yml": "purge: {days_to_keep: 5, dsn: 'postgresql:///x'}", "conf.d/1.yml": "purge: {days_to_keep: 7}"},
        ("purge", "dsn"), "postgresql:///x",
    ),
    "lists replaced whole": (
        {"config.yml": "ha: {witnesses: [a, b, c]}", "conf.d/1.yml": "ha: {witnesses: [z]}"},
        ("ha", "witnesses"), ["z"],
    ),
    "dict values merged across three layers": (
        {"config.yml": "purge: {days_to_keep_per_table: {cel: 1, queue_log: 2}}",
         "conf.d/2.yml": "purge: {days_to_keep_per_table: {cel: 30}}",
         "conf.d/1.yml": "purge: {days_to_keep_per_table: {stat_queue_periodic: 3}}"},
        ("purge", "days_to_keep_per_table"), {"cel": 30, "queue_log": 2, "stat_queue_periodic": 3},
    ),
    "explicit null masks a lower value": (
        {"config.yml": "bus: {mqtt: {host: broker.example}}", "conf.d/1.yml": "bus: {mqtt: {host: ~}}"},
        ("bus", "mqtt", "host"), None,
    ),
    "empty conf.d file counts as {}": (
        {"config.yml": "purge: {days_to_keep: 3}", "conf.d/1.yml": "# only a comment\n"},
        ("purge", "days_to_keep"), 3,
    ),
    "missing config.yml is not an error": (
        {"conf.d/1.yml": "purge: {days_to_keep: 4}"},
        ("purge", "days_to_keep"), 4,
    ),
}

IGNORED_NAMES = [".hidden.yml", "x.yaml", "foo.yml.dpkg-old", "UPPER.YML", "noext"]


@pytest.mark.parametrize("case", list(PRECEDENCE_CASES), ids=list(PRECEDENCE_CASES))
def test_precedence_and_merge(tmp_path, case):
    files, key_path, expected = PRECEDENCE_CASES[case]
    cfg = load_config(write_tree(tmp_path, files)).config.model_dump()
    value = cfg
    for part in key_path:
        value = value[part]
    assert value == expected


def test_null_masks_later_dicts_in_raw_hierarchy(tmp_path):
    path = write_tree(tmp_path, {
        "config.yml": "nested: {x: 1, y: 2}",
        "conf.d/09-null.yml": "nested: ~",
        "conf.d/10-dict.yml": "nested: {z: 3}",
    })
    assert read_hierarchy(path).merged()["nested"] is None


@pytest.mark.parametrize("name", IGNORED_NAMES)
def test_file_filter_ignores(tmp_path, name):
    path = write_tree(tmp_path, {"config.yml": "purge: {days_to_keep: 1}", f"conf.d/{name}": "purge: {days_to_keep: 99}"})
    assert load_config(path).config.purge.days_to_keep == 1


def test_subdirectories_are_not_read(tmp_path):
    path = write_tree(tmp_path, {"config.yml": "purge: {days_to_keep: 1}", "conf.d/sub/a.yml": "purge: {days_to_keep: 99}"})
    assert load_config(path).config.purge.days_to_keep == 1


def test_missing_conf_d_and_config_give_defaults(tmp_path):
    cfg = load_config(tmp_path / "nothing" / "config.yml").config
    assert cfg.purge.days_to_keep == 365
    assert cfg.replication.schedule == "0 * * * *"
    assert cfg.backup.schedule == "25 6 * * *"


# (files, substrings the error must contain)
ERROR_CASES = {
    "empty db_os_user is refused, not taken for null": (
        {"conf.d/50-db.yml": "replication:\n  db_os_user: ''\n"},
        ["50-db.yml", "replication.db_os_user", "at least 1 character"],
    ),
    "invalid YAML in conf.d names file and line": (
        {"conf.d/20-bad.yml": "purge:\n  days_to_keep: 3\n  dsn: [unclosed\n"},
        ["20-bad.yml:", "invalid YAML"],
    ),
    "invalid YAML in config.yml": (
        {"config.yml": "a: b: c\n"},
        ["config.yml:1", "invalid YAML"],
    ),
    "top level a list": ({"conf.d/30-list.yml": "- a\n- b\n"}, ["30-list.yml", "mapping", "list"]),
    "top level a scalar": ({"conf.d/30-scalar.yml": "hello\n"}, ["30-scalar.yml", "mapping", "str"]),
    "unknown top-level key": ({"conf.d/40-x.yml": "purgee: {days_to_keep: 3}\n"}, ["40-x.yml", "purgee", "unknown key"]),
    "unknown nested key names the path": (
        {"config.yml": "ha: {services: {backnd: systemd}}\n"}, ["config.yml", "ha.services.backnd", "unknown key"],
    ),
    "wrong type names the file that set it": (
        {"config.yml": "purge: {days_to_keep: 3}", "conf.d/50-t.yml": "purge: {days_to_keep: lots}\n"},
        ["50-t.yml", "purge.days_to_keep", "integer"],
    ),
    "negative retention refused": ({"conf.d/1.yml": "purge: {days_to_keep: -1}\n"}, ["1.yml", "purge.days_to_keep"]),
    "bad enum": ({"conf.d/1.yml": "ha: {node_type: primary}\n"}, ["1.yml", "ha.node_type"]),
    "a directory named .yml": ({"conf.d/dir.yml/x": "a: 1"}, ["dir.yml", "directory"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_errors_name_the_problem(tmp_path, case):
    files, needles = ERROR_CASES[case]
    with pytest.raises(ConfigError) as exc:
        load_config(write_tree(tmp_path, files))
    for needle in needles:
        assert needle in str(exc.value), (needle, str(exc.value))


def test_wrong_type_value_is_masked_for_secret_keys(tmp_path):
    path = write_tree(tmp_path, {"conf.d/1.yml": "snmp: {traps: [{host: h, community: [s3cr3t]}]}\n"})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "s3cr3t" not in str(exc.value)
    assert "snmp.traps.0.community" in str(exc.value)


HA_CONF_CASES = {
    "both from ha.conf": ({}, {"node_type": "slave", "remote_address": "10.0.0.1"}, ("slave", "10.0.0.1")),
    "config wins over ha.conf": ({"node_type": "master"}, {"node_type": "slave", "remote_address": "10.0.0.1"},
                                 ("master", "10.0.0.1")),
    "no ha.conf: disabled": ({}, None, ("disabled", None)),
    "explicit remote_address kept": ({"remote_address": "192.0.2.9"}, {"node_type": "slave", "remote_address": "x"},
                                     ("slave", "192.0.2.9")),
}


@pytest.mark.parametrize("case", list(HA_CONF_CASES), ids=list(HA_CONF_CASES))
def test_ha_conf_fallback(tmp_path, case):
    ha_cfg, ha_conf, expected = HA_CONF_CASES[case]
    ha_conf_path = tmp_path / "ha.conf"
    if ha_conf is not None:
        ha_conf_path.write_text(json.dumps(ha_conf))
    ha = {"ha_conf": str(ha_conf_path), **ha_cfg}
    loaded = load_config(write_tree(tmp_path, {"config.yml": json.dumps({"ha": ha})}))
    assert (loaded.config.ha.node_type, loaded.config.ha.remote_address) == expected
    assert loaded.config.role == expected[0]


def test_broken_ha_conf_is_a_clear_error(tmp_path):
    (tmp_path / "ha.conf").write_text("{not json")
    with pytest.raises(ConfigError, match=r"ha\.conf:1: invalid JSON"):
        load_config(write_tree(tmp_path, {"config.yml": json.dumps({"ha": {"ha_conf": str(tmp_path / 'ha.conf')}})}))


def test_shipped_default_config_is_the_generated_one():
    """etc/wazod/config.yml documents every key: it must be exactly what the models render."""
    shipped = (ROOT / "etc" / "wazod" / "config.yml").read_text()
    assert shipped == render_default_config(), "run: wazod config defaults > etc/wazod/config.yml"


def test_shipped_default_config_loads_to_the_defaults(tmp_path):
    loaded = load_config(ROOT / "etc" / "wazod" / "config.yml")
    assert loaded.config.purge.days_to_keep == 365
    assert loaded.config.bus.mqtt.host is None


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "wazod", *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_bad_config_exits_2_naming_file(tmp_path):
    path = write_tree(tmp_path, {"config.yml": "", "conf.d/60-oops.yml": "purge: {days_to_keep: [1]}\n"})
    out = run_cli("config", "check", "--config", str(path))
    assert out.returncode == 2
    assert "60-oops.yml" in out.stderr and "purge.days_to_keep" in out.stderr


def test_cli_run_refuses_bad_config_with_exit_2(tmp_path):
    path = write_tree(tmp_path, {"config.yml": "node: {state_dir: %s}\nbogus: 1\n" % (tmp_path / "state")})
    out = run_cli("run", "--config", str(path))
    assert out.returncode == 2
    assert "bogus" in out.stderr and "config.yml" in out.stderr


def test_cli_config_check_json_masks_secrets(tmp_path):
    path = write_tree(tmp_path, {
        "config.yml": textwrap.dedent("""
            replication: {source_dsn: "postgresql://postgres:hunter2@db/asterisk"}
            snmp: {traps: [{host: 127.0.0.1, version: "3", user: u, auth_key: authsecret1, priv_key: privsecret1}]}
        """),
    })
    out = run_cli("config", "check", "--json", "--config", str(path))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    for secret in ("hunter2", "authsecret1", "privsecret1"):
        assert secret not in out.stdout
    assert doc["config"]["replication"]["source_dsn"] == "postgresql://postgres:********@db/asterisk"
    plain = run_cli("config", "check", "--config", str(path))
    assert plain.returncode == 0 and "hunter2" not in plain.stdout and "authsecret1" not in plain.stdout


def test_cli_usage_error_exit_2():
    out = run_cli("no-such-command")
    assert out.returncode == 2


def test_readme_configuration_reference_is_the_generated_config():
    """The README's configuration reference documents every key: it is the generated default config."""
    readme = (ROOT / "README.md").read_text()
    assert render_default_config().rstrip("\n") in readme, "rebuild the README's configuration reference"
