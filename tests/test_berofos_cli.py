"""``wazod berofos`` as an administrator runs it: real processes, simulator processes, real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness.berofos import berofos_config_dict, sim_process, write_bnfos_conf, write_config_yml  # noqa: F401

from wazod.events import EventStore
from wazod.locks import OperationLock


def wazod(config_path, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "wazod", *args, "--config", str(config_path)],
                          capture_output=True, text=True, timeout=timeout)


def setup_files(tmp_path, devices, **berofos):
    conf = write_bnfos_conf(tmp_path / "bnfos.conf", devices)
    cfg = berofos_config_dict(tmp_path / "state", conf, **berofos)
    return write_config_yml(tmp_path / "etc" / "config.yml", cfg), tmp_path / "state"


def stored_events(state_dir):
    store = EventStore(state_dir / "events.sqlite3")
    try:
        return [e for e in store.after(0) if e["name"].startswith("berofos_")]
    finally:
        store.close()


def test_slave_master_status_on_two_devices(tmp_path, sim_process):  # noqa: F811
    a = sim_process(login="admin:alpha", digest=True)
    b = sim_process(login="admin:bravo")
    cfg, state = setup_files(tmp_path, [("fos1", a.host, a.port, "admin:alpha"),
                                        ("fos2", b.host, b.port, "admin:bravo")])

    r = wazod(cfg, "berofos", "slave")
    assert r.returncode == 0, r.stderr
    assert "fos1" in r.stdout and "mode 0, lines on the slave (was 1)" in r.stdout
    assert a.state()["mode"] == 0 and b.state()["mode"] == 0

    r = wazod(cfg, "berofos", "status", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(d["name"], d["mode"], d["lines_on"], d["warnings"]) for d in doc["devices"]] == [
        ("fos1", 0, "slave", []), ("fos2", 0, "slave", [])]

    r = wazod(cfg, "berofos", "master", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and [(d["name"], d["mode"], d["previous"]) for d in doc["devices"]] == [
        ("fos1", 1, 0), ("fos2", 1, 0)]
    assert a.state()["mode"] == 1 and b.state()["mode"] == 1

    evs = stored_events(state)
    assert sorted((e["data"]["device"], e["data"]["mode"], e["data"]["reason"]) for e in evs) == [
        ("fos1", 0, "manual"), ("fos1", 1, "manual"), ("fos2", 0, "manual"), ("fos2", 1, "manual")]
    assert {e["name"] for e in evs} == {"berofos_mode_changed"}


def test_wrong_password_exits_1_with_clear_error_and_no_secret(tmp_path, sim_process):  # noqa: F811
    a = sim_process(login="admin:TheRightOne", digest=True)
    cfg, state = setup_files(tmp_path, [("fos1", a.host, a.port, "admin:N0tTheRightOne")])

    for args in (("berofos", "slave"), ("berofos", "status"), ("berofos", "slave", "--json")):
        r = wazod(cfg, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "wrong credentials" in r.stdout and "HTTP 401" in r.stdout
        for secret in ("N0tTheRightOne", "TheRightOne"):
            assert secret not in r.stdout and secret not in r.stderr
    assert a.state()["mode"] == 1
    evs = stored_events(state)
    assert {e["name"] for e in evs} == {"berofos_failed"}
    assert "N0tTheRightOne" not in json.dumps(evs)


def test_one_device_down_partial_result_exit_1(tmp_path, sim_process):  # noqa: F811
    a = sim_process()
    b = sim_process()
    b.stop()  # nothing listens there any more
    cfg, _ = setup_files(tmp_path, [("fos1", a.host, a.port, "admin:secret"),
                                    ("fos2", b.host, b.port, "admin:secret")])
    r = wazod(cfg, "berofos", "slave")
    assert r.returncode == 1
    assert "fos1" in r.stdout and "mode 0, lines on the slave" in r.stdout
    assert "fos2" in r.stdout and "FAILED after 3 attempt(s)" in r.stdout and "cannot connect" in r.stdout
    assert a.state()["mode"] == 0


def test_select_one_device_and_unknown_device(tmp_path, sim_process):  # noqa: F811
    a = sim_process()
    b = sim_process()
    cfg, _ = setup_files(tmp_path, [("fos1", a.host, a.port, "admin:secret"),
                                    ("fos2", b.host, b.port, "admin:secret")])
    r = wazod(cfg, "berofos", "slave", "-f", "fos2")
    assert r.returncode == 0, r.stderr
    assert (a.state()["mode"], b.state()["mode"]) == (1, 0)
    r = wazod(cfg, "berofos", "slave", "-f", "fos7")
    assert r.returncode == 2
    assert "no device fos7 (devices: fos1, fos2)" in r.stderr


def test_status_warns_about_setup_values(tmp_path, sim_process):  # noqa: F811
    a = sim_process(extra=["--modedef", "0"])
    cfg, _ = setup_files(tmp_path, [("fos1", a.host, a.port, "admin:secret")])
    r = wazod(cfg, "berofos", "status")
    assert r.returncode == 0, r.stderr
    assert "fos1" in r.stdout and "mode 1 (lines on the master), modedef 0" in r.stdout
    assert "warning: modedef is 0, Wazo's setup expects 1" in r.stdout


def test_bad_bnfos_conf_exits_2_naming_file_and_line(tmp_path):
    conf = tmp_path / "bnfos.conf"
    conf.write_text("[fos1]\nhost = 10.0.0.1\nlogin = admin-no-colon\n")
    cfg = write_config_yml(tmp_path / "etc" / "config.yml", berofos_config_dict(tmp_path / "state", conf))
    r = wazod(cfg, "berofos", "master")
    assert r.returncode == 2
    assert f"{conf}:3: login must be user:password" in r.stderr
    assert "admin-no-colon" not in r.stderr + r.stdout


@pytest.mark.skipif(Path("/etc/bnfos.conf").exists(), reason="this machine has a berofos configured")
def test_no_bnfos_conf_at_the_default_path_is_no_berofos(tmp_path):
    config = berofos_config_dict(tmp_path / "state", tmp_path / "unused.conf")
    del config["berofos"]["config"]  # the default, /etc/bnfos.conf, absent here
    cfg = write_config_yml(tmp_path / "etc" / "config.yml", config)
    for action in ("master", "status"):
        r = wazod(cfg, "berofos", action)
        assert r.returncode == 0, r.stderr
        assert "no berofos configured: /etc/bnfos.conf does not exist" in r.stdout


def test_explicitly_configured_bnfos_conf_that_is_missing_is_an_error(tmp_path):
    missing = tmp_path / "bnfos.conf"
    cfg = write_config_yml(tmp_path / "etc" / "config.yml", berofos_config_dict(tmp_path / "state", missing))
    for action in ("master", "slave", "status"):
        r = wazod(cfg, "berofos", action)
        assert r.returncode == 2, r.stdout
        assert f"berofos.config: {missing} does not exist" in r.stderr


def test_lock_held_exits_3(tmp_path, sim_process):  # noqa: F811
    a = sim_process()
    cfg, state = setup_files(tmp_path, [("fos1", a.host, a.port, "admin:secret")])
    with OperationLock(state, "berofos"):
        r = wazod(cfg, "berofos", "slave")
    assert r.returncode == 3
    assert "holds the lock" in r.stderr
    assert a.state()["mode"] == 1


@pytest.mark.parametrize("role", ["slave", "disabled"])
def test_works_whatever_the_role(tmp_path, sim_process, role):  # noqa: F811
    a = sim_process()
    conf = write_bnfos_conf(tmp_path / "bnfos.conf", [("fos1", a.host, a.port, "admin:secret")])
    cfg = write_config_yml(tmp_path / "etc" / "config.yml",
                           berofos_config_dict(tmp_path / "state", conf, role=role))
    r = wazod(cfg, "berofos", "slave")
    assert r.returncode == 0, r.stderr
    assert a.state()["mode"] == 0


def test_simulator_process_control_and_bad_login_argument(sim_process):  # noqa: F811
    p = sim_process(login="admin:x")
    assert p.control(mode=0, ignore_mode=True)["mode"] == 0
    assert p.state()["behaviour"]["ignore_mode"] is True
    p.control(reboot=True)
    assert p.state()["mode"] == 1  # back to modedef
    r = subprocess.run([sys.executable, "-m", "wazod.berofos.simulator", "--port", "0", "--login", "nocolon"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--login must be user:password" in r.stderr


def test_simulator_process_power_cycle(sim_process):  # noqa: F811
    import urllib.error

    from harness import wait_for

    p = sim_process(login="admin:x", mode=0)
    p.control(down_for=3.0, reboot=True)  # it goes down right after this answer, for 3 s

    def refused() -> bool:
        try:
            p.state()
        except urllib.error.URLError:
            return True  # powered off: connection refused
        return False

    wait_for(refused, timeout=3.0, interval=0.01, message="the simulator never went down")
    state = wait_for(p.state, timeout=20, interval=0.1)  # back, by itself
    assert state["mode"] == 1  # rebooted into its default mode
