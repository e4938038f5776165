"""Maintenance mode: durations, the state file, the command, the daemon and the peer, on loopback.

Real processes throughout: ``wazod maintenance`` commands, ``wazod run``
daemons with their status endpoints (token required), events read from the
nodes' durable stores. The two-host HA behaviour is in test_maintenance_lab.py.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from harness.maintenance import ADMIN_TOKEN, TOKEN, LoopNode, token_file
from harness.util import wait_for

from wazod.errors import WazodError
from wazod.events import Emitter, EventStore
from wazod.maintenance import MaintenanceState, is_active, parse_duration
from wazod.maintenance.duration import format_duration


# --- durations ---------------------------------------------------------------------------
@pytest.mark.parametrize("text,seconds", [
    ("3600", 3600), ("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("45s", 45), ("1d", 86400),
    (" 2 H ", 7200), ("10min", 600), ("1h 30m", 5400), (120, 120),
])
def test_durations_as_typed(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "0", "0m", "90 30m", "1h30", "-5", "m", "1e3", "two hours"])
def test_bad_durations_are_named(text):
    with pytest.raises(WazodError) as e:
        parse_duration(text)
    assert repr(text) in str(e.value) and e.value.exit_code == 2


def test_format_duration_round_trips():
    assert format_duration(5400) == "1h30m"
    assert parse_duration(format_duration(90061)) == 90061


# --- the state file ---------------------------------------------------------------------------
def _emitter(tmp_path) -> Emitter:
    return Emitter(EventStore(tmp_path / "events.sqlite3"), "pbx1", "uuid-1")


def _names(emitter: Emitter) -> list[str]:
    return [e["name"] for e in emitter.store.after(0, 1000)]


def test_state_on_renew_off_with_one_event_each(tmp_path):
    em = _emitter(tmp_path)
    st = MaintenanceState(tmp_path, "pbx1")
    rec, changed = st.switch_on(duration=600, reason="upgrade", user="alice", node="pbx1", emitter=em)
    assert changed and is_active(st.read()) and st.read()["set_by"] == "alice@pbx1"
    assert st.read()["until_ts"] - st.read()["since_ts"] == pytest.approx(600)
    renewed, _ = st.switch_on(duration=1200, reason="longer", user="bob", node="pbx1", emitter=em)
    assert renewed["id"] == rec["id"] and renewed["since"] == rec["since"] and renewed["reason"] == "longer"
    off, changed = st.switch_off(user="bob", node="pbx1", emitter=em)
    assert changed and not is_active(st.read()) and st.read()["end_cause"] == "off"
    _, changed = st.switch_off(user="bob", node="pbx1", emitter=em)
    assert not changed
    evs = em.store.after(0, 100)
    assert [e["name"] for e in evs] == ["maintenance_started", "maintenance_started", "maintenance_ended"]
    assert evs[1]["data"]["renewed"] is True and evs[2]["data"]["ended_by"] == "bob@pbx1"
    # the file on disk is whole JSON (atomic replace), readable by another process
    assert json.loads(st.path.read_text())["active"] is False


def test_expiry_is_recorded_once_whoever_notices(tmp_path):
    em = _emitter(tmp_path)
    a, b = MaintenanceState(tmp_path, "pbx1"), MaintenanceState(tmp_path, "pbx1")
    now = time.time()
    a.switch_on(duration=10, reason=None, user="root", node="pbx1", emitter=em, now=now)
    assert is_active(a.read(), now + 9) and not is_active(a.read(), now + 10)
    assert a.expire(em, now=now + 5) is None  # not due
    ended = a.expire(em, now=now + 11)
    assert ended is not None and ended["end_cause"] == "expired"
    assert b.expire(em, now=now + 12) is None
    evs = em.store.after(0, 100)
    assert [e["name"] for e in evs] == ["maintenance_started", "maintenance_ended"]
    assert evs[1]["data"]["cause"] == "expired" and evs[1]["data"]["lasted_s"] == pytest.approx(10)


def test_the_peer_repeating_a_request_changes_nothing(tmp_path):
    em = _emitter(tmp_path)
    st = MaintenanceState(tmp_path, "pbx2")
    _, first = st.switch_on(duration=600, reason="x", user="root", node="pbx1", origin="peer",
                            maintenance_id="abc", emitter=em)
    _, again = st.switch_on(duration=599, reason="x", user="root", node="pbx1", origin="peer",
                            maintenance_id="abc", emitter=em)
    assert first and not again
    assert _names(em) == ["maintenance_started"]
    assert st.read()["origin"] == "peer" and st.read()["id"] == "abc"


def test_a_hand_edited_record_without_an_end_does_not_hold_ha(tmp_path):
    (tmp_path / "maintenance.json").write_text('{"active": true}')
    assert not is_active(MaintenanceState(tmp_path, "pbx1").read())


def test_default_longer_than_max_is_a_config_error(tmp_path):
    from harness.health import write_config

    from wazod.config import load_config
    from wazod.errors import ConfigError

    path = write_config(tmp_path, {"maintenance": {"default_duration": 7200, "max_duration": 3600}})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "default_duration" in str(e.value)


def test_holds_replication_and_sync_and_backup_only_when_configured(tmp_path):
    from harness.health import make_context, write_config

    from wazod.maintenance import component

    ctx = make_context(write_config(tmp_path, {"maintenance": {"hold_backup": True}}))
    part = component(ctx)
    assert not ctx.registry["maintenance_active"]() and not part.holds("replication")
    assert {(m, p) for m, p, _ in ctx.registry["http_routes"]} == {("GET", "/maintenance"), ("POST", "/maintenance")}
    MaintenanceState(tmp_path / "state", "pbx-test").switch_on(duration=60, reason=None, user="root", node="x")
    assert ctx.registry["maintenance_active"]()  # the file change is seen without being told
    held = {job: ctx.registry["maintenance_holds"](job) for job in ("replication", "sync", "backup", "purge")}
    assert held == {"replication": True, "sync": True, "backup": True, "purge": False}
    ctx.emitter.store.close()


# --- the command and the daemons ----------------------------------------------------------
@pytest.fixture
def nodes(tmp_path):
    made: list[LoopNode] = []
    token = token_file(tmp_path)

    def make(name: str, overrides: dict | None = None) -> LoopNode:
        node = LoopNode(tmp_path, name, token_file=token, overrides=overrides)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def _pair_overrides(peer: LoopNode, **maintenance) -> dict:
    return {"ha": {"node_type": "slave", "remote_address": "127.0.0.1", "probes": ["icmp"]},
            "maintenance": {"peer_url": peer.url, "peer_timeout": 3, **maintenance}}


def test_command_with_the_daemon_down_persists_and_shows_in_status(nodes):
    a = nodes("pbx1")
    res = a.cli("maintenance", "on", "--for", "90m", "--reason", "upgrade to 24.01")
    assert res.returncode == 0, res.stderr
    assert "no peer to tell" in res.stdout
    doc = json.loads(a.cli("maintenance", "status", "--json").stdout)["maintenance"]
    assert doc["active"] and doc["reason"] == "upgrade to 24.01" and doc["set_by"].endswith("@pbx1")
    assert 5390 < doc["remaining_s"] <= 5400
    status = json.loads(a.cli("status", "--json").stdout)
    assert status["daemon"] == "not running" and status["maintenance"]["active"] is True
    assert "MAINTENANCE ON" in a.cli("status").stdout
    assert a.cli("maintenance", "off").returncode == 0
    assert json.loads(a.cli("maintenance", "status", "--json").stdout)["maintenance"]["active"] is False
    assert [e["name"] for e in a.events()] == ["maintenance_started", "maintenance_ended"]
    bad = a.cli("maintenance", "on", "--for", "3d")
    assert bad.returncode == 2 and "max_duration" in bad.stderr
    assert a.cli("maintenance", "on", "--for", "soon").returncode == 2


def test_set_on_one_node_shows_on_the_other_with_the_token(nodes):
    b = nodes("pbx2")
    b.start()
    a = nodes("pbx1", _pair_overrides(b))
    res = a.cli("maintenance", "on", "--for", "1h", "--reason", "disk swap")
    assert res.returncode == 0 and "peer told" in res.stdout, res.stdout + res.stderr
    wait_for(lambda: (b.status().get("maintenance") or {}).get("active"), timeout=5)
    shown = b.status()["maintenance"]
    assert shown["set_by"].endswith("@pbx1") and shown["reason"] == "disk swap" and shown["origin"] == "peer"
    started = b.events("maintenance_started")
    assert len(started) == 1 and started[0]["data"]["origin"] == "peer"
    assert a.maintenance_file()["peer_told"] is True
    assert "MAINTENANCE ON by" in b.cli("status").stdout
    both = json.loads(a.cli("maintenance", "status", "--peer", "--json").stdout)
    assert both["maintenance"]["active"] and both["peer"]["reached"] is True
    assert both["peer"]["maintenance"]["active"] is True and both["peer"]["maintenance"]["origin"] == "peer"
    assert "maintenance ON on the peer" in a.cli("maintenance", "status", "--peer").stdout
    req = urllib.request.Request(b.url + "/metrics", headers={"X-Auth-Token": TOKEN})
    metrics = urllib.request.urlopen(req, timeout=5).read().decode()
    assert "wazod_maintenance_active 1.0" in metrics
    assert 'wazod_maintenance_info{origin="peer",reason="disk swap",set_by="' in metrics
    assert "wazod_maintenance_until_timestamp_seconds " in metrics
    # a change of state needs the admin token: none or a wrong one is 401, the read token 403
    for headers, code in (({}, 401), ({"X-Auth-Token": "wrong"}, 401), ({"X-Auth-Token": TOKEN}, 403)):
        req = urllib.request.Request(b.url + "/maintenance", data=b'{"action": "off"}', method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == code
    assert b.status()["maintenance"]["active"] is True
    # a bad request is refused with its reason
    req = urllib.request.Request(b.url + "/maintenance", data=b'{"action": "on", "remaining_s": -1}', method="POST",
                                 headers={"Content-Type": "application/json", "X-Auth-Token": ADMIN_TOKEN})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400 and "remaining_s" in json.loads(e.value.read())["error"]
    long_user = json.dumps({"action": "on", "remaining_s": 60, "user": "x" * 100}).encode()
    req = urllib.request.Request(b.url + "/maintenance", data=long_user, method="POST",
                                 headers={"Content-Type": "application/json", "X-Auth-Token": ADMIN_TOKEN})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400 and "user" in json.loads(e.value.read())["error"]
    # off on the first node: off on both
    assert a.cli("maintenance", "off").returncode == 0
    wait_for(lambda: (b.status().get("maintenance") or {}).get("active") is False, timeout=5)
    ended = b.events("maintenance_ended")
    assert len(ended) == 1 and ended[0]["data"]["cause"] == "off" and ended[0]["data"]["ended_by"].endswith("@pbx1")


def test_unreachable_peer_warns_sets_locally_and_the_daemon_tells_it_later(nodes):
    b = nodes("pbx2")  # not started yet
    a = nodes("pbx1", _pair_overrides(b, peer_retry_interval=0.5))
    res = a.cli("maintenance", "on", "--for", "1h")
    assert res.returncode == 0
    assert "warning: the peer could not be told" in res.stderr and "cannot connect" in res.stderr
    assert a.maintenance_file()["active"] is True and a.maintenance_file()["peer_told"] is False
    a.start()
    b.start()
    wait_for(lambda: (b.status().get("maintenance") or {}).get("active"), timeout=15,
             message=f"the peer was never told:\n{a.log_tail()}")
    wait_for(lambda: a.maintenance_file().get("peer_told") is True, timeout=5)
    assert b.status()["maintenance"]["set_by"].endswith("@pbx1")
    assert len(b.events("maintenance_started")) == 1


def test_daemon_sees_the_command_expires_it_once_and_keeps_it_across_restarts(nodes):
    a = nodes("pbx1")
    a.start()
    assert a.cli("maintenance", "on", "--for", "3s", "--reason", "short").returncode == 0
    wait_for(lambda: (a.status().get("maintenance") or {}).get("active"), timeout=5)
    ended = wait_for(lambda: a.events("maintenance_ended"), timeout=10)
    assert ended[0]["data"]["cause"] == "expired" and ended[0]["data"]["ended_by"] is None
    wait_for(lambda: (a.status().get("maintenance") or {}).get("active") is False, timeout=5)
    assert a.status()["maintenance"]["last"]["cause"] == "expired"
    time.sleep(0.5)
    assert len(a.events("maintenance_ended")) == 1
    # a long one survives a daemon restart, without a second start event
    assert a.cli("maintenance", "on", "--for", "1h").returncode == 0
    wait_for(lambda: (a.status().get("maintenance") or {}).get("active"), timeout=5)
    assert a.stop() == 0
    a.start()
    wait_for(lambda: (a.status().get("maintenance") or {}).get("active"), timeout=5)
    assert json.loads(a.cli("status", "--json").stdout)["maintenance"]["active"] is True
    assert [e["name"] for e in a.events() if e["name"].startswith("maintenance")] == \
        ["maintenance_started", "maintenance_ended", "maintenance_started"]


def test_expired_while_the_daemon_was_down_is_ended_at_start(nodes):
    a = nodes("pbx1")
    assert a.cli("maintenance", "on", "--for", "1s").returncode == 0
    doc = wait_for(lambda: (d := json.loads(a.cli("maintenance", "status", "--json").stdout)["maintenance"])
                   and d["active"] is False and d, timeout=10, interval=0.2)
    assert doc["active"] is False and doc.get("expired_unrecorded") is True
    a.start()
    ended = wait_for(lambda: a.events("maintenance_ended"), timeout=5)
    assert ended[0]["data"]["cause"] == "expired"
    wait_for(lambda: (a.status().get("maintenance") or {}).get("active") is False, timeout=5)


@pytest.mark.parametrize("ha,maintenance,status,expected", [
    ({"node_type": "slave", "remote_address": "10.0.0.1"}, {}, {"listen": "0.0.0.0:9599"}, "http://10.0.0.1:9599"),
    ({"node_type": "master", "remote_address": "10.0.0.2", "peer_url": "https://{remote_address}:9443/health"},
     {}, {}, "https://10.0.0.2:9443"),
    ({"node_type": "slave", "remote_address": "fd00::2"}, {}, {"listen": "[::]:9600"}, "http://[fd00::2]:9600"),
    ({"node_type": "slave", "remote_address": "10.0.0.1"}, {"peer_url": "http://{remote_address}:8080/"}, {},
     "http://10.0.0.1:8080"),
    ({"node_type": "disabled", "remote_address": "10.0.0.1"}, {}, {}, None),
])
def test_where_the_peer_is_told(tmp_path, ha, maintenance, status, expected):
    from harness.health import write_config

    from wazod.config import load_config
    from wazod.maintenance.peer import peer_base_url

    path = write_config(tmp_path, {"ha": ha, "maintenance": maintenance, "status": status})
    assert peer_base_url(load_config(path).config) == expected
